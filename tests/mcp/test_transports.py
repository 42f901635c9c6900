"""The server over real transports: `sharedctx mcp` on stdio, and Streamable HTTP with bearer tokens."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from sharedctx.config import parse_config
from sharedctx.context import SharedContext
from sharedctx.mcp_server import mcp_http_app
from sharedctx.store.sqlite import SQLiteStore
from tests.channel.conftest import serve_in_thread

from .conftest import ROOT, TOKENS, all_entries, call, config_data, refused, write_config

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def stdio_params(config: Path, name: str | None) -> StdioServerParameters:
    args = ["-m", "sharedctx.cli", "--config", str(config), "mcp", *(["--as", name] if name else [])]
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "SYSTEMROOT")}
    return StdioServerParameters(command=sys.executable, args=args, env={**env, "PYTHONPATH": str(ROOT)}, cwd=ROOT)


@asynccontextmanager
async def stdio_session(config: Path, name: str | None) -> AsyncIterator[ClientSession]:
    async with stdio_client(stdio_params(config, name)) as (read, write), ClientSession(read, write) as s:
        await s.initialize()
        yield s


@asynccontextmanager
async def http_session(url: str, token: str) -> AsyncIterator[ClientSession]:
    client = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with (
        client,
        streamable_http_client(url, http_client=client) as (read, write, _),
        ClientSession(read, write) as s,
    ):
        await s.initialize()
        yield s


@pytest.fixture
def http_ctx(tmp_path: Path) -> Iterator[SharedContext]:
    with SharedContext.open(parse_config(config_data(tmp_path), base_dir=tmp_path), worker=True) as c:
        yield c


@pytest.fixture
def mcp_url(http_ctx: SharedContext) -> Iterator[str]:
    with serve_in_thread(mcp_http_app(http_ctx)) as base:
        yield f"{base}/mcp"


async def test_stdio_records_as_the_configured_identity_and_delivers(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    async with stdio_session(config, "lead") as s:
        case = await call(s, "open_case", title="Checkout 5xx", service="checkout")
        out = await call(s, "record_entry", case_id=case["id"], kind="finding", title="p99 up 8x")
        page = await call(s, "get_timeline", case_id=case["id"])
    assert out["entry"]["author"] == "primary:lead"
    assert [e["title"] for e in page["entries"]] == ["Case opened", "p99 up 8x"]
    store = SQLiteStore(tmp_path / "journal.db")
    try:
        assert [str(e.author) for e in store.entries(case["id"])] == ["primary:lead", "primary:lead"]
    finally:
        store.close()


async def test_stdio_as_a_read_only_identity_cannot_write(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    async with stdio_session(config, "lead") as s:
        case = await call(s, "open_case", title="c")
    async with stdio_session(config, "viewer") as s:
        text = await refused(s, "record_entry", case_id=case["id"], kind="note", title="x")
        await call(s, "get_timeline", case_id=case["id"])
    assert text.startswith("403 Forbidden")


def test_stdio_with_an_unknown_identity_fails_at_start_saying_which_exist(tmp_path: Path) -> None:
    import subprocess

    config = write_config(tmp_path)
    done = subprocess.run([sys.executable, "-m", "sharedctx.cli", "--config", str(config), "mcp", "--as", "mallory"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.returncode == 4
    assert "no agent named 'mallory'" in done.stderr and "lead" in done.stderr


async def test_http_with_a_token_records_and_reads(http_ctx: SharedContext, mcp_url: str) -> None:
    async with http_session(mcp_url, TOKENS["lead"]) as s:
        case = await call(s, "open_case", title="Checkout 5xx")
        out = await call(s, "record_entry", case_id=case["id"], kind="finding", title="p99 up 8x")
        page = await call(s, "get_timeline", case_id=case["id"], since=1)
    assert out["entry"]["author"] == "primary:lead"
    assert [e["id"] for e in page["entries"]] == [out["entry"]["id"]]
    async with http_session(mcp_url, TOKENS["viewer"]) as s:  # identity per token on the same server
        denied = await refused(s, "record_entry", case_id=case["id"], kind="note", title="x")
    async with http_session(mcp_url, TOKENS["telemetry"]) as s:
        outside = await refused(s, "get_timeline", case_id=case["id"])
    assert denied.startswith("403 Forbidden") and outside.startswith("403 Forbidden")
    assert http_ctx.drain(timeout=10)


INIT = {
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}  # fmt: skip


@pytest.mark.parametrize(
    ("authorization", "says"),
    [
        (None, "missing bearer token"),
        ("Bearer not-a-token", "not valid for this sharedctx server"),
        ("Bearer scx-lead-of-another-deployment-0000", "not valid for this sharedctx server"),
        (f"Token {TOKENS['lead']}", "must be `Bearer <token>`"),
    ],
)
async def test_http_without_a_valid_token_is_401_and_records_nothing(
    http_ctx: SharedContext, mcp_url: str, authorization: str | None, says: str
) -> None:
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    call_tool = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                 "params": {"name": "open_case", "arguments": {"title": "sneaky"}}}  # fmt: skip
    async with httpx.AsyncClient() as client:
        init = await client.post(mcp_url, json=INIT, headers=headers)
        tool = await client.post(mcp_url, json=call_tool, headers=headers)
    for resp in (init, tool):
        assert resp.status_code == 401
        assert resp.headers["www-authenticate"].startswith("Bearer")
        assert says in resp.json()["message"]
    assert http_ctx.cases() == [] and all_entries(http_ctx) == []


async def test_the_official_client_with_a_wrong_token_fails_to_connect(http_ctx: SharedContext, mcp_url: str) -> None:
    with pytest.raises(BaseException) as failed:  # an ExceptionGroup from the client's task group
        async with http_session(mcp_url, "wrong"):
            pass
    assert "401" in repr(failed.value) or "Unauthorized" in repr(failed.value)
    assert http_ctx.cases() == []
