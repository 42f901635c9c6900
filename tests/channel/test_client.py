"""PartnerClient over real transports (stdio subprocess, Streamable HTTP, plain API) and its faults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from sharedctx.channel import CapabilityInput, Finding, PartnerClient, ask_all
from sharedctx.channel.net import free_port
from sharedctx.config import PartnerSettings
from sharedctx.errors import (
    ConfigError,
    PartnerBadOutput,
    PartnerError,
    PartnerTimeout,
    PartnerUnavailable,
    UnknownCapability,
)

from .conftest import ENV, partner_process, serve_in_thread
from .partner_app import build

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
ASK = CapabilityInput(case_id="C1", service="checkout")


def http_settings(url: str, **kw: Any) -> PartnerSettings:
    return PartnerSettings(**{"name": "telemetry", "transport": "http", "url": f"{url}/mcp", "timeout": 10, **kw})


def api_settings(url: str, **kw: Any) -> PartnerSettings:
    return PartnerSettings(**{"name": "telemetry", "transport": "api", "url": url, "timeout": 10, **kw})


# -- stdio ------------------------------------------------------------------------------------------


async def test_stdio_partner_lists_capabilities_and_answers_with_trace(stdio_settings: PartnerSettings) -> None:
    progress: list[float] = []
    async with PartnerClient(stdio_settings) as client:
        names = [c.name for c in await client.capabilities()]
        finding = await client.call("search_logs", ASK, traceparent=TP)
        await client.call(
            "analyze_spans",
            CapabilityInput(case_id="C1", params={"steps": 2, "delay": 0}),
            on_progress=lambda done, total, msg: progress.append(done),
        )
    assert names[:3] == ["search_logs", "analyze_spans", "sync_scan"]
    assert "trace 0af7651916cd43dd8448eb211c80319c" in finding.summary
    assert progress == [0.0, 1.0, 2.0]


async def test_a_partner_that_crashes_mid_call_is_unavailable_not_a_hang(stdio_settings: PartnerSettings) -> None:
    async with PartnerClient(stdio_settings) as client:
        with pytest.raises(PartnerUnavailable, match=r"went away mid-call.*about to crash"):
            await client.call("crash", ASK)
        with pytest.raises(PartnerUnavailable):
            await client.call("search_logs", ASK)


async def test_a_partner_command_that_does_not_exist_is_unavailable() -> None:
    settings = PartnerSettings(name="ghost", command=["/nonexistent/partner-binary"], timeout=5)
    with pytest.raises(PartnerUnavailable, match="partner 'ghost': could not connect"):
        async with PartnerClient(settings):
            pass


async def test_a_partner_that_exits_at_start_says_why(tmp_path: Path) -> None:
    settings = PartnerSettings(
        name="broken", command=["python3", "-c", "import sys; sys.exit('no PROMETHEUS_URL configured')"], timeout=10
    )
    with pytest.raises(PartnerUnavailable, match="no PROMETHEUS_URL configured"):
        async with PartnerClient(settings):
            pass


async def test_after_a_timeout_the_stdio_partner_still_answers(stdio_settings: PartnerSettings) -> None:
    slow = CapabilityInput(case_id="C1", params={"steps": 1, "delay": 30})
    async with PartnerClient(stdio_settings) as client:
        with pytest.raises(PartnerTimeout, match=r"'analyze_spans': no answer within 0\.5s"):
            await client.call("analyze_spans", slow, timeout=0.5)
        assert (await client.call("search_logs", ASK)).capability == "search_logs"


async def test_cancelling_the_caller_cancels_the_work_on_the_partner(
    stdio_settings: PartnerSettings, tmp_path: Path
) -> None:
    marker = tmp_path / "cancelled"
    inp = CapabilityInput(case_id="C1", params={"seconds": 60, "cancel_marker": str(marker)})
    async with PartnerClient(stdio_settings) as client:
        with anyio.move_on_after(0.5):
            await client.call("sync_scan", inp)
        with anyio.fail_after(10):
            while not marker.exists():
                await anyio.sleep(0.02)


async def test_an_unknown_capability_names_the_ones_offered(stdio_settings: PartnerSettings) -> None:
    async with PartnerClient(stdio_settings) as client:
        await client.capabilities()
        offered = r"has no capability 'query_metrics' \(it offers: search_logs"
        with pytest.raises(UnknownCapability, match=offered) as exc:
            await client.call("query_metrics", ASK)
    assert exc.value.name == "query_metrics" and exc.value.partner == "telemetry"
    assert "search_logs" in exc.value.known and "analyze_spans" in exc.value.known


async def test_schema_violating_output_is_bad_output(stdio_settings: PartnerSettings) -> None:
    async with PartnerClient(stdio_settings) as client:
        with pytest.raises(PartnerBadOutput, match=r"not a valid Finding.*confidence"):
            await client.call("malformed_finding", ASK)


# -- Streamable HTTP --------------------------------------------------------------------------------


async def test_http_partner_answers_with_progress_and_sends_auth_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARTNER_TOKEN", "s3cret")
    seen_auth: list[str] = []
    app = build().http_app()

    async def spy(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen_auth.append(dict(scope["headers"]).get(b"authorization", b"").decode())
        await app(scope, receive, send)

    progress: list[str | None] = []
    with serve_in_thread(spy) as url:
        settings = http_settings(url, headers={"Authorization": "env:PARTNER_TOKEN"})
        async with PartnerClient(settings) as client:
            finding = await client.call(
                "analyze_spans",
                CapabilityInput(case_id="C1", params={"steps": 2, "delay": 0}),
                on_progress=lambda d, t, m: progress.append(m),
            )
    assert finding.summary == "p99 latency doubled in 2 batches"
    assert progress == ["analysing batch 1/2", "analysing batch 2/2", "done"]
    assert seen_auth and set(seen_auth) == {"s3cret"}


async def test_a_missing_header_secret_is_a_config_error_naming_the_variable() -> None:
    settings = http_settings("http://127.0.0.1:9", headers={"Authorization": "env:SHAREDCTX_TEST_UNSET"})
    with pytest.raises(ConfigError, match="SHAREDCTX_TEST_UNSET is not set"):
        async with PartnerClient(settings):
            pass


async def test_an_http_partner_that_is_not_listening_is_unavailable() -> None:
    with pytest.raises(PartnerUnavailable, match="partner 'telemetry'"):
        async with PartnerClient(http_settings(f"http://127.0.0.1:{free_port()}", timeout=5)):
            pass


async def test_an_http_partner_process_that_crashes_mid_call_is_unavailable() -> None:
    port = free_port()
    with partner_process(port):
        async with PartnerClient(http_settings(f"http://127.0.0.1:{port}", timeout=15)) as client:
            with pytest.raises(PartnerUnavailable):
                await client.call("crash", ASK)


async def test_ask_all_returns_the_good_finding_and_the_dead_partners_error(stdio_settings: PartnerSettings) -> None:
    with serve_in_thread(build().http_app()) as url:
        async with PartnerClient(http_settings(url)) as alive, PartnerClient(stdio_settings) as dying:
            await dying.call("search_logs", ASK)  # connected and fine ...
            with pytest.raises(PartnerUnavailable):
                await dying.call("crash", ASK)  # ... then dead
            results = await ask_all([alive, dying], "search_logs", ASK, traceparent=TP)
    good, bad = results
    assert isinstance(good, Finding) and "trace 0af7651916cd43dd8448eb211c80319c" in good.summary
    assert isinstance(bad, PartnerUnavailable)


# -- plain HTTP API ---------------------------------------------------------------------------------


async def test_api_partner_lists_and_answers() -> None:
    with serve_in_thread(build().http_app()) as url:
        async with PartnerClient(api_settings(url)) as client:
            names = [c.name for c in await client.capabilities()]
            finding = await client.call("search_logs", ASK, case_id="C8", traceparent=TP)
    assert "search_logs" in names
    assert "case C8" in finding.summary and finding.partner == "telemetry"


async def test_api_timeout_is_partner_timeout() -> None:
    slow = CapabilityInput(case_id="C1", params={"steps": 1, "delay": 30})
    with serve_in_thread(build().http_app()) as url:
        async with PartnerClient(api_settings(url)) as client:
            with pytest.raises(PartnerTimeout, match=r"no answer within 0\.3s"):
                await client.call("analyze_spans", slow, timeout=0.3)


async def test_api_unknown_capability_and_failures_are_specific() -> None:
    with serve_in_thread(build().http_app()) as url:
        async with PartnerClient(api_settings(url)) as client:
            offered = r"partner 'telemetry' has no capability 'nope' \(it offers: analyze_spans, crash"
            with pytest.raises(UnknownCapability, match=offered) as unknown:
                await client.call("nope", ASK)
            assert unknown.value.name == "nope" and "search_logs" in unknown.value.known
            with pytest.raises(PartnerError, match="HTTP 500: capability 'fail' failed: loki is unreachable"):
                await client.call("fail", ASK)


async def test_api_disconnecting_cancels_the_capability_on_the_partner(tmp_path: Path) -> None:
    marker = tmp_path / "cancelled"
    inp = CapabilityInput(case_id="C1", params={"seconds": 60, "cancel_marker": str(marker)})
    with serve_in_thread(build().http_app()) as url:
        async with PartnerClient(api_settings(url)) as client:
            with pytest.raises(PartnerTimeout):  # the client gives up and closes the connection
                await client.call("sync_scan", inp, timeout=0.5)
            with anyio.fail_after(20):
                while not marker.exists():
                    await anyio.sleep(0.02)
            assert (await client.call("search_logs", ASK)).partner == "telemetry"  # the server carries on


async def test_api_a_404_that_is_not_an_unknown_capability_stays_a_partner_error() -> None:
    http = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(404, text="no route")), base_url="http://p"
    )
    async with PartnerClient(api_settings("http://p"), http_client=http) as client:
        with pytest.raises(PartnerError, match="HTTP 404: no route") as exc:
            await client.call("search_logs", ASK)
    assert not isinstance(exc.value, UnknownCapability)


async def test_api_listing_that_does_not_answer_in_time_is_partner_timeout() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(30)
        return httpx.Response(200, json={"capabilities": []})

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://p")
    async with PartnerClient(api_settings("http://p", timeout=0.3), http_client=http) as client:
        with pytest.raises(PartnerTimeout, match=r"did not list its capabilities within 0\.3s"):
            await client.capabilities()


async def test_api_output_that_is_not_a_finding_is_bad_output() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"summary": "ok", "confidence": "very"})

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://p")
    async with PartnerClient(api_settings("http://p"), http_client=http) as client:
        with pytest.raises(PartnerBadOutput, match="confidence"):
            await client.call("search_logs", ASK)


async def test_api_partner_not_listening_is_unavailable() -> None:
    async with PartnerClient(api_settings(f"http://127.0.0.1:{free_port()}")) as client:
        with pytest.raises(PartnerUnavailable, match="ConnectError"):
            await client.call("search_logs", ASK)


def test_env_is_passed_to_stdio_partners(stdio_settings: PartnerSettings) -> None:
    assert stdio_settings.env == ENV


async def test_clients_opened_and_closed_one_after_another_in_one_task_do_not_disturb_it(
    stdio_settings: PartnerSettings,
) -> None:
    for _ in range(2):
        async with PartnerClient(stdio_settings) as client:
            assert (await client.call("search_logs", ASK)).partner == "telemetry"
    await anyio.sleep(0)  # a corrupted cancel-scope stack would cancel us here
