"""What watching sharedctx costs: record() with and without its metric + span, and one /metrics scrape.

    python bench/observability.py            # ~20 s on SQLite
    python bench/observability.py --quick

1. `record()` p50/p99 on SQLite (one `local`-less in-memory backend, worker off), instrumented as shipped
   (histogram + no-op span: no SDK configured), against the same with both replaced by a null context.
   Interleaved in rounds so a noisy neighbour hits both sides alike.
2. The same with the OpenTelemetry SDK on (a span processor that drops spans): what tracing adds.
3. One scrape of the store's numbers (`StoreCollector` via `render_metrics`) with N pending outbox rows,
   which is one grouped query over the live (pending + dead) part of the outbox.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sharedctx import observability as obs
from sharedctx.config import parse_config
from sharedctx.context import SharedContext
from sharedctx.observability import metrics_registry, render_metrics
from sharedctx.store.sqlite import SQLiteStore
from sharedctx.testing import FakeBackend


class _NoObserve:
    """Stands in for `record()`'s latency histogram child on the bare side."""

    def observe(self, amount: float) -> None:
        pass


def _no_tracing() -> bool:
    return False


def _ctx(tmp: Path, backends: int = 1) -> SharedContext:
    config = parse_config({"store": "journal.db", "backends": [{"type": "local"}]}, base_dir=tmp)
    store = SQLiteStore(tmp / "journal.db")
    fakes = {f"b{i}": FakeBackend(f"b{i}") for i in range(backends)}
    return SharedContext.open(config, store=store, backends=fakes, worker=False)


def _pct(xs: list[float], q: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))] * 1e6


def record_latency(n: int, rounds: int) -> dict[str, tuple[float, float]]:
    samples: dict[str, list[float]] = {"instrumented": [], "bare": []}
    # what record() reads from `observability` on every call (it imports them there, lazily)
    real = (obs.RECORD_OK, obs.RECORD_ERROR, obs.tracing)
    bare = (_NoObserve(), _NoObserve(), _no_tracing)
    with tempfile.TemporaryDirectory() as d:
        ctx = _ctx(Path(d))
        case = ctx.open_case("bench")
        for _ in range(rounds):
            for side in ("instrumented", "bare"):
                obs.RECORD_OK, obs.RECORD_ERROR, obs.tracing = real if side == "instrumented" else bare  # type: ignore[assignment]
                for i in range(n):
                    t = time.perf_counter()
                    case.record("finding", f"step {i}", "body text " * 20, trace_id="4bf92f3577b34da6a3ce929d0e0e4736")
                    samples[side].append(time.perf_counter() - t)
        obs.RECORD_OK, obs.RECORD_ERROR, obs.tracing = real  # type: ignore[assignment]
        ctx.close()
    return {k: (_pct(v, 0.5), _pct(v, 0.99)) for k, v in samples.items()}


def with_sdk(n: int) -> tuple[float, float]:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Drop()))
    trace.set_tracer_provider(provider)
    xs = []
    with tempfile.TemporaryDirectory() as d:
        ctx = _ctx(Path(d))
        case = ctx.open_case("bench")
        for i in range(n):
            t = time.perf_counter()
            case.record("finding", f"step {i}", "body text " * 20, trace_id="4bf92f3577b34da6a3ce929d0e0e4736")
            xs.append(time.perf_counter() - t)
        ctx.close()
    return _pct(xs, 0.5), _pct(xs, 0.99)


def scrape(pending: int) -> float:
    with tempfile.TemporaryDirectory() as d:
        ctx = _ctx(Path(d), backends=2)
        case = ctx.open_case("bench")
        for i in range(pending // 2):
            case.record("finding", f"step {i}", "")
        reg = metrics_registry(ctx.store, ctx.backend_names, process=False)
        times = []
        for _ in range(20):
            t = time.perf_counter()
            render_metrics(reg)
            times.append(time.perf_counter() - t)
        ctx.close()
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n, rounds, rows = (200, 3, 2_000) if args.quick else (500, 6, 20_000)
    lat = record_latency(n, rounds)
    for side, (p50, p99) in lat.items():
        print(f"record() {side:12}  p50 {p50:7.1f} µs  p99 {p99:7.1f} µs  ({n * rounds} entries)")
    print(f"record() overhead     p50 {lat['instrumented'][0] - lat['bare'][0]:+7.1f} µs")
    p50, p99 = with_sdk(n * 2)
    print(f"record() with the OTel SDK (spans dropped)  p50 {p50:7.1f} µs  p99 {p99:7.1f} µs")
    print(f"/metrics store scrape with {rows:,} pending outbox rows: {scrape(rows):.1f} ms (median of 20)")


if __name__ == "__main__":
    main()
