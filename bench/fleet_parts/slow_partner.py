"""The telemetry partner, slowed down: every capability waits `--delay` seconds, then answers honestly.

    python -m bench.fleet_parts.slow_partner --delay 4

Used by the failover bench and test, so an investigation is still in its consult step when a replica is
killed. It writes no journal entries of its own (only the primary's steps are counted there).
"""

from __future__ import annotations

import argparse

import anyio

from sharedctx.agents.partner import analyze_spans_with, query_metrics_with, search_logs_with
from sharedctx.agents.telemetry import SampleSource
from sharedctx.channel import CapabilityInput, Finding, Partner, Progress


def build(delay: float) -> Partner:
    src = SampleSource()
    partner = Partner("slow")
    for name, fn in {"query_metrics": query_metrics_with, "search_logs": search_logs_with,
                     "analyze_spans": analyze_spans_with}.items():  # fmt: skip

        def make(fn: object = fn, name: str = name) -> object:
            async def capability(inp: CapabilityInput, progress: Progress) -> Finding:
                await anyio.sleep(delay)
                return await fn(src, inp, progress)  # type: ignore[operator, no-any-return]

            capability.__doc__ = f"{name}, after a {delay:g}s wait"
            return capability

        partner.capability(make(), name=name)  # type: ignore[arg-type]
    return partner


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--delay", type=float, default=4.0)
    build(ap.parse_args().delay).run_stdio()
