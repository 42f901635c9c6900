"""Secret corpus end to end: no secret written through `record_entry` comes out anywhere.

Every secret of `tests/data/secrets_corpus.py` (embedded in its natural context) is written into an
entry's title, body, evidence (summary, query, url, data) and attrs by an MCP client. Then we look
at everything that leaves sharedctx: every MCP response (tool results, errors, the case resource),
every log line (caplog, with the log filter the entrypoints install), and every backend request
(the GitHub double's HTTP requests, the in-memory FakeBackend, the local backend's files). The
look-alikes (hashes, ids, queries) are recorded the same way and must come back mostly intact.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from sharedctx.backends import make_backend
from sharedctx.config import BackendSettings, Config
from sharedctx.context import SharedContext
from sharedctx.redact import install_log_redaction
from sharedctx.testing import FakeBackend
from tests.backends.harness import github
from tests.data.secrets_corpus import LOOKALIKES, SAMPLES, SECRETS, leaked

from .conftest import call, session_as

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def dump(result: Any) -> str:
    """Everything an MCP client receives from one result: text blocks and structured content."""
    parts = [getattr(b, "text", "") for b in getattr(result, "content", [])]
    parts.append(json.dumps(getattr(result, "structuredContent", None), ensure_ascii=False))
    return "\n".join(parts)


async def test_no_secret_leaves_through_mcp_logs_or_backends(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert len(SECRETS) >= 50 and len({k for k, _ in SECRETS}) >= 15
    gh = github(monkeypatch)
    gh_backend = gh.make(per_minute=100_000, per_hour=1_000_000)  # no pacing: every entry is sent now
    fake = FakeBackend("fake")
    local = make_backend(BackendSettings(type="local", path=str(tmp_path / "cases")), base_dir=tmp_path)
    caplog.set_level(logging.DEBUG)
    install_log_redaction()  # what `sharedctx mcp` / `sharedctx serve` do at start
    responses: list[str] = []
    with SharedContext.open(config, worker=False, backends={"github": gh_backend, "fake": fake, "local": local}) as ctx:
        async with session_as(ctx, "lead") as s:
            opened = await s.call_tool("open_case", {"title": "Secrets everywhere", "service": "checkout"})
            responses.append(dump(opened))
            case_id = opened.structuredContent["id"]  # type: ignore[index]
            for kind, _value, text in SAMPLES:
                args = {
                    "case_id": case_id, "kind": "finding", "title": f"{kind}: {text}"[:300], "body": f"seen: {text}",
                    "evidence": [{"type": "log", "source": "loki", "summary": text, "query": text,
                                  "url": f"https://logs.acme.io/q?x={text[:200]}", "data": {"line": text}}],
                    "attrs": {"context": text, "nested": [{"raw": text}]},
                }  # fmt: skip
                responses.append(dump(await s.call_tool("record_entry", args)))
                responses.append(dump(await s.call_tool("find_case", {"ref": text[:2000]})))  # an error echoing input
            since = 0
            while True:
                page = await s.call_tool("get_timeline", {"case_id": case_id, "since": since, "limit": 200})
                responses.append(dump(page))
                if not page.structuredContent["has_more"]:  # type: ignore[index]
                    break
                since = page.structuredContent["next_since"]  # type: ignore[index]
            responses.append(dump(await s.call_tool("handoff_summary", {"case_id": case_id})))
            responses.append(dump(await s.call_tool("search_history", {"text": "seen", "limit": 50})))
            resource = await s.read_resource(f"case://{case_id}")  # type: ignore[arg-type]
            responses.append(resource.contents[0].text)  # type: ignore[union-attr]
        ctx.worker.run_once()
    mcp_out = "\n".join(responses)
    logs = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    github_out = "\n".join(f"{r.url}\n{r.content.decode('utf-8', 'replace')}" for r in gh.double.requests)
    fake_out = "\n".join(e.to_json() for e in fake.entries(case_id))
    local_out = "\n".join(p.read_text(encoding="utf-8") for p in (tmp_path / "cases").rglob("*") if p.is_file())
    channels = {"mcp": mcp_out, "logs": logs, "github": github_out, "fake": fake_out, "local": local_out}
    assert all(len(out) > 1000 for out in channels.values()), {k: len(v) for k, v in channels.items()}
    # everything was delivered (redacted): the case-opened note plus one entry per sample, everywhere
    assert len(fake.entries(case_id)) == len(SAMPLES) + 1
    assert sum(1 for r in gh.double.requests if r.url.path.endswith("/comments") and r.method == "POST") >= len(SAMPLES)

    leaks = {name: [kind for kind, value in SECRETS if leaked(value, out)] for name, out in channels.items()}
    caught = sum(1 for _, value in SECRETS if not any(leaked(value, out) for out in channels.values()))
    print(f"\nsecret corpus: {caught}/{len(SECRETS)} secrets ({len({k for k, _ in SECRETS})} types) never "
          f"left sharedctx through MCP, logs or backends ({100 * caught / len(SECRETS):.1f}%)")  # fmt: skip
    assert leaks == {name: [] for name in channels}


async def test_lookalikes_come_back_mostly_intact(ctx: SharedContext) -> None:
    async with session_as(ctx, "lead") as s:
        case = await call(s, "open_case", title="Look-alikes")
        for text in LOOKALIKES:
            await call(s, "record_entry", case_id=case["id"], kind="finding", title=text[:300], body=text)
        page = await call(s, "get_timeline", case_id=case["id"], kinds=["finding"], limit=200)
    intact = [e["body"] for e in page["entries"] if e["body"] in LOOKALIKES and e["title"] == e["body"][:300]]
    rate = len(intact) / len(LOOKALIKES)
    changed = sorted(set(LOOKALIKES) - set(intact))
    print(f"\nlook-alikes: {len(intact)}/{len(LOOKALIKES)} intact ({100 * rate:.1f}%); changed: {changed}")
    assert rate >= 0.9
