"""The telemetry partner with one capability broken on purpose, for the agent-level fault tests.

    python -m tests.agents.faulty_partner --fault hang|crash|malformed --capability query_metrics
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import anyio
from mcp import types

from sharedctx.agents.partner import analyze_spans_with, query_metrics_with, search_logs_with
from sharedctx.agents.telemetry import SampleSource
from sharedctx.channel import CapabilityInput, Finding, Partner, Progress

HONEST = {"query_metrics": query_metrics_with, "search_logs": search_logs_with, "analyze_spans": analyze_spans_with}


def build(fault: str, broken: str) -> Partner:
    src = SampleSource()
    partner = Partner("faulty")
    def make(name: str, fn: Any) -> Any:
        async def capability(inp: CapabilityInput, progress: Progress) -> Finding:
            if name == broken and fault == "hang":
                await anyio.sleep(3600)
            if name == broken and fault == "crash":
                await anyio.sleep(0.3)  # let the other, fast calls answer first
                print("faulty partner: killed mid-call (simulated OOM)", file=sys.stderr, flush=True)
                os._exit(3)
            return await fn(src, inp, progress)

        capability.__doc__ = f"{name} (may be broken)"
        return capability

    for name, fn in HONEST.items():
        if name == broken and fault == "malformed":
            continue  # registered below as a raw MCP tool, outside the SDK's checks
        partner.capability(make(name, fn), name=name)
    if fault == "malformed":

        def raw(case_id: str) -> types.CallToolResult:
            """Answers with structured content that is not a Finding."""
            bad = {"summary": "", "confidence": 7.5, "surprise": True}
            return types.CallToolResult(content=[types.TextContent(type="text", text=str(bad))], structuredContent=bad)

        partner.mcp().add_tool(raw, name=broken, structured_output=False)
    return partner


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--fault", choices=["hang", "crash", "malformed"], required=True)
    parser.add_argument("--capability", default="query_metrics")
    args = parser.parse_args()
    build(args.fault, args.capability).run_stdio()
