"""A third-party client, the MCP Inspector CLI: tools/list, then record_entry and get_timeline.

Runs `npx -y @modelcontextprotocol/inspector --cli …` (as tests/channel/test_inspector.py does);
skipped only when `npx` is missing. Over stdio the identity comes from `--as`. Over HTTP, the
Inspector is refused with 401 without a token, then works with `--header` (pinned 0.16.8, the line
that has `--header` and runs on Node 20), since a bearer token must never travel in the URL.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sharedctx.config import parse_config
from sharedctx.context import SharedContext
from sharedctx.mcp_server import mcp_http_app
from tests.channel.conftest import serve_in_thread

from .conftest import ROOT, TOKENS, config_data, write_config

pytestmark = [
    pytest.mark.skipif(shutil.which("npx") is None, reason="npx (Node.js) is not installed"),
    pytest.mark.timeout(300),
]

INSPECTOR = ["npx", "-y", "@modelcontextprotocol/inspector@0.16.8", "--cli"]  # pinned: --header, Node 20


def inspector(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*INSPECTOR, *args], cwd=ROOT, capture_output=True, text=True, timeout=240)
    if ok:
        assert done.returncode == 0, f"inspector failed ({done.returncode}): {done.stderr[-2000:]}"
    return done


def stdio_target(config: Path, name: str) -> list[str]:
    # the config goes by environment: the Inspector claims `--config` for itself
    return ["-e", f"PYTHONPATH={ROOT}", "-e", f"SHAREDCTX_CONFIG={config}", sys.executable, "-m", "sharedctx.cli",
            "mcp", "--as", name]  # fmt: skip


def test_the_inspector_lists_records_and_reads_over_stdio(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    target = stdio_target(config, "lead")
    tools = json.loads(inspector(*target, "--method", "tools/list").stdout)["tools"]
    record = next(t for t in tools if t["name"] == "record_entry")
    assert "author" not in record["inputSchema"]["properties"]
    assert record["outputSchema"]["title"] == "RecordOut"
    opened = json.loads(inspector(*target, "--method", "tools/call", "--tool-name", "open_case",
                                  "--tool-arg", "title=Checkout 5xx").stdout)  # fmt: skip
    case_id = opened["structuredContent"]["id"]
    recorded = json.loads(inspector(*target, "--method", "tools/call", "--tool-name", "record_entry",
                                    "--tool-arg", f"case_id={case_id}", "--tool-arg", "kind=finding",
                                    "--tool-arg", "title=p99 up 8x since deploy 4411").stdout)  # fmt: skip
    timeline = json.loads(inspector(*target, "--method", "tools/call", "--tool-name", "get_timeline",
                                    "--tool-arg", f"case_id={case_id}").stdout)  # fmt: skip
    assert recorded["isError"] is False
    assert recorded["structuredContent"]["entry"]["author"] == "primary:lead"
    titles = [e["title"] for e in timeline["structuredContent"]["entries"]]
    assert titles == ["Case opened", "p99 up 8x since deploy 4411"]


def test_the_inspector_over_streamable_http_needs_a_token_then_records_and_reads(tmp_path: Path) -> None:
    cfg = parse_config(config_data(tmp_path), base_dir=tmp_path)
    with SharedContext.open(cfg, worker=False) as ctx, serve_in_thread(mcp_http_app(ctx)) as base:
        url = f"{base}/mcp"
        refused = inspector(url, "--transport", "http", "--method", "tools/list", ok=False)
        assert ctx.cases() == []
        target = [url, "--transport", "http", "--header", f"Authorization: Bearer {TOKENS['lead']}"]
        names = {t["name"] for t in json.loads(inspector(*target, "--method", "tools/list").stdout)["tools"]}
        assert {"record_entry", "get_timeline"} <= names
        opened = json.loads(inspector(*target, "--method", "tools/call", "--tool-name", "open_case",
                                      "--tool-arg", "title=Checkout 5xx").stdout)  # fmt: skip
        case_id = opened["structuredContent"]["id"]
        recorded = json.loads(inspector(*target, "--method", "tools/call", "--tool-name", "record_entry",
                                        "--tool-arg", f"case_id={case_id}", "--tool-arg", "kind=finding",
                                        "--tool-arg", "title=p99 up 8x").stdout)  # fmt: skip
        timeline = json.loads(inspector(*target, "--method", "tools/call", "--tool-name", "get_timeline",
                                        "--tool-arg", f"case_id={case_id}").stdout)  # fmt: skip
    assert refused.returncode != 0 and "401" in refused.stdout + refused.stderr
    assert recorded["structuredContent"]["entry"]["author"] == "primary:lead"
    assert [e["title"] for e in timeline["structuredContent"]["entries"]] == ["Case opened", "p99 up 8x"]
