"""Watching sharedctx: what /metrics says must match what the store holds, and spans must join entries by trace id.

Counters are process-wide, so every check is a delta around the action under test.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from sharedctx.agents.primary import PrimaryAgent
from sharedctx.channel import CapabilityInput, PartnerClient
from sharedctx.config import PartnerSettings
from sharedctx.context import SharedContext
from sharedctx.errors import (
    Ambiguous,
    AuthFailed,
    ConfigError,
    InvalidEntry,
    PartnerError,
    Rejected,
    Retryable,
    StoreError,
    UnknownCapability,
)
from sharedctx.intake_guard import IntakeAuth
from sharedctx.observability import metrics_registry, render_metrics, serve_metrics, setup_otlp, span
from sharedctx.server import Dispatcher, build_app
from sharedctx.server import app as server_app
from sharedctx.testing import FakeBackend
from sharedctx.webhooks import webhooks_app
from tests.channel.partner_app import build as build_partner

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse Prometheus text format (the real parser: a malformed exposition fails here)."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):  # the global provider can be set once per process
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter


def outbox(ctx: SharedContext, n: int) -> list[str]:
    case = ctx.open_case("disk full", service="db")
    return [case.record("finding", f"finding {i}", "body", trace_id=TRACE).id for i in range(n)]


# -- the store's numbers --------------------------------------------------------------------------
def test_outbox_health_counts_pending_held_dead_and_the_oldest_pending(ctx: SharedContext, fake: FakeBackend) -> None:
    before = time.time()
    outbox(ctx, 4)
    health = ctx.store.outbox_health()["fake"]
    assert (health.pending, health.held, health.dead) == (4, 0, 0)
    assert health.oldest_pending_at is not None and before - 1 <= health.oldest_pending_at <= time.time() + 1
    fake.fail_next(Rejected("400 bad"))  # the first entry is buried, the rest are delivered
    ctx.worker.run_once()
    health = ctx.store.outbox_health()["fake"]
    assert (health.pending, health.dead, health.declined) == (0, 1, 0)
    assert health.oldest_pending_at is None
    ctx.store.set_backend_state("fake", "stopped", "401")
    assert [(s.name, s.state) for s in ctx.store.backend_states()] == [("fake", "stopped")]


def test_the_collector_reports_every_configured_backend_even_with_nothing_in_its_outbox(ctx: SharedContext) -> None:
    outbox(ctx, 2)
    reg = metrics_registry(ctx.store, ["fake", "idle"], process=False)
    got = scrape(render_metrics(reg).decode())
    assert got[("sharedctx_store_up", ())] == 1
    assert got[("sharedctx_outbox_pending", (("backend", "fake"),))] == 2
    assert got[("sharedctx_outbox_pending", (("backend", "idle"),))] == 0
    assert got[("sharedctx_backend_stopped", (("backend", "idle"),))] == 0
    assert got[("sharedctx_outbox_oldest_pending_age_seconds", (("backend", "fake"),))] >= 0


def test_a_store_that_fails_makes_store_up_zero_instead_of_failing_the_scrape(
    ctx: SharedContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> Any:
        raise StoreError("database is locked")

    monkeypatch.setattr(ctx.store, "outbox_health", broken)
    got = scrape(render_metrics(metrics_registry(ctx.store, ["fake"], process=False)).decode())
    assert got == {("sharedctx_store_up", ()): 0}


# -- counted where it happens ---------------------------------------------------------------------
def test_every_delivery_outcome_is_counted_once(ctx: SharedContext, fake: FakeBackend) -> None:
    ctx.config.worker.base_delay = ctx.config.worker.max_delay = 0.0
    outcomes = ("delivered", "retry", "ambiguous", "dead", "stopped")
    before = {o: sample("sharedctx_delivery_outcomes_total", backend="fake", outcome=o) for o in outcomes}
    attempts_before = sample("sharedctx_delivery_seconds_count", backend="fake")
    outbox(ctx, 3)
    fake.fail_next(Retryable("503"), Ambiguous("timeout"), Rejected("400"), AuthFailed("401"))
    handled = ctx.worker.run_once()
    delta = {o: sample("sharedctx_delivery_outcomes_total", backend="fake", outcome=o) - before[o] for o in outcomes}
    # entry 1: retry, ambiguous, dead (then the line moves on); entry 2: stopped (backend halts)
    assert delta == {"delivered": 0, "retry": 1, "ambiguous": 1, "dead": 1, "stopped": 1}
    assert sample("sharedctx_delivery_seconds_count", backend="fake") - attempts_before == handled == 4
    ctx.store.set_backend_state("fake", "running", None)
    ctx.worker.run_once()
    assert sample("sharedctx_delivery_outcomes_total", backend="fake", outcome="delivered") - before["delivered"] == 2


def test_record_latency_is_observed_for_good_and_refused_entries(ctx: SharedContext) -> None:
    ok, err = sample("sharedctx_record_seconds_count", outcome="ok"), sample("sharedctx_record_seconds_count",
                                                                             outcome="error")
    case = ctx.open_case("c")
    case.record("finding", "fine", "")
    with pytest.raises(InvalidEntry):
        case.record("finding", "", "")
    assert sample("sharedctx_record_seconds_count", outcome="ok") - ok == 1
    assert sample("sharedctx_record_seconds_count", outcome="error") - err == 1


@pytest.mark.anyio
async def test_webhooks_are_counted_by_backend_and_status_with_unknown_names_folded(ctx: SharedContext) -> None:
    before = sample("sharedctx_webhooks_total", backend="_unknown", status="404")
    transport = httpx.ASGITransport(app=webhooks_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for name in ("nope", "x" * 40, "other"):
            assert (await client.post(f"/{name}", content=b"{}")).status_code == 404
    assert sample("sharedctx_webhooks_total", backend="_unknown", status="404") - before == 3


# -- spans ----------------------------------------------------------------------------------------
def test_record_and_delivery_spans_carry_the_entrys_trace_id(ctx: SharedContext, spans: InMemorySpanExporter) -> None:
    spans.clear()
    outbox(ctx, 1)
    ctx.worker.run_once()
    got = {s.name: s for s in spans.get_finished_spans()}
    assert {"sharedctx.record", "sharedctx.deliver"} <= set(got)
    for name in ("sharedctx.record", "sharedctx.deliver"):
        assert format(got[name].context.trace_id, "032x") == TRACE
    assert got["sharedctx.deliver"].attributes["sharedctx.backend"] == "fake"


@pytest.mark.parametrize("bad", ["zz" * 16, "0" * 32, "abc", TRACE.upper()])
def test_a_refused_trace_id_ends_its_span_as_an_error_and_counts_as_an_error(
    ctx: SharedContext, spans: InMemorySpanExporter, bad: str
) -> None:
    case = ctx.open_case("c")
    spans.clear()
    errors = sample("sharedctx_record_seconds_count", outcome="error")
    with pytest.raises(InvalidEntry, match="trace_id"):
        case.record("finding", "t", "", trace_id=bad)
    [s] = [s for s in spans.get_finished_spans() if s.name == "sharedctx.record"]
    assert s.context.trace_id != 0 and not s.status.is_ok  # a fresh trace, never the malformed id
    assert sample("sharedctx_record_seconds_count", outcome="error") - errors == 1


@pytest.mark.parametrize("bad", ["zz" * 16, "0" * 32, "abc", "", None])
def test_span_ignores_a_trace_id_that_is_not_w3c(spans: InMemorySpanExporter, bad: str | None) -> None:
    spans.clear()
    with span("t", bad):
        pass
    [s] = spans.get_finished_spans()
    assert s.context.trace_id != 0 and s.parent is None


@pytest.mark.anyio
async def test_partner_calls_are_timed_counted_and_traced(spans: InMemorySpanExporter) -> None:
    spans.clear()
    settings = PartnerSettings(name="telemetry", transport="api", url="http://p", timeout=10)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=build_partner().http_app()), base_url="http://p")
    calls = sample("sharedctx_partner_call_seconds_count", partner="telemetry", capability="search_logs")
    errors = sample("sharedctx_partner_call_errors_total", partner="telemetry", capability="fail",
                    error="PartnerError")
    async with PartnerClient(settings, http_client=http) as client:
        await client.call("search_logs", CapabilityInput(case_id="C1", service="checkout"),
                          traceparent=f"00-{TRACE}-00f067aa0ba902b7-01")
        with pytest.raises(PartnerError):
            await client.call("fail", CapabilityInput(case_id="C1", service="checkout"))
        unknown = sample("sharedctx_partner_call_errors_total", partner="telemetry", capability="_unknown",
                         error="UnknownCapability")
        for name in ("no_such_thing", "x" * 50):
            with pytest.raises(UnknownCapability):
                await client.call(name, CapabilityInput(case_id="C1", service="checkout"))
    assert sample("sharedctx_partner_call_errors_total", partner="telemetry", capability="_unknown",
                  error="UnknownCapability") - unknown == 2
    assert sample("sharedctx_partner_call_seconds_count", partner="telemetry", capability="no_such_thing") == 0
    assert sample("sharedctx_partner_call_seconds_count", partner="telemetry", capability="search_logs") - calls == 1
    assert sample("sharedctx_partner_call_errors_total", partner="telemetry", capability="fail",
                  error="PartnerError") - errors == 1
    [ok] = [s for s in spans.get_finished_spans() if s.attributes.get("sharedctx.capability") == "search_logs"]
    assert format(ok.context.trace_id, "032x") == TRACE
    assert ok.parent is not None and format(ok.parent.span_id, "016x") == "00f067aa0ba902b7"


# -- the endpoints --------------------------------------------------------------------------------
def app_client(ctx: SharedContext, *, host: str = "127.0.0.1", auth: IntakeAuth | None = None) -> httpx.AsyncClient:
    app = build_app(ctx, dispatcher=Dispatcher(ctx, PrimaryAgent([])), auth=auth or IntakeAuth())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(host, 5555)), base_url="http://t")


@pytest.mark.anyio
async def test_metrics_endpoint_serves_the_store_and_process_numbers(ctx: SharedContext) -> None:
    outbox(ctx, 3)
    ctx.store.set_backend_state("fake", "stopped", "bad token")
    async with app_client(ctx) as c:
        resp = await c.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    got = scrape(resp.text)
    assert got[("sharedctx_outbox_pending", (("backend", "fake"),))] == 3
    assert got[("sharedctx_backend_stopped", (("backend", "fake"),))] == 1
    assert ("sharedctx_record_seconds_count", (("outcome", "ok"),)) in got


@pytest.mark.anyio
async def test_metrics_from_another_machine_need_the_intake_credentials(ctx: SharedContext) -> None:
    auth = IntakeAuth(token=b"s3cret")
    async with app_client(ctx, host="10.1.2.3", auth=auth) as c:
        denied = await c.get("/metrics")
        allowed = await c.get("/metrics", headers={"authorization": "Bearer s3cret"})
    assert denied.status_code == 401 and "Bearer" in denied.headers["www-authenticate"]
    assert allowed.status_code == 200
    async with app_client(ctx, host="127.0.0.1", auth=auth) as c:
        assert (await c.get("/metrics")).status_code == 200


@pytest.mark.anyio
async def test_readyz_is_503_with_a_reason_when_the_store_fails_or_hangs(
    ctx: SharedContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with app_client(ctx) as c:
        assert (await c.get("/readyz")).json() == {"ready": True}
        assert (await c.get("/healthz")).json() == {"ok": True, "running": 0}

        def refuse() -> None:
            raise StoreError("connection refused")

        monkeypatch.setattr(ctx.store, "ping", refuse)
        resp = await c.get("/readyz")
        assert resp.status_code == 503 and "connection refused" in resp.json()["reason"]

        monkeypatch.setattr(ctx.store, "ping", lambda: time.sleep(1.0))
        monkeypatch.setattr(server_app, "READY_TIMEOUT", 0.1)
        resp = await c.get("/readyz")
        assert resp.status_code == 503 and "did not answer within" in resp.json()["reason"]
        assert (await c.get("/healthz")).status_code == 200  # alive, just not ready


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_poller_read_backs_are_counted_by_outcome(
    ctx: SharedContext, fake: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sharedctx.errors import BackendError
    from sharedctx.humans import Poller

    outbox(ctx, 1)
    ctx.worker.run_once()  # binds the case to a thread on `fake`
    ok, failed = sample("sharedctx_poll_reads_total", backend="fake", outcome="ok"), sample(
        "sharedctx_poll_reads_total", backend="fake", outcome="error")
    poller = Poller(ctx)
    poller.poll_once()

    def down(*a: Any, **k: Any) -> Any:
        raise BackendError("503 from the service")

    monkeypatch.setattr(fake, "read_back", down)
    poller.poll_once()
    assert sample("sharedctx_poll_reads_total", backend="fake", outcome="ok") - ok == 1
    assert sample("sharedctx_poll_reads_total", backend="fake", outcome="error") - failed == 1


def test_a_worker_without_an_http_app_serves_metrics_on_its_own_port(ctx: SharedContext) -> None:
    outbox(ctx, 2)
    server = serve_metrics(ctx.store, ["fake"], "127.0.0.1", 0)
    try:
        resp = httpx.get(f"http://127.0.0.1:{server.server_port}/metrics", timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    assert scrape(resp.text)[("sharedctx_outbox_pending", (("backend", "fake"),))] == 2


def test_otlp_is_off_without_an_endpoint_and_a_clear_error_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert setup_otlp() is False
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)  # not installed
    with pytest.raises(ConfigError, match=r"sharedctx\[otlp\]"):
        setup_otlp()


def test_otlp_with_the_extra_installs_an_exporting_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    installed: list[Any] = []
    monkeypatch.setattr(trace, "set_tracer_provider", installed.append)  # the real one can be set once per process
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert setup_otlp("sharedctx-test") is True
    [provider] = installed
    assert provider.resource.attributes["service.name"] == "sharedctx-test"
    provider.shutdown()
