"""A2A on the direct channel, checked against third-party peers built only with the official `a2a-sdk`.

Both directions: the SDK's own *client* calls our partner, and our `PartnerClient` calls an agent made
only of the SDK's *server* classes. In each, the case id and `traceparent` must arrive on the other
side and end up on the entries both sides record.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from a2a.client import ClientConfig, create_client
from a2a.helpers import get_data_parts, get_text_parts, new_data_part, new_text_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Message,
    Role,
    SendMessageRequest,
    Task,
    TaskState,
    TaskStatus,
)
from google.protobuf.json_format import MessageToDict
from starlette.applications import Starlette

from sharedctx import SharedContext
from sharedctx.channel import CapabilityInput, Finding, PartnerClient
from sharedctx.channel.a2a import A2A_PATH, CAPABILITY_META
from sharedctx.channel.trace import parse_traceparent
from sharedctx.config import PartnerSettings, parse_config
from sharedctx.errors import PartnerError, PartnerTimeout, PartnerUnavailable, UnknownCapability

from .conftest import serve_in_thread
from .partner_app import build

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def journal(tmp_path: Path) -> SharedContext:
    return SharedContext.open(parse_config({"store": "j.db"}, base_dir=tmp_path), backends={}, worker=False)


def a2a_settings(url: str, **kw: Any) -> PartnerSettings:
    return PartnerSettings(**{"name": "telemetry", "transport": "a2a", "url": url, "timeout": 10, **kw})


# -- the official SDK's client calls our partner -------------------------------------------------------


async def test_the_official_client_discovers_our_skills_and_calls_one_and_both_sides_record(tmp_path: Path) -> None:
    ctx = journal(tmp_path)
    case = ctx.open_case("checkout errors", service="checkout")
    recorded: list[tuple[str, Finding, str | None]] = []

    def recorder(case_id: str, finding: Finding, traceparent: str | None) -> None:
        recorded.append((case_id, finding, traceparent))
        trace = parse_traceparent(traceparent)
        ctx.case(case_id).record("finding", finding.summary, author="partner:telemetry",
                                 trace_id=trace.trace_id if trace else None)  # fmt: skip

    partner = build(recorder=recorder)
    with serve_in_thread(partner.http_app()) as url:
        async with httpx.AsyncClient(timeout=10) as http:
            client = await create_client(url, ClientConfig(streaming=True, httpx_client=http))
            card = (await http.get(f"{url}/.well-known/agent-card.json")).json()
            card_skills = sorted(s["id"] for s in card["skills"])
            message = Message(
                message_id=str(uuid.uuid4()),
                role=Role.ROLE_USER,
                parts=[new_data_part({"service": "checkout"}, "application/json")],
                metadata={CAPABILITY_META: "search_logs", "sharedctx/case": case.id, "traceparent": TP},
            )
            events = [e async for e in client.send_message(SendMessageRequest(message=message))]
            await client.close()
    assert partner.wait_for_records(10)
    assert {"search_logs", "analyze_spans", "sync_scan", "fail"} <= set(card_skills)
    kinds = [e.WhichOneof("payload") for e in events]
    assert kinds[0] == "task" and "artifact_update" in kinds
    final = [e.status_update.status.state for e in events if e.WhichOneof("payload") == "status_update"][-1]
    assert final == TaskState.TASK_STATE_COMPLETED
    artifact = next(e.artifact_update.artifact for e in events if e.WhichOneof("payload") == "artifact_update")
    finding = Finding.model_validate(get_data_parts(artifact.parts)[0])
    assert f"case {case.id}" in finding.summary and "trace 0af7651916cd43dd8448eb211c80319c" in finding.summary
    assert get_text_parts(artifact.parts) == [finding.summary]
    # the partner's enrichment entry carries the same case and trace id the caller sent
    assert [(c, tp) for c, _, tp in recorded] == [(case.id, TP)]
    entries = [e for e in ctx.case(case.id).timeline() if e.author.kind == "partner"]
    assert [e.trace_id for e in entries] == ["0af7651916cd43dd8448eb211c80319c"]
    ctx.close()


async def test_a_plain_text_message_from_a_generic_client_gets_a_clear_rejection_naming_the_skills() -> None:
    with serve_in_thread(build().http_app()) as url:
        async with httpx.AsyncClient(timeout=10) as http:
            client = await create_client(url, ClientConfig(streaming=False, httpx_client=http))
            msg = new_text_message("what is wrong with checkout?", role=Role.ROLE_USER)
            events = [e async for e in client.send_message(SendMessageRequest(message=msg))]
            await client.close()
    task = events[-1].task
    assert task.status.state == TaskState.TASK_STATE_REJECTED
    reason = " ".join(get_text_parts(task.status.message.parts))
    assert CAPABILITY_META in reason and "search_logs" in reason


# -- our PartnerClient calls an agent built only with the SDK's server classes -------------------------


class EchoAgent(AgentExecutor):
    """A third-party A2A agent: no sharedctx code, only the SDK; remembers what metadata it got."""

    def __init__(self, delay: float = 0.0) -> None:
        self.seen: list[dict[str, Any]] = []
        self.cancelled = asyncio.Event()
        self.delay = delay

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.message is not None and context.task_id and context.context_id
        self.seen.append(MessageToDict(context.message.metadata))
        submitted = TaskStatus(state=TaskState.TASK_STATE_SUBMITTED)
        await event_queue.enqueue_event(
            Task(id=context.task_id, context_id=context.context_id, status=submitted, history=[context.message])
        )
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        await updater.update_status(
            TaskState.TASK_STATE_WORKING,
            message=new_text_message("halfway", role=Role.ROLE_AGENT),
            metadata={"progress": 1, "total": 2},
        )
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        inp = get_data_parts(context.message.parts)[0]
        finding = {"summary": f"vendor stack healthy for {inp.get('service')}", "confidence": 0.7,
                   "evidence": [{"type": "metric", "source": "vendor", "data": {"p99_ms": 120}}]}  # fmt: skip
        await updater.add_artifact([new_data_part(finding), new_text_part(finding["summary"])], name="finding")
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.task_id and context.context_id
        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()


def sdk_agent_app(agent: EchoAgent, base: str = "http://127.0.0.1") -> tuple[Starlette, list[AgentCard]]:
    card = AgentCard(
        name="vendor-db",
        description="a vendor's database specialist",
        version="1.0",
        supported_interfaces=[AgentInterface(url=base + A2A_PATH, protocol_binding="JSONRPC", protocol_version="1.0")],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["application/json"],
        default_output_modes=["application/json"],
        skills=[AgentSkill(id="check_db", name="check_db", description="checks the vendor DB", tags=["db"])],
    )
    holder = [card]
    handler = DefaultRequestHandler(agent_executor=agent, task_store=InMemoryTaskStore(), agent_card=card)

    async def modifier(c: AgentCard) -> AgentCard:
        return holder[0]

    routes = create_agent_card_routes(card, card_modifier=modifier) + create_jsonrpc_routes(handler, A2A_PATH)
    return Starlette(routes=routes), holder


def with_url(holder: list[AgentCard], url: str) -> None:
    card = AgentCard()
    card.CopyFrom(holder[0])
    card.supported_interfaces[0].url = url + A2A_PATH
    holder[0] = card


async def test_our_client_calls_an_sdk_only_agent_with_case_trace_and_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VENDOR_TOKEN", "tok-123")
    agent = EchoAgent()
    app, holder = sdk_agent_app(agent)
    auth: list[str] = []

    async def spy(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            auth.append(dict(scope["headers"]).get(b"authorization", b"").decode())
        await app(scope, receive, send)

    ctx = journal(tmp_path)
    case = ctx.open_case("db slow", service="orders")
    progress: list[tuple[float, float | None, str | None]] = []
    with serve_in_thread(spy) as url:
        with_url(holder, url)
        settings = a2a_settings(url, headers={"Authorization": "env:VENDOR_TOKEN"})
        async with PartnerClient(settings) as client:
            assert [c.name for c in await client.capabilities()] == ["check_db"]
            finding = await client.call(
                "check_db",
                CapabilityInput(case_id=case.id, service="orders"),
                traceparent=TP,
                on_progress=lambda d, t, m: progress.append((d, t, m)),
            )
    assert finding.summary == "vendor stack healthy for orders"
    assert finding.evidence[0].data == {"p99_ms": 120}
    assert agent.seen == [{CAPABILITY_META: "check_db", "sharedctx/case": case.id, "traceparent": TP}]
    assert progress == [(1.0, 2.0, "halfway")]
    assert auth and set(auth) == {"tok-123"}
    # the primary records the answer on the case with the trace id it sent
    trace = parse_traceparent(TP)
    assert trace is not None
    ctx.case(case.id).record("finding", finding.summary, author="primary:primary", trace_id=trace.trace_id)
    assert [e.trace_id for e in ctx.case(case.id).timeline() if e.kind.value == "finding"] == [trace.trace_id]
    ctx.close()


async def test_a_slow_sdk_agent_times_out_and_its_task_is_cancelled() -> None:
    agent = EchoAgent(delay=30)
    app, holder = sdk_agent_app(agent)
    with serve_in_thread(app) as url:
        with_url(holder, url)
        async with PartnerClient(a2a_settings(url, timeout=1.0)) as client:
            with pytest.raises(PartnerTimeout, match="no answer within 1s"):
                await client.call("check_db", CapabilityInput(case_id="C1", service="orders"))
        with anyio.fail_after(5):  # the agent's work was cancelled, not left running
            while not agent.cancelled.is_set():
                await anyio.sleep(0.05)


async def test_unknown_skill_failed_task_and_unreachable_agent_are_specific_errors() -> None:
    with serve_in_thread(build().http_app()) as url:
        async with PartnerClient(a2a_settings(url)) as client:
            with pytest.raises(UnknownCapability) as unknown:
                await client.call("nope", CapabilityInput(case_id="C1"))
            assert "search_logs" in unknown.value.known
            with pytest.raises(PartnerError, match=r"the task ended failed: .*loki is unreachable"):
                await client.call("fail", CapabilityInput(case_id="C1"))
    with pytest.raises(PartnerUnavailable, match="Agent Card"):
        async with PartnerClient(a2a_settings("http://127.0.0.1:9", timeout=3)):
            pass


async def test_cancelling_the_caller_cancels_the_task_on_our_partner(tmp_path: Path) -> None:
    marker = tmp_path / "cancelled"
    with serve_in_thread(build().http_app()) as url:
        async with PartnerClient(a2a_settings(url)) as client:
            with anyio.move_on_after(1):
                await client.call(
                    "sync_scan", CapabilityInput(case_id="C1", params={"seconds": 20, "cancel_marker": str(marker)})
                )
            with anyio.fail_after(10):
                while not marker.exists():
                    await anyio.sleep(0.05)
    assert marker.read_text() == "cancelled"
