"""The leak hunt through the two other doors: MCP tools (text and structured output), and PostgreSQL.

MCP: an agent writes each secret type in each encoding into every argument of the public tools
(`open_case`, `record_entry`, `invite_partner`, `find_case`), then reads everything back through the
reading tools and the case resource. Nothing it gets back, in text blocks, structured content or error
messages, may hold a piece of a secret; nor may the store's file.

PostgreSQL: the same field × type × encoding product as `test_no_leaks.py`, through the Python API
into a database of its own, then every row of every table is searched as text (`row::text`).
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sharedctx.config import Config, parse_config
from sharedctx.context import SharedContext
from sharedctx.redact import install_log_redaction
from sharedctx.store.postgres import PostgresStore
from sharedctx.testing import FakeBackend
from tests.conftest import PG_ADMIN
from tests.mcp.conftest import config_data, session_as

from .corpus import ENCODINGS, TYPES, encode, make_secrets
from .test_no_leaks import Placements, sqlite_text, write_everything

pytestmark = [pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.mcp.conftest import TOKENS

    for name, value in TOKENS.items():
        monkeypatch.setenv(f"SCX_TOKEN_{name.upper()}", value)


def dump(result: Any) -> str:
    """Everything an MCP client receives from one call: text blocks, structured content."""
    parts = [getattr(b, "text", "") for b in getattr(result, "content", [])]
    parts.append(json.dumps(getattr(result, "structuredContent", None), ensure_ascii=False))
    return "\n".join(parts)


# Arguments of `record_entry` an agent can fill with text, besides the ids it must get right. The fields
# without a tight limit share one call (a fresh secret each); the ones that may refuse get a call each.
RECORD_ARGS: dict[str, Callable[[list[str]], dict[str, Any]]] = {
    "body+evidence+attrs": lambda t: {
        "body": t[0],
        "evidence": [{"type": "log", "source": "loki", "summary": t[1], "query": t[2], "url": t[3],
                      "data": {"line": [t[4]]}}],
        "attrs": {"excerpt": {"raw": t[5]}, t[6]: 1},
    },
    "title": lambda t: {"title": t[0]},
    "evidence.source": lambda t: {"evidence": [{"type": "log", "source": t[0]}]},
    "trace_id": lambda t: {"trace_id": t[0]},
    "ref": lambda t: {"ref": t[0]},
}


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_no_secret_comes_back_through_any_mcp_tool(scratch: Path, caplog: pytest.LogCaptureFixture) -> None:
    tmp_path = scratch
    config: Config = parse_config(config_data(tmp_path), base_dir=tmp_path)
    caplog.set_level(logging.DEBUG)
    install_log_redaction()
    rng = random.Random(23)
    placements = Placements()
    outputs: list[str] = []
    with SharedContext.open(config, worker=False, backends={"fake": FakeBackend("fake")}) as ctx:
        async with session_as(ctx, "lead") as s:
            case_ids = []
            for encoding in ENCODINGS:
                for path in ("case.title", "case.fingerprint", "case.service"):
                    for secret in make_secrets(rng):
                        placements.add(path, secret, encoding)
                        field = path.removeprefix("case.")
                        args = {"title": f"leak hunt {secret.type}", field: encode(secret, encoding)}
                        res = await s.call_tool("open_case", args)
                        outputs.append(dump(res))
                        if not res.isError:
                            case_ids.append(res.structuredContent["id"])  # type: ignore[index]
                case_id = case_ids[0]
                for path, fill in RECORD_ARGS.items():
                    batches = [make_secrets(rng) for _ in range(7 if path.startswith("body") else 1)]
                    for secrets in zip(*batches, strict=True):
                        for secret in secrets:
                            placements.add(path, secret, encoding)
                        texts = [encode(secret, encoding) for secret in secrets]
                        args = {"case_id": case_id, "kind": "finding", "title": f"{path} {encoding}", **fill(texts)}
                        outputs.append(dump(await s.call_tool("record_entry", args)))
                for path, tool, arg in (("invite", "invite_partner", "partner"), ("find", "find_case", "ref")):
                    for secret in make_secrets(rng):
                        placements.add(path, secret, encoding)
                        extra = {"case_id": case_id} if tool == "invite_partner" else {}
                        outputs.append(dump(await s.call_tool(tool, {**extra, arg: encode(secret, encoding)[:2000]})))
            for cid in case_ids[:1] + case_ids[-3:]:
                since = 0
                while True:
                    page = await s.call_tool("get_timeline", {"case_id": cid, "since": since, "limit": 200})
                    outputs.append(dump(page))
                    if page.isError or not page.structuredContent["has_more"]:  # type: ignore[index]
                        break
                    since = page.structuredContent["next_since"]  # type: ignore[index]
                outputs.append(dump(await s.call_tool("handoff_summary", {"case_id": cid})))
                outputs.append(dump(await s.call_tool("similar_cases", {"case_id": cid})))
                resource = await s.read_resource(f"case://{cid}")  # type: ignore[arg-type]
                outputs.append(resource.contents[0].text)  # type: ignore[union-attr]
            for word in ("password", "token", "key", "BEGIN", "leak hunt"):
                outputs.append(dump(await s.call_tool("search_history", {"text": word, "limit": 50})))
        db_raw, fts = sqlite_text(tmp_path / "journal.db")
    sinks = {
        "mcp outputs": "\n".join(outputs),
        "sqlite": db_raw,
        "logs": "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records),
    }
    assert "[REDACTED:" in sinks["mcp outputs"] and len(case_ids) > len(ENCODINGS)
    found = {name: sorted(placements.find(text)) for name, text in sinks.items()}
    found["sqlite full-text index"] = sorted(placements.find(fts, lower=True))
    print(f"\nMCP leak hunt: {placements.count} placements ({len(TYPES)} types x {len(ENCODINGS)} encodings x "
          f"18 tool arguments); leaks: {sum(len(v) for v in found.values())}")
    assert found == {name: [] for name in found}


@pytest.fixture
def own_pg() -> Iterator[str]:
    """A database of this test's own (the team shares the server)."""
    name = f"sctx_redaction_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        # leaks are what is tested here, not durability: don't wait for the shared server's fsyncs
        conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_no_secret_reaches_postgresql_rows(own_pg: str, tmp_path: Path) -> None:
    """Every type x encoding into one entry field of each kind (text, nested JSON, key) and the case's
    free-text fields: the sanitising is the same code on both stores (the SQLite hunt covers every path);
    what is PostgreSQL's own is where rows, JSONB and the tsvector put the text."""
    config = parse_config({"store": own_pg, "worker": {"enabled": False}}, base_dir=tmp_path)
    store = PostgresStore(own_pg)
    fake = FakeBackend("fake")
    entry_paths = ["body", "evidence.data", "attrs-key", "author"]
    case_paths = ["case.title", "case.fingerprint", "case.labels"]
    with SharedContext.open(config, worker=False, store=store, backends={"fake": fake}) as ctx:
        placements = write_everything(ctx, random.Random(31), entry_paths, case_paths)
        ctx.worker.run_once()
    with psycopg.connect(own_pg) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        rows = "\n".join(r[0] for t in tables for r in conn.execute(f'SELECT t::text FROM "{t}" t'))
    assert "entries" in tables and "[REDACTED:" in rows
    assert placements.count == len(TYPES) * len(ENCODINGS) * (len(entry_paths) + len(case_paths))
    leaks = sorted(placements.find(rows)) + sorted(placements.find(rows, lower=True))  # tsvector lexemes too
    print(f"\nPostgreSQL leak hunt: {placements.count} placements, {placements.stored} stored, rows of "
          f"{len(tables)} tables searched; leaks: {len(leaks)}")
    assert leaks == []
