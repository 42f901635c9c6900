"""An example partner for tests and the bench, with the misbehaviours the client must survive.

    python -m tests.channel.partner_app --transport stdio
    python -m tests.channel.partner_app --transport http --port 8123

Capabilities: `search_logs` (fast, echoes the trace context), `analyze_spans` (slow, reports
progress, honours cancellation), `sync_scan` (a sync capability, checks `progress.cancelled`),
`crash` (the process dies mid-call), `fail` (raises), and `malformed_finding` (a raw MCP tool,
outside the SDK, whose answer is not a Finding).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import anyio
from mcp import types

from sharedctx.channel import CallContext, CapabilityInput, Finding, Partner, Progress
from sharedctx.model import Evidence


def build(name: str = "telemetry", recorder: Any = None) -> Partner:
    """A fresh partner (an HTTP app can be served only once, so tests build one each)."""
    partner = Partner(name, recorder=recorder)

    @partner.capability
    async def search_logs(inp: CapabilityInput, call: CallContext) -> Finding:
        """Search the service's logs in the time window for errors."""
        return Finding(
            summary=f"12 timeouts calling payments from {inp.service} (trace {call.trace_id}, case {call.case_id})",
            confidence=0.8,
            evidence=[Evidence(type="log", source="loki", summary="upstream timeout", query='{app="checkout"}')],
            next_steps=["check the payments deploy"],
        )

    @partner.capability
    async def analyze_spans(inp: CapabilityInput, progress: Progress) -> Finding:
        """A long span analysis: reports progress, and stops when the call is cancelled."""
        steps = int(inp.params.get("steps", 3))
        delay = float(inp.params.get("delay", 0.05))
        for i in range(steps):
            progress(i, steps, f"analysing batch {i + 1}/{steps}")
            await anyio.sleep(delay)
        progress(steps, steps, "done")
        return Finding(summary=f"p99 latency doubled in {steps} batches", confidence=0.6)

    @partner.capability
    def sync_scan(inp: CapabilityInput, progress: Progress) -> Finding:
        """A sync capability: runs in a worker thread and checks `progress.cancelled`."""
        seconds = float(inp.params.get("seconds", 0.0))
        deadline = time.monotonic() + seconds
        progress(0, 1, "scanning")
        while time.monotonic() < deadline:
            if progress.cancelled:
                marker = inp.params.get("cancel_marker")
                if marker:
                    with open(marker, "w") as fh:
                        fh.write("cancelled")
                return Finding(summary="cancelled", confidence=0.0)
            time.sleep(0.01)
        progress(1, 1, "scanned")
        return Finding(summary="scan complete", confidence=0.5)

    @partner.capability
    async def crash(inp: CapabilityInput) -> Finding:
        """Dies mid-call, like a partner killed by the OOM killer."""
        print("partner: about to crash (out of memory, simulated)", file=sys.stderr, flush=True)
        await anyio.sleep(0.05)
        os._exit(3)

    @partner.capability
    def fail(inp: CapabilityInput) -> Finding:
        """Raises, like a partner whose datastore is down."""
        raise RuntimeError("loki is unreachable")

    def malformed_finding(case_id: str) -> types.CallToolResult:
        """Answers with structured content that is not a Finding (confidence out of range)."""
        bad = {"summary": "", "confidence": 7.5}
        return types.CallToolResult(content=[types.TextContent(type="text", text=str(bad))], structuredContent=bad)

    partner.mcp().add_tool(malformed_finding, structured_output=False)
    return partner


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--mcp-mode", choices=["stream", "json"], default="stream")
    args = parser.parse_args(argv)
    partner = build()
    if args.transport == "stdio":
        partner.run_stdio()
    else:
        import uvicorn

        uvicorn.run(partner.http_app(mcp_mode=args.mcp_mode), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
