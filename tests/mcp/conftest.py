"""Fixtures for the MCP server: a journal with configured agents, and clients for every transport.

Identities (tokens come from the environment, as in production):
    lead       primary          SCX_TOKEN_LEAD
    telemetry  partner          SCX_TOKEN_TELEMETRY   remediation held for a human decision
    viewer     human-readonly   SCX_TOKEN_VIEWER
    limited    partner          SCX_TOKEN_LIMITED     may write only findings/notes, 3 entries an hour
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession
from mcp.shared.memory import create_connected_server_and_client_session

from sharedctx.access import Access
from sharedctx.config import Config, parse_config
from sharedctx.context import SharedContext
from sharedctx.mcp_server import build_mcp_server, fixed_identity
from sharedctx.testing import FakeBackend

ROOT = Path(__file__).resolve().parents[2]
TOKENS = {
    "lead": "scx-lead-7f3a9c1d2e4b",
    "telemetry": "scx-telemetry-5b8e2a7c9d1f",
    "viewer": "scx-viewer-3c6d9e1f2a4b",
    "limited": "scx-limited-8a1b2c3d4e5f",
}
AGENTS: list[dict[str, Any]] = [
    {"name": "lead", "role": "primary", "token": "env:SCX_TOKEN_LEAD"},
    {"name": "telemetry", "role": "partner", "token": "env:SCX_TOKEN_TELEMETRY",
     "policy": {"needs_decision": ["remediation"]}},
    {"name": "viewer", "role": "human-readonly", "token": "env:SCX_TOKEN_VIEWER"},
    {"name": "limited", "role": "partner", "token": "env:SCX_TOKEN_LIMITED",
     "policy": {"kinds": ["finding", "note"], "max_per_hour": 3}},
]  # fmt: skip


def config_data(tmp_path: Path) -> dict[str, Any]:
    return {
        "store": str(tmp_path / "journal.db"),
        "agent": {"name": "operator", "kind": "human"},
        "worker": {"enabled": False},
        "backends": [{"type": "local", "path": str(tmp_path / "cases")}],
        "agents": AGENTS,
    }


def write_config(tmp_path: Path) -> Path:
    """The same config as TOML, for subprocesses (`sharedctx mcp`)."""
    lines = [f'store = "{tmp_path / "journal.db"}"', "", "[agent]", 'name = "operator"', 'kind = "human"', "",
             "[worker]", "enabled = true", "poll_interval = 0.05", "", "[[backends]]", 'type = "local"',
             f'path = "{tmp_path / "cases"}"', ""]  # fmt: skip
    for a in AGENTS:
        lines += ["[[agents]]", f'name = "{a["name"]}"', f'role = "{a["role"]}"', f'token = "{a["token"]}"']
        for k, v in a.get("policy", {}).items():
            lines.append(f"policy.{k} = {json.dumps(v)}")
        lines.append("")
    path = tmp_path / "sharedctx.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def tokens(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in TOKENS.items():
        monkeypatch.setenv(f"SCX_TOKEN_{name.upper()}", value)
    return TOKENS


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return parse_config(config_data(tmp_path), base_dir=tmp_path)


@pytest.fixture
def fake() -> FakeBackend:
    return FakeBackend("fake")


@pytest.fixture
def ctx(config: Config, fake: FakeBackend) -> Iterator[SharedContext]:
    with SharedContext.open(config, worker=False, backends={"fake": fake}) as c:
        yield c


@pytest.fixture
def access(ctx: SharedContext) -> Access:
    return Access(ctx.config, ctx.store)


@asynccontextmanager
async def session_as(ctx: SharedContext, name: str) -> AsyncIterator[ClientSession]:
    """An official MCP client session, in memory, acting as the configured agent `name`."""
    acc = Access(ctx.config, ctx.store)
    server = build_mcp_server(ctx, fixed_identity(acc.identity(name)), access=acc)
    async with create_connected_server_and_client_session(server) as session:
        yield session


async def call(session: ClientSession, tool: str, **args: Any) -> dict[str, Any]:
    """Call a tool that must succeed; returns its structured content."""
    result = await session.call_tool(tool, args)
    assert not result.isError, result.content[0].text  # type: ignore[union-attr]
    assert result.structuredContent is not None
    return result.structuredContent


async def refused(session: ClientSession, tool: str, **args: Any) -> str:
    """Call a tool that must fail; returns the error text."""
    result = await session.call_tool(tool, args)
    assert result.isError, f"{tool} should have been refused: {result.structuredContent}"
    return result.content[0].text  # type: ignore[union-attr]


def all_entries(ctx: SharedContext) -> list[Any]:
    return [e for c in ctx.cases(limit=1000) for e in ctx.case(c.id).timeline()]
