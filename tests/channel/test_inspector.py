"""A third-party MCP client (the MCP Inspector's CLI mode) lists and calls our tools.

Runs `npx -y @modelcontextprotocol/inspector --cli ...`; skipped only when `npx` is missing.
Timing on the dev box (npm cache warm): about 2-4 s per Inspector invocation, most of it Node
start-up; the first run ever also downloads the package (~30 s).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from sharedctx.channel.net import free_port

from .conftest import ROOT, partner_process

pytestmark = [
    pytest.mark.skipif(shutil.which("npx") is None, reason="npx (Node.js) is not installed"),
    pytest.mark.timeout(300),
]

INSPECTOR = ["npx", "-y", "@modelcontextprotocol/inspector@0.16.8", "--cli"]  # pinned: --header, Node 20


def inspector(*args: str) -> dict:
    done = subprocess.run([*INSPECTOR, *args], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"inspector failed ({done.returncode}): {done.stderr[-2000:]}"
    return json.loads(done.stdout)


STDIO = ["-e", f"PYTHONPATH={ROOT}", sys.executable, "-m", "tests.channel.partner_app"]
CALL = [
    "--method",
    "tools/call",
    "--tool-name",
    "search_logs",
    "--tool-arg",
    "case_id=C1",
    "--tool-arg",
    "service=checkout",
]


def test_the_inspector_lists_and_calls_tools_over_stdio() -> None:
    tools = inspector(*STDIO, "--method", "tools/list")["tools"]
    search = next(t for t in tools if t["name"] == "search_logs")
    assert search["outputSchema"]["title"] == "Finding"
    result = inspector(*STDIO, *CALL)
    assert result["isError"] is False
    assert result["structuredContent"]["partner"] == "telemetry"
    assert "from checkout" in result["structuredContent"]["summary"]


def test_the_inspector_lists_and_calls_tools_over_streamable_http() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    with partner_process(port):
        names = {t["name"] for t in inspector(url, "--transport", "http", "--method", "tools/list")["tools"]}
        result = inspector(url, "--transport", "http", *CALL)
    assert {"search_logs", "analyze_spans"} <= names
    assert result["structuredContent"]["capability"] == "search_logs"
