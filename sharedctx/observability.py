"""Watching sharedctx itself: Prometheus metrics and OpenTelemetry spans.

Two kinds of numbers, two homes:
  * What the process *does* (record latency, delivery outcomes, partner calls, webhooks, polls) is
    counted where it happens, in module-level instruments on prometheus-client's default `REGISTRY`.
    The instrumented code is module-level too (one `Worker` per process, many `SharedContext`s in
    tests), so threading a registry through every call would buy nothing; an embedding app that
    already serves the default registry gets these for free.
  * What the *store* holds (outbox depth, oldest pending age, dead letters, stopped backends) is read at
    scrape time by `StoreCollector`, registered in a per-app `CollectorRegistry` (`metrics_registry`):
    the numbers are shared by every process writing to the same store, so they are never counted
    in-process, and two apps on two stores never mix.

Spans use the entry's / call's trace id as their trace (`span`), so a trace viewer shows the
delivery of an entry in the trace that recorded it. Without an SDK configured the API is a no-op.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .errors import ConfigError
from .store.base import Store

__all__ = [
    "DELIVERY_OUTCOMES",
    "RECORD_ERROR",
    "RECORD_OK",
    "StoreCollector",
    "delivery_outcome",
    "metrics_registry",
    "render_metrics",
    "serve_metrics",
    "setup_otlp",
    "span",
    "timed",
    "tracing",
]

log = logging.getLogger("sharedctx.observability")
tracer = trace.get_tracer("sharedctx")

# Latencies from sub-millisecond (a SQLite append) to a minute (a slow backend or partner).
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

RECORD_SECONDS = Histogram(
    "sharedctx_record_seconds", "Time record() took, validation and redaction included, by outcome (ok/error).",
    ["outcome"], buckets=_BUCKETS,
)
DELIVERY_SECONDS = Histogram(
    "sharedctx_delivery_seconds", "Time one delivery attempt took, from claim to its outcome.",
    ["backend"], buckets=_BUCKETS,
)
DELIVERY_TOTAL = Counter(
    "sharedctx_delivery_outcomes", "Delivery attempts by outcome.", ["backend", "outcome"],
)
PARTNER_SECONDS = Histogram(
    "sharedctx_partner_call_seconds", "Time a partner capability call took (errors included).",
    ["partner", "capability"], buckets=_BUCKETS,
)
PARTNER_ERRORS = Counter(
    "sharedctx_partner_call_errors", "Partner calls that raised, by exception class.",
    ["partner", "capability", "error"],
)
WEBHOOKS_TOTAL = Counter(
    "sharedctx_webhooks", "Webhook requests answered, by backend and HTTP status.", ["backend", "status"],
)
POLLS_TOTAL = Counter(
    "sharedctx_poll_reads", "Read-backs of a bound thread by the human-answer poller, by outcome.",
    ["backend", "outcome"],
)
POLL_ITEMS = Counter("sharedctx_poll_items", "Human items the poller read back (duplicates included).", ["backend"])

# `Worker._emit` event name -> outcome label; `retry` splits by the failure kind.
DELIVERY_OUTCOMES = {"delivered": "delivered", "retry": "retry", "dead": "dead", "lost": "lease_lost",
                     "stopped": "stopped", "held": "held"}  # fmt: skip


def delivery_outcome(backend: str, event: str, kind: str | None = None) -> None:
    """Count one delivery outcome; called only from `Worker._emit`, where every outcome passes."""
    outcome = "ambiguous" if kind == "ambiguous" else DELIVERY_OUTCOMES.get(event, event)
    DELIVERY_TOTAL.labels(backend, outcome).inc()


# `record()` observes one of these two children directly: `Histogram.labels` takes a lock and builds a key on
# every call, and `timed`'s generator costs as much again, on the one path an agent waits for.
RECORD_OK = RECORD_SECONDS.labels("ok")
RECORD_ERROR = RECORD_SECONDS.labels("error")


# -- spans -----------------------------------------------------------------------------------------
_traced = False  # a real provider was seen: OpenTelemetry lets the global provider be set only once


def tracing() -> bool:
    """Whether an OpenTelemetry SDK is configured; without one, spans are skipped (see `span`).

    Asked on every `record()`. The global provider can be set once and never replaced, so a True answer is
    kept. Until then, the API's own global says "none set" without `get_tracer_provider`'s environment
    lookup (a measurable share of `record()`'s Python under 4 threads); the public call decides otherwise."""
    global _traced
    if _traced:
        return True
    if getattr(trace, "_TRACER_PROVIDER", True) is None and "OTEL_PYTHON_TRACER_PROVIDER" not in os.environ:
        return False  # (the environment variable is the API's other way to name a provider)
    _traced = not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider)
    return _traced


