"""The reference partner: a telemetry specialist that sees metrics, logs and spans the primary cannot.

    python -m sharedctx.agents.partner --transport stdio                 # MCP over stdin/stdout
    python -m sharedctx.agents.partner --transport http --port 8123      # MCP at /mcp, JSON API at /v1, A2A at /a2a
    python -m sharedctx.agents.partner --prometheus-url http://127.0.0.1:9090   # real metrics

Capabilities: `query_metrics` (the error ratio and related series over the window: baseline, peak,
when it rose, whether it is still elevated), `search_logs` (error patterns and deploy events),
`analyze_spans` (which downstream call the failing traces spend their time in).

Data: the Prometheus HTTP API when a URL is given (`--prometheus-url` or `$SHAREDCTX_PROMETHEUS_URL`),
else the sample incident shipped in `agents/data/` (see `telemetry.py`). With Prometheus, logs and
spans are not available and the capabilities say so instead of inventing them.

After answering, the partner writes its own enrichment entry (author `partner:<name>`) into the
case's journal — the store named by `--config` / `$SHAREDCTX_CONFIG`, else `./sharedctx.toml` or the
defaults in the current directory. `--no-record` turns that off (e.g. when tried with the Inspector).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import threading
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ..channel import CapabilityInput, Finding, Partner, Progress
from ..channel.trace import parse_traceparent
from ..model import Author, Evidence, format_ts, utcnow
from .telemetry import LogLine, PrometheusSource, SampleSource, Series, Span, TelemetrySource

__all__ = ["JournalRecorder", "build_partner", "main"]

log = logging.getLogger("sharedctx.agents.partner")

PROMETHEUS_ENV = "SHAREDCTX_PROMETHEUS_URL"
DEFAULT_WINDOW = timedelta(minutes=30)
ERROR_RATIO_THRESHOLD = 0.05


def _window(inp: CapabilityInput) -> tuple[datetime, datetime]:
    end = inp.end or utcnow()
    start = inp.start or end - DEFAULT_WINDOW
    return start, end


def _hm(t: datetime) -> str:
    return t.strftime("%H:%M:%S")


def _fmt(value: float, unit: str) -> str:
    if unit == "ratio":
        return f"{value * 100:.1f}%"
    if unit == "seconds":
        return f"{value:.2f}s"
    return f"{value:.4g}"


# -- capabilities ------------------------------------------------------------------------------------


def _series_evidence(s: Series, start: datetime, end: datetime, threshold: float) -> Evidence:
    peak = s.peak
    rose = s.rise_start(floor=threshold if s.unit == "ratio" else 0.0)
    return Evidence(
        type="metric",
        source=s.source,
        summary=f"{s.metric} of {s.service or 'the query'}: baseline {_fmt(s.baseline, s.unit)}, "
        + (f"peak {_fmt(peak[1], s.unit)} at {_hm(peak[0])}, " if peak else "no samples, ")
        + (f"latest {_fmt(s.latest, s.unit)}" if s.latest is not None else "no latest value"),
        query=s.query,
        start=start,
        end=end,
        data={
            "metric": s.metric,
            "service": s.service,
            "baseline": s.baseline,
            "peak": peak[1] if peak else None,
            "latest": s.latest,
            "rose_at": format_ts(rose) if rose else None,
            "elevated": bool(s.latest is not None and s.unit in ("ratio", "") and s.latest > threshold),
            "samples": len(s.points),
        },
    )


async def query_metrics_with(source: TelemetrySource, inp: CapabilityInput, progress: Progress) -> Finding:
    """The error ratio of the service (and related series) over the window, or the query in `params.query`."""
    start, end = _window(inp)
    recovery = inp.params.get("check") == "recovery"
    threshold = float(inp.params.get("threshold", ERROR_RATIO_THRESHOLD))
    progress(0, 2, f"querying {source.name}")
    series = await source.metrics(
        inp.service, start, end, query=inp.params.get("query"), after_remediation=recovery
    )
    progress(1, 2, f"read {len(series)} series")
    main, related = series[0], series[1:]
    ev = [_series_evidence(s, start, end, threshold) for s in series]
    latest = main.latest
    name = main.service or "the query"
    if recovery:
        now, limit = (_fmt(latest, main.unit) if latest is not None else "?"), _fmt(threshold, main.unit)
        if latest is None:
            summary, conf = f"No recent samples for {name}: cannot tell whether it recovered.", 0.2
        elif latest > threshold:
            summary, conf = f"{name} is still elevated: {now} (threshold {limit}).", 0.9
        else:
            summary, conf = f"{name} has recovered: {now} now, under the {limit} threshold.", 0.9
        progress(2, 2, "done")
        return Finding(summary=summary, confidence=conf, evidence=ev)
    peak = main.peak
    rose = main.rise_start(floor=threshold if main.unit == "ratio" else 0.0)
    if peak is None:
        progress(2, 2, "done")
        return Finding(summary=f"No samples for {name} between {_hm(start)} and {_hm(end)} UTC.", confidence=0.1,
                       evidence=ev, next_steps=["check that the service is scraped"])  # fmt: skip
    parts = [
        f"{name} {main.metric.replace('_', ' ')} went from {_fmt(main.baseline, main.unit)} to a peak of "
        f"{_fmt(peak[1], main.unit)} at {_hm(peak[0])} UTC"
        + (f", rising from {_hm(rose)}" if rose else "")
        + "."
    ]
    earlier = []
    for s in related:
        r = s.rise_start(factor=3.0)
        p = s.peak
        if r and p and (rose is None or r <= rose):
            earlier.append(s)
            parts.append(f"{s.service} {s.metric.replace('_', ' ')} rose first, at {_hm(r)} "
                         f"({_fmt(s.baseline, s.unit)} → {_fmt(p[1], s.unit)}).")  # fmt: skip
    steps = [f"look at what changed in {s.service} just before {_hm(s.rise_start() or end)}" for s in earlier[:1]]
    progress(2, 2, "done")
    return Finding(summary=" ".join(parts), confidence=0.85 if rose else 0.6, evidence=ev, next_steps=steps)


_NUM = re.compile(r"\d+(?:\.\d+)?")


async def search_logs_with(source: TelemetrySource, inp: CapabilityInput, progress: Progress) -> Finding:
    """Error patterns in the window, by service, and the deploys and rollbacks that happened in it."""
    start, end = _window(inp)
    lines = await source.logs(start, end)
    if lines is None:
        return Finding(summary=f"No log source is configured for this partner ({source.name} has metrics only).",
                       confidence=0.0, next_steps=["ask a partner with access to the logs"])  # fmt: skip
    progress(0, 1, f"scanning {len(lines)} log lines")
    patterns: Counter[tuple[str, str]] = Counter()
    first: dict[tuple[str, str], LogLine] = {}
    for line in lines:
        if line.level in ("error", "warn"):
            key = (line.service, _NUM.sub("N", line.message))
            patterns[key] += 1
            first.setdefault(key, line)
    deploys = [line for line in lines if line.attrs.get("event") == "deploy"]
    errors_from = min((first[k].ts for k in patterns), default=None)
    # The deploy that most plausibly explains the errors: the last one before they began.
    suspect = max((d for d in deploys if errors_from is None or d.ts <= errors_from), key=lambda d: d.ts, default=None)
    ev = [
        Evidence(type="log", source=source.name, summary=f"{n}× {svc}: {first[(svc, pat)].message}",
                 start=first[(svc, pat)].ts, end=end, data={"service": svc, "count": n, "first": format_ts(first[(svc, pat)].ts)})  # noqa: E501
        for (svc, pat), n in patterns.most_common(5)
    ]
    for d in deploys:
        ev.append(Evidence(type="log", source=source.name, summary=d.message, start=d.ts, end=d.ts,
                           data={"event": "deploy", **d.attrs, "at": format_ts(d.ts)}))  # fmt: skip
    progress(1, 1, "done")
    if not patterns:
        return Finding(summary=f"No errors or warnings in the logs between {_hm(start)} and {_hm(end)} UTC.",
                       confidence=0.5, evidence=ev)  # fmt: skip
    top = ", ".join(f"{svc} ({n}× \"{first[(svc, pat)].message[:70]}\")" for (svc, pat), n in patterns.most_common(2))
    summary = f"Errors begin at {_hm(errors_from)} UTC: {top}." if errors_from else f"Errors: {top}."
    steps: list[str] = []
    if suspect is not None:
        lead = (errors_from - suspect.ts).total_seconds() if errors_from else 0
        summary += f" {int(lead)}s before the first error: {suspect.message}."
        version = suspect.attrs.get("previous")
        steps.append(f"roll back {suspect.attrs.get('service')} to {version}" if version else "review the deploy")
        ev.append(Evidence(type="log", source=source.name, summary=f"suspect: {suspect.message}", start=suspect.ts,
                           end=suspect.ts, data={"suspect": {"kind": "deploy", **suspect.attrs,
                                                             "at": format_ts(suspect.ts)}}))  # fmt: skip
    return Finding(summary=summary, confidence=0.75 if suspect else 0.5, evidence=ev[:20], next_steps=steps)


async def analyze_spans_with(source: TelemetrySource, inp: CapabilityInput, progress: Progress) -> Finding:
    """Where failing traces spend their time: the downstream service and operation that dominate them."""
    start, end = _window(inp)
    spans = await source.spans(start, end)
    if spans is None:
        return Finding(summary=f"No trace source is configured for this partner ({source.name} has metrics only).",
                       confidence=0.0, next_steps=["ask a partner with access to the traces"])  # fmt: skip
    traces: dict[str, list[Span]] = defaultdict(list)
    for s in spans:
        traces[s.trace_id].append(s)
    failing = [t for t in traces.values() if any(s.status == "error" for s in t)]
    progress(0, max(1, len(failing)), f"analysing {len(traces)} traces, {len(failing)} failing")
    time_in: dict[tuple[str, str], float] = defaultdict(float)
    errors: Counter[str] = Counter()
    total = 0.0
    for i, t in enumerate(failing):
        root = next((s for s in t if s.parent is None), t[0])
        total += root.duration_ms
        for s in t:
            if s.parent is not None and s.parent == root.span_id:
                time_in[(s.service, s.operation)] += s.duration_ms
            if s.error:
                errors[f"{s.service} {s.operation}: {s.error}"] += 1
        if i % 10 == 0:
            progress(i, len(failing))
    progress(len(failing), max(1, len(failing)), "done")
    if not failing:
        return Finding(summary=f"None of {len(traces)} traces in the window failed.", confidence=0.6)
    (svc, op), spent = max(time_in.items(), key=lambda kv: kv[1]) if time_in else (("?", "?"), 0.0)
    share = spent / total if total else 0.0
    healthy = [t for t in traces.values() if t not in failing]
    ok = [s.duration_ms for t in healthy for s in t if (s.service, s.operation) == (svc, op)]
    bad = [s.duration_ms for t in failing for s in t if (s.service, s.operation) == (svc, op)]
    summary = (f"{len(failing)} of {len(traces)} traces failed; they spend {share:.0%} of their time in "
               f"{svc} {op} (median {sorted(bad)[len(bad) // 2]:.0f} ms vs "
               f"{(sorted(ok)[len(ok) // 2] if ok else 0):.0f} ms in healthy traces).")  # fmt: skip
    if errors:
        summary += f" Most common error: {errors.most_common(1)[0][0]}."
    ev = [Evidence(type="span", source=source.name, summary=f"{n}× {e}", start=start, end=end,
                   data={"count": n}) for e, n in errors.most_common(3)]  # fmt: skip
    ev.insert(0, Evidence(type="span", source=source.name, summary=summary, start=start, end=end,
                          data={"culprit_service": svc, "operation": op, "share": round(share, 3),
                                "failing_traces": len(failing), "traces": len(traces)}))  # fmt: skip
    return Finding(summary=summary, confidence=0.8 if share > 0.5 else 0.5, evidence=ev,
                   next_steps=[f"investigate {svc} {op}"])  # fmt: skip


# -- the enrichment entry ----------------------------------------------------------------------------


class JournalRecorder:
    """Writes the partner's enrichment entry into the shared journal, after the answer has gone out.

    Opens the journal lazily (a partner tried out with the Inspector never creates a store) and
    without a delivery worker: the process that owns delivery sends these entries on.
    """

    def __init__(self, config: str | Path | None, author: Author) -> None:
        self.config = config
        self.author = author
        self._ctx: Any = None
        self._lock = threading.Lock()

    def open(self) -> Any:
        """Open the journal now (the first entry then is not slowed by opening it)."""
        return self._open()

    def _open(self) -> Any:
        with self._lock:
            if self._ctx is None:
                from ..context import SharedContext

                self._ctx = SharedContext.open(self.config, worker=False)
            return self._ctx

    def __call__(self, case_id: str, finding: Finding, traceparent: str | None) -> None:
        ctx = self._open()
        parsed = parse_traceparent(traceparent)
        first = re.split(r"(?<=[.!?])\s", finding.summary, maxsplit=1)[0]
        title = f"{finding.capability}: {first}"
        body = [finding.summary, "", f"Confidence: {finding.confidence:.0%}"]
        if finding.next_steps:
            body += ["", "Suggested next steps:", *[f"- {s}" for s in finding.next_steps]]
        ctx.case(case_id).record(
            "finding",
            title if len(title) <= 140 else title[:139] + "…",
            "\n".join(body),
            evidence=finding.evidence,
            author=self.author,
            trace_id=parsed.trace_id if parsed else None,
            attrs={"capability": finding.capability, "confidence": finding.confidence, "traceparent": traceparent},
        )

    def close(self) -> None:
        if self._ctx is not None:
            self._ctx.close()


# -- assembling and running ------------------------------------------------------------------------


def build_partner(
    source: TelemetrySource | None = None, *, name: str = "telemetry", recorder: Any = None
) -> Partner:
    """The telemetry partner on `source` (default: the sample incident), with an optional recorder."""
    src: TelemetrySource = source or SampleSource()
    partner = Partner(
        name,
        recorder=recorder,
        instructions=f"Telemetry specialist reading {src.name}: metrics, logs and spans around an incident.",
    )

    @partner.capability
    async def query_metrics(inp: CapabilityInput, progress: Progress) -> Finding:
        """The service's error ratio (and related series) over the window: baseline, peak, when it rose, latest.

        params: `query` (a PromQL expression instead of the default), `threshold` (default 0.05),
        `check: "recovery"` (is it back under the threshold now?).
        """
        return await query_metrics_with(src, inp, progress)

    @partner.capability
    async def search_logs(inp: CapabilityInput, progress: Progress) -> Finding:
        """Error patterns in the window by service, and the deploys that happened just before them."""
        return await search_logs_with(src, inp, progress)

    @partner.capability
    async def analyze_spans(inp: CapabilityInput, progress: Progress) -> Finding:
        """Which downstream service and operation the failing traces spend their time in, and why they fail."""
        return await analyze_spans_with(src, inp, progress)

    return partner


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sharedctx.agents.partner", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--mcp-mode", choices=["stream", "json"], default="stream",
                        help="/mcp over HTTP: stream (SSE, progress) or json (stateless, no progress); docs/mcp.md")
    parser.add_argument("--name", default="telemetry", help="the partner's name (its entries' author)")
    parser.add_argument("--prometheus-url", default=os.environ.get(PROMETHEUS_ENV),
                        help=f"read metrics from this Prometheus (default ${PROMETHEUS_ENV}; none: sample data)")
    parser.add_argument("--rate-window", default=os.environ.get("SHAREDCTX_PROMETHEUS_RATE_WINDOW", "1m"),
                        help="range of rate() in the default error-ratio query")
    parser.add_argument("--config", default=os.environ.get("SHAREDCTX_CONFIG"),
                        help="the sharedctx.toml whose journal gets the enrichment entries")
    parser.add_argument("--no-record", action="store_true", help="do not write enrichment entries")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="partner %(levelname)s %(name)s: %(message)s")

    source: TelemetrySource = (
        PrometheusSource(args.prometheus_url, rate_window=args.rate_window) if args.prometheus_url else SampleSource()
    )
    recorder = None if args.no_record else JournalRecorder(args.config, Author(kind="partner", name=args.name))
    partner = build_partner(source, name=args.name, recorder=recorder)
    if recorder is not None:
        try:
            recorder.open()
        except Exception as exc:  # the partner still answers; entries are attempted again per call
            log.warning("cannot open the journal for enrichment entries: %s", exc)
    try:
        if args.transport == "stdio":
            partner.run_stdio()
        else:
            import uvicorn

            uvicorn.run(partner.http_app(mcp_mode=args.mcp_mode), host=args.host, port=args.port,
                        log_level="warning")
            partner.close()
    finally:
        if recorder is not None:
            recorder.close()


if __name__ == "__main__":
    main()
