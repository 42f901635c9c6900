"""The partner SDK, exercised in process and over in-memory MCP (the SDK's own testing seam)."""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any

import anyio
import jsonschema
import pytest
from mcp import types
from mcp.server.fastmcp import FastMCP
from mcp.shared.memory import create_connected_server_and_client_session

from sharedctx.channel import CallContext, CapabilityInput, Finding, Partner, PartnerClient, Progress
from sharedctx.channel.trace import parse_traceparent
from sharedctx.errors import PartnerBadOutput, PartnerError, PartnerTimeout, UnknownCapability
from sharedctx.model import Evidence

from .partner_app import build

pytestmark = pytest.mark.anyio

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_the_decorator_returns_the_function_unchanged_so_it_can_be_unit_tested() -> None:
    partner = Partner("p")

    def search(inp: CapabilityInput) -> Finding:
        return Finding(summary="x", confidence=1)

    assert partner.capability(search) is search
    assert search(CapabilityInput(case_id="C")).summary == "x"


@pytest.mark.parametrize(
    ("signature", "problem"),
    [
        ("def f(x: int) -> Finding: ...", "must be annotated CapabilityInput"),
        ("def f(p: Progress) -> Finding: ...", "needs one parameter annotated CapabilityInput"),
        ("def f(a: CapabilityInput, b: CapabilityInput) -> Finding: ...", "two parameters"),
    ],
)
def test_a_capability_with_an_unusable_signature_is_refused_at_registration(signature: str, problem: str) -> None:
    ns: dict[str, Any] = {"CapabilityInput": CapabilityInput, "Progress": Progress, "Finding": Finding}
    exec(signature, ns)
    with pytest.raises(TypeError, match=problem):
        Partner("p").capability(ns["f"])


def test_the_input_refuses_a_window_that_ends_before_it_starts() -> None:
    with pytest.raises(ValueError, match="before start"):
        CapabilityInput(case_id="C", start="2025-01-02T00:00:00Z", end="2025-01-01T00:00:00Z")  # type: ignore[arg-type]


async def test_an_in_process_call_stamps_partner_and_capability_and_records() -> None:
    seen: list[tuple[str, Finding, str | None]] = []
    partner = build(recorder=lambda case, f, tp: seen.append((case, f, tp)))
    finding = await partner.call("search_logs", CapabilityInput(case_id="C9", service="checkout"), traceparent=TP)
    assert (finding.partner, finding.capability) == ("telemetry", "search_logs")
    assert partner.wait_for_records(5)
    assert seen == [("C9", finding, TP)]


async def test_a_capability_returning_a_non_finding_is_bad_output() -> None:
    partner = Partner("p")

    @partner.capability
    def broken(inp: CapabilityInput) -> Finding:
        return {"summary": "no confidence"}  # type: ignore[return-value]

    with pytest.raises(PartnerBadOutput, match="not a Finding"):
        await partner.call("broken", CapabilityInput(case_id="C"))


async def test_tools_have_flat_typed_input_and_finding_output_schemas() -> None:
    async with create_connected_server_and_client_session(build().mcp()) as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
    tool = tools["search_logs"]
    assert tool.description == "Search the service's logs in the time window for errors."
    assert set(tool.inputSchema["properties"]) == {"case_id", "service", "start", "end", "question", "params"}
    assert tool.inputSchema["required"] == ["case_id"]
    assert tool.outputSchema is not None and tool.outputSchema["title"] == "Finding"
    assert "ctx" not in tool.inputSchema["properties"]


async def test_structured_output_comes_back_as_a_typed_finding_over_mcp() -> None:
    async with create_connected_server_and_client_session(build().mcp()) as session:
        raw = await session.call_tool("search_logs", {"case_id": "C1", "service": "checkout"})
        finding = await PartnerClient.over_session("telemetry", session).call(
            "search_logs", CapabilityInput(case_id="C1", service="checkout")
        )
    assert raw.structuredContent is not None and raw.structuredContent["partner"] == "telemetry"
    assert finding.evidence[0].source == "loki"
    assert finding.next_steps == ["check the payments deploy"]


FIXED = Finding(
    summary="12 timeouts calling payments",
    confidence=0.8,
    evidence=[Evidence(type="log", source="loki", summary="upstream timeout", query='{app="checkout"}')],
    next_steps=["check the payments deploy"],
    capability="search_logs",
    partner="telemetry",
)


async def _tool_and_result(server: FastMCP) -> tuple[types.Tool, types.CallToolResult]:
    async with create_connected_server_and_client_session(server) as session:
        tool = (await session.list_tools()).tools[0]
        params = types.CallToolRequestParams(name="search_logs", arguments={"case_id": "C1"})
        request = types.CallToolRequest(params=params)
        result = await session.send_request(types.ClientRequest(request), types.CallToolResult)
    return tool, result


