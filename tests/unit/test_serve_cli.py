"""`sharedctx serve`: it never exposes an unauthenticated intake beyond loopback, and the app it runs checks auth.

uvicorn is replaced by a recorder, so nothing binds a port: what is tested is the decision before binding
and the app that would be served.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from sharedctx.cli import app

runner = CliRunner()


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Run in a fresh directory; every `uvicorn.run` call is recorded instead of serving."""
    import uvicorn

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SHAREDCTX_CONFIG", raising=False)
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append({"app": app, **kw}))
    return calls


def said(result: Any) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def config(tmp_path: Path, server: str) -> None:
    (tmp_path / "sharedctx.toml").write_text(f'[worker]\nenabled = false\n[server]\n{server}\n', encoding="utf-8")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "sharedctx.internal"])
def test_serve_refuses_a_non_loopback_host_without_intake_auth(
    tmp_path: Path, served: list[dict[str, Any]], host: str
) -> None:
    config(tmp_path, "")
    result = runner.invoke(app, ["serve", "--host", host])
    assert result.exit_code == 4, result.output
    assert f"refusing to serve the alert intake on {host} without authentication" in said(result)
    assert "intake_token" in said(result)
    assert served == []  # nothing was bound


def test_serve_on_loopback_without_auth_runs_but_warns(tmp_path: Path, served: list[dict[str, Any]]) -> None:
    config(tmp_path, "")
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 0, result.output
    assert "warning: the alert intake has no authentication" in said(result)
    assert [(c["host"], c["port"]) for c in served] == [("127.0.0.1", 8765)]


def test_a_missing_intake_token_variable_stops_serve_before_binding(
    tmp_path: Path, served: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SCX_TEST_INTAKE", raising=False)
    config(tmp_path, 'host = "0.0.0.0"\nintake_token = "env:SCX_TEST_INTAKE"')
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 4 and "SCX_TEST_INTAKE is not set" in said(result)
    monkeypatch.setenv("SCX_TEST_INTAKE", "")
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 4 and "is set but empty" in said(result)
    assert served == []


def test_a_literal_intake_token_in_the_config_is_refused(tmp_path: Path, served: list[dict[str, Any]]) -> None:
    config(tmp_path, 'intake_token = "hunter2-but-longer"')
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 4 and "a literal secret is not allowed" in said(result)
    assert served == []


def test_serve_with_a_token_binds_anywhere_and_its_app_demands_the_token(
    tmp_path: Path, served: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    monkeypatch.setenv("SCX_TEST_INTAKE", "tok-6b1f0c2d9e8a")
    config(tmp_path, 'host = "0.0.0.0"\nport = 9999\nintake_token = "env:SCX_TEST_INTAKE"')
    answers: list[int] = []

    async def post(asgi: Any, headers: dict[str, str]) -> int:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://sharedctx") as c:
            return (await c.post("/alerts", json={"title": "Disk full"}, headers=headers)).status_code

    def run(asgi: Any, **kw: Any) -> None:  # while "serving": the journal is open
        served.append({"app": asgi, **kw})
        answers.extend(asyncio.run(post(asgi, h)) for h in ({}, {"authorization": "Bearer tok-6b1f0c2d9e8a"}))

    monkeypatch.setattr(uvicorn, "run", run)
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 0, result.output
    assert "Bearer auth" in said(result) and "warning" not in said(result)
    assert [(c["host"], c["port"]) for c in served] == [("0.0.0.0", 9999)]
    assert answers == [401, 202]


def test_the_config_in_docs_intake_md_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Docs that run: the `[server]` example in docs/intake.md is a valid config, comments uncommented too."""
    import re
    import tomllib

    from sharedctx.config import parse_config

    doc = (Path(__file__).resolve().parents[2] / "docs" / "intake.md").read_text(encoding="utf-8")
    [block] = re.findall(r"```toml\n(.*?)```", doc, re.S)
    for text in (block, block.replace("# intake_basic", "intake_basic")):
        server = parse_config(tomllib.loads(text)).server
        assert server.host == "0.0.0.0" and server.intake_token is not None
    assert server.intake_basic_user == "alertmanager"