def _parent(trace_id: str | None, parent_id: str | None = None) -> Any:
    """A context whose remote parent carries `trace_id` (32 hex), or None for "the current context".

    An id that is not a valid W3C trace id (or all zeros) is ignored rather than failing the work."""
    if not trace_id:
        return None
    try:
        tid = int(trace_id, 16)
        sid = int(parent_id, 16) if parent_id else int(secrets.token_hex(8), 16)
    except ValueError:
        return None
    if len(trace_id) != 32 or tid == 0 or sid == 0:
        return None
    ctx = SpanContext(trace_id=tid, span_id=sid, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return trace.set_span_in_context(NonRecordingSpan(ctx))


@contextmanager
def span(
    name: str, trace_id: str | None = None, attributes: Mapping[str, Any] | None = None, *,
    parent_id: str | None = None,
) -> Iterator[trace.Span]:
    """A span in the trace `trace_id` (when given and valid), else in the current one; exceptions are recorded.

    With no SDK configured this yields the invalid span at once: the API's own no-op path still
    attaches a context and builds a span (~10 µs), a twentieth of a `record()`, for nothing."""
    if not tracing():
        yield trace.INVALID_SPAN
        return
    attrs = {k: v for k, v in (attributes or {}).items() if v is not None}
    with tracer.start_as_current_span(name, context=_parent(trace_id, parent_id), attributes=attrs) as s:
        yield s


@contextmanager
def timed(histogram: Histogram, *labels: str, outcome: bool = False) -> Iterator[None]:
    """Observe the block's wall time in `histogram`, whether it returns or raises.

    With `outcome=True` the last label is `ok` or `error`, so a failing call cannot pass for a fast one."""
    start = time.perf_counter()
    ok = False
    try:
        yield
        ok = True
    finally:
        extra = (("ok" if ok else "error"),) if outcome else ()
        histogram.labels(*labels, *extra).observe(time.perf_counter() - start)


# -- the store, read at scrape time ----------------------------------------------------------------
class StoreCollector(Collector):
    """Outbox depth, oldest pending age, dead letters and backend state, queried from the store per scrape.

    Every configured backend gets a sample even with an empty outbox (0, not absent), so an alert rule
    never has to reason about missing series. A store that cannot be read makes `sharedctx_store_up` 0
    instead of failing the scrape: the scrape itself is how that failure reaches Prometheus."""

    def __init__(self, store: Store, backends: Iterable[str] = ()) -> None:
        self.store = store
        self.backends = list(backends)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("sharedctx_store_up", "1 if the store answered this scrape's queries, else 0.")
        try:
            health = self.store.outbox_health()
            states = {s.name: s for s in self.store.backend_states()}
        except Exception as exc:
            log.warning("metrics: could not read the store: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        now = time.time()
        names = sorted(set(self.backends) | set(health) | set(states))
        families = {
            "pending": GaugeMetricFamily("sharedctx_outbox_pending", "Deliveries waiting to be sent (not held).",
                                         labels=["backend"]),
            "held": GaugeMetricFamily("sharedctx_outbox_held", "Deliveries held for a human decision.",
                                      labels=["backend"]),
            "dead": GaugeMetricFamily("sharedctx_outbox_dead", "Dead letters an operator must look at "
                                      "(`sharedctx outbox list --dead`); declined ones excluded.", labels=["backend"]),
            "declined": GaugeMetricFamily("sharedctx_outbox_declined", "Deliveries a human declined on purpose.",
                                          labels=["backend"]),
        }
        age = GaugeMetricFamily("sharedctx_outbox_oldest_pending_age_seconds",
                                "Age of the oldest pending (not held) delivery; 0 when none.", labels=["backend"])
        stopped = GaugeMetricFamily("sharedctx_backend_stopped",
                                    "1 if delivery to the backend is stopped (auth failure), else 0.",
                                    labels=["backend"])
        for name in names:
            h = health.get(name)
            for field, fam in families.items():
                fam.add_metric([name], getattr(h, field) if h else 0)
            oldest = h.oldest_pending_at if h else None
            age.add_metric([name], max(0.0, now - oldest) if oldest is not None else 0.0)
            st = states.get(name)
            stopped.add_metric([name], 1 if st is not None and st.state == "stopped" else 0)
        yield from families.values()
        yield age
        yield stopped


class _Forward(Collector):
    """Exposes another registry's metrics (the process-wide instruments) inside an app's registry."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterator[Any]:
        yield from self.source.collect()


def metrics_registry(store: Store, backends: Iterable[str] = (), *, process: bool = True) -> CollectorRegistry:
    """A registry for one app: its store's numbers, plus (by default) the process-wide instruments."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(StoreCollector(store, backends))
    if process:
        reg.register(_Forward(REGISTRY))
    return reg


def serve_metrics(store: Store, backends: Iterable[str], host: str = "127.0.0.1", port: int = 0) -> Any:
    """`/metrics` for a process without an HTTP app (`sharedctx worker --metrics-port`): a daemon thread.

    Returns the WSGI server (`.server_port`, `.shutdown()`). It has no authentication, so it listens on
    loopback unless told otherwise (`sharedctx worker --metrics-host`)."""
    server, _thread = start_http_server(port, host, registry=metrics_registry(store, backends))
    return server


def render_metrics(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition format (version 0.0.4)."""
    return generate_latest(registry)


# -- OTLP export (optional extra) ------------------------------------------------------------------
def setup_otlp(service_name: str = "sharedctx") -> bool:
    """Export spans over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set.

    False when no endpoint is configured. An endpoint without the `[otlp]` extra installed is a
    `ConfigError`: silently dropping the traces someone asked for would be worse than not starting."""
    if not (os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ConfigError(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OTLP exporter is not installed: "
            "pip install 'sharedctx[otlp]', or unset the variable"
        ) from None
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return True