async def test_tools_list_and_results_are_what_the_bare_sdk_gives_for_the_same_tool() -> None:
    partner = Partner("telemetry")

    @partner.capability
    async def search_logs(inp: CapabilityInput) -> Finding:
        """Search the logs."""
        return FIXED

    bare = FastMCP("telemetry")

    @bare.tool(name="search_logs", description="Search the logs.", structured_output=True)
    async def bare_search_logs(
        case_id: str,
        service: str = "",
        start: datetime | None = None,
        end: datetime | None = None,
        question: str = "",
        params: dict[str, Any] | None = None,
    ) -> Finding:
        return FIXED

    ours_tool, ours_result = await _tool_and_result(partner.mcp())
    bare_tool, bare_result = await _tool_and_result(bare)
    assert ours_tool.outputSchema == bare_tool.outputSchema == Finding.model_json_schema()
    assert ours_result.model_dump() == bare_result.model_dump()  # the same text block and structuredContent


async def test_the_server_does_not_re_validate_each_answer_with_jsonschema(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK would check every answer against the output schema with `jsonschema.validate`, which
    # re-checks the schema itself each time; pydantic (Finding) has already validated the answer.
    calls: list[Any] = []
    real = jsonschema.validate
    monkeypatch.setattr(jsonschema, "validate", lambda *a, **kw: calls.append(a) or real(*a, **kw))
    async with create_connected_server_and_client_session(build().mcp()) as session:
        client = PartnerClient.over_session("telemetry", session)
        for _ in range(3):
            assert (await client.call("search_logs", CapabilityInput(case_id="C1"))).partner == "telemetry"
    assert calls == []


async def test_an_unknown_capability_over_mcp_is_unknown_capability_listing_the_offered_ones() -> None:
    async with create_connected_server_and_client_session(build().mcp()) as session:
        client = PartnerClient.over_session("telemetry", session)
        offered = r"partner 'telemetry' has no capability 'nope' \(it offers: search_logs, "
        with pytest.raises(UnknownCapability, match=offered) as exc:
            await client.call("nope", CapabilityInput(case_id="C1"))
    assert isinstance(exc.value, PartnerError)
    assert exc.value.name == "nope" and "analyze_spans" in exc.value.known


async def test_unknown_capability_is_one_error_importable_from_everywhere() -> None:
    import sharedctx
    import sharedctx.channel

    assert sharedctx.UnknownCapability is sharedctx.channel.UnknownCapability is UnknownCapability
    assert issubclass(UnknownCapability, PartnerError)
    with pytest.raises(UnknownCapability, match=r"no capability 'nope'; this partner offers: analyze_spans"):
        build().get("nope")


async def test_listing_capabilities_that_never_answers_is_partner_timeout() -> None:
    class Hanging:
        async def list_tools(self) -> Any:
            await anyio.sleep(30)

    client = PartnerClient.over_session("telemetry", Hanging(), timeout=0.2)  # type: ignore[arg-type]
    with pytest.raises(PartnerTimeout, match=r"partner 'telemetry' did not list its capabilities within 0\.2s"):
        await client.capabilities()


async def test_traceparent_and_case_reach_the_capability_and_the_recorder() -> None:
    seen: list[tuple[str, str | None]] = []
    partner = build(recorder=lambda case, f, tp: seen.append((case, tp)))
    async with create_connected_server_and_client_session(partner.mcp()) as session:
        client = PartnerClient.over_session("telemetry", session)
        finding = await client.call("search_logs", CapabilityInput(case_id="C1"), case_id="C7", traceparent=TP)
    assert "trace 0af7651916cd43dd8448eb211c80319c" in finding.summary
    assert "case C7" in finding.summary  # the _meta case id wins over the body's
    assert partner.wait_for_records(5)
    assert seen == [("C7", TP)]


async def test_without_a_traceparent_the_client_starts_a_trace() -> None:
    seen: list[str | None] = []
    partner = build(recorder=lambda case, f, tp: seen.append(tp))
    async with create_connected_server_and_client_session(partner.mcp()) as session:
        await PartnerClient.over_session("t", session).call("search_logs", CapabilityInput(case_id="C1"))
    assert partner.wait_for_records(5)
    assert parse_traceparent(seen[0]) is not None


async def test_a_malformed_traceparent_is_dropped_not_fatal() -> None:
    seen: list[str | None] = []
    partner = build(recorder=lambda case, f, tp: seen.append(tp))
    async with create_connected_server_and_client_session(partner.mcp()) as session:
        await session.call_tool("search_logs", {"case_id": "C1"}, meta={"traceparent": "00-zz-bad"})
    assert partner.wait_for_records(5)
    assert seen == [None]


async def test_progress_notifications_arrive_in_order_before_the_answer() -> None:
    events: list[Any] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        events.append((done, total, message))

    async with create_connected_server_and_client_session(build().mcp()) as session:
        client = PartnerClient.over_session("telemetry", session)
        inp = CapabilityInput(case_id="C1", params={"steps": 3, "delay": 0.01})
        finding = await client.call("analyze_spans", inp, on_progress=on_progress)
        events.append(finding.summary)
    assert events == [
        (0.0, 3.0, "analysing batch 1/3"),
        (1.0, 3.0, "analysing batch 2/3"),
        (2.0, 3.0, "analysing batch 3/3"),
        (3.0, 3.0, "done"),
        "p99 latency doubled in 3 batches",
    ]


async def test_a_sync_capability_reports_progress_from_its_worker_thread() -> None:
    events: list[str | None] = []
    async with create_connected_server_and_client_session(build().mcp()) as session:
        client = PartnerClient.over_session("telemetry", session)
        await client.call("sync_scan", CapabilityInput(case_id="C"), on_progress=lambda d, t, m: events.append(m))
    assert events == ["scanning", "scanned"]


async def test_a_timed_out_call_is_cancelled_on_the_partner() -> None:
    stopped = threading.Event()
    partner = Partner("p")

    @partner.capability
    async def slow(inp: CapabilityInput) -> Finding:
        try:
            await anyio.sleep(30)
        finally:
            stopped.set()
        return Finding(summary="late", confidence=0)

    async with create_connected_server_and_client_session(partner.mcp()) as session:
        with pytest.raises(PartnerTimeout, match=r"no answer within 0\.2s; the call was cancelled"):
            await PartnerClient.over_session("p", session).call("slow", CapabilityInput(case_id="C"), timeout=0.2)
        with anyio.fail_after(5):
            while not stopped.is_set():
                await anyio.sleep(0.01)


async def test_a_sync_capability_sees_cancellation_through_progress(tmp_path: Any) -> None:
    marker = tmp_path / "cancelled"
    inp = CapabilityInput(case_id="C", params={"seconds": 30, "cancel_marker": str(marker)})
    async with create_connected_server_and_client_session(build().mcp()) as session:
        with pytest.raises(PartnerTimeout):
            await PartnerClient.over_session("t", session).call("sync_scan", inp, timeout=0.2)
    with anyio.fail_after(5):
        while not marker.exists():
            await anyio.sleep(0.01)


async def test_the_recorder_runs_after_the_answer_and_never_delays_it() -> None:
    release = threading.Event()
    log: list[str] = []

    def slow_recorder(case_id: str, finding: Finding, traceparent: str | None) -> None:
        log.append("recorder started")
        log.append("released" if release.wait(10) else "never released")

    partner = build(recorder=slow_recorder)
    async with create_connected_server_and_client_session(partner.mcp()) as session:
        await PartnerClient.over_session("t", session).call("search_logs", CapabilityInput(case_id="C"))
        log.append("answer received")
        release.set()
    assert partner.wait_for_records(10)
    assert log[-1] == "released"
    assert log.index("answer received") < log.index("released")


async def test_a_failing_recorder_is_logged_and_the_answer_still_arrives(caplog: pytest.LogCaptureFixture) -> None:
    def broken(case_id: str, finding: Finding, traceparent: str | None) -> None:
        raise OSError("disk full")

    partner = build(recorder=broken)
    with caplog.at_level(logging.ERROR, logger="sharedctx.channel"):
        async with create_connected_server_and_client_session(partner.mcp()) as session:
            finding = await PartnerClient.over_session("t", session).call("search_logs", CapabilityInput(case_id="C"))
        assert partner.wait_for_records(5)
    assert finding.capability == "search_logs"
    assert "recording the finding of search_logs for case C failed" in caplog.text


async def test_a_raising_capability_is_a_partner_error_naming_it() -> None:
    async with create_connected_server_and_client_session(build().mcp()) as session:
        with pytest.raises(PartnerError, match=r"capability 'fail' failed: .*loki is unreachable"):
            await PartnerClient.over_session("t", session).call("fail", CapabilityInput(case_id="C"))


async def test_a_capability_that_needs_the_call_context_gets_it() -> None:
    partner = Partner("p")
    got: list[CallContext] = []

    @partner.capability
    def who(inp: CapabilityInput, call: CallContext) -> Finding:
        got.append(call)
        return Finding(summary="ok", confidence=1)

    await partner.call("who", CapabilityInput(case_id="C3"), traceparent=TP)
    assert got == [CallContext(case_id="C3", traceparent=TP, capability="who", partner="p")]
    assert got[0].trace_id == "0af7651916cd43dd8448eb211c80319c"
