"""A2A (Agent2Agent) on the direct channel, built on the official `a2a-sdk` (v1.x, A2A spec 1.0).

Partner side: `a2a_routes(partner)` serves the partner's capabilities as an A2A agent beside MCP and
the plain API: an Agent Card at `/.well-known/agent-card.json` lists each capability as a skill, and
JSON-RPC at `/a2a` runs `SendMessage` / `SendStreamingMessage` / `GetTask` / `CancelTask`.
A call is one task: progress becomes `working` status updates, the finding becomes an artifact with
a data part (the `Finding` as JSON) and a text part (its summary), and cancelling the task cancels
the capability.

Primary side: `A2AConnection` is what `PartnerClient` uses when `transport = "a2a"`: it discovers the
agent from its card, sends the `CapabilityInput` as a data part, and maps every failure onto the
channel's errors (`PartnerTimeout`, `PartnerUnavailable`, `PartnerBadOutput`, `UnknownCapability`).

Both sides put the case id and the W3C `traceparent` in message metadata (`sharedctx/case`,
`traceparent`) and, like MCP's `_meta`, they reach the partner's `CallContext` and its entries.
Every `a2a` import stays in this module, so the SDK's next major version touches one file.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import httpx
from a2a.client import A2ACardResolver, A2AClientTimeoutError, Client, ClientConfig, ClientFactory
from a2a.helpers import get_data_parts, get_text_parts, new_data_part, new_text_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes import create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    CancelTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    Task,
    TaskState,
    TaskStatus,
)
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH
from a2a.utils.errors import A2AError
from google.protobuf.json_format import MessageToDict
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import PartnerBadOutput, PartnerError, PartnerTimeout, PartnerUnavailable, UnknownCapability
from .client import OnProgress
from .models import CallContext, CapabilityInfo, CapabilityInput, Finding, explain
from .partner import CASE_META, TRACEPARENT_META, _valid

if TYPE_CHECKING:
    from .partner import Partner

__all__ = ["A2A_PATH", "CAPABILITY_META", "A2AConnection", "a2a_routes", "agent_card"]

log = logging.getLogger("sharedctx.channel")

#: Where the JSON-RPC endpoint lives inside the partner's HTTP app.
A2A_PATH = "/a2a"
#: Message metadata key naming the capability (skill id) a message is for.
CAPABILITY_META = "sharedctx/capability"
#: Media type of the data part that carries a `CapabilityInput` or a `Finding`.
JSON = "application/json"

_FINAL = {
    TaskState.TASK_STATE_COMPLETED,
    TaskState.TASK_STATE_FAILED,
    TaskState.TASK_STATE_CANCELED,
    TaskState.TASK_STATE_REJECTED,
}


# -- partner side ------------------------------------------------------------------------------------


def agent_card(partner: Partner, base_url: str) -> AgentCard:
    """The partner's Agent Card: one skill per capability, JSON-RPC at `base_url + /a2a`."""
    return AgentCard(
        name=partner.name,
        description=partner.instructions or f"sharedctx partner agent {partner.name!r}",
        version="1.0.0",
        supported_interfaces=[
            AgentInterface(url=base_url.rstrip("/") + A2A_PATH, protocol_binding="JSONRPC", protocol_version="1.0")
        ],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=[JSON, "text/plain"],
        default_output_modes=[JSON, "text/plain"],
        skills=[
            AgentSkill(id=cap.name, name=cap.name, description=cap.description, tags=["sharedctx", "incident"])
            for cap in partner.capabilities.values()
        ],
    )


class _PartnerExecutor(AgentExecutor):
    """Runs one A2A task as one `Partner.invoke`, so validation and recording match MCP and the plain API."""

    def __init__(self, partner: Partner) -> None:
        self.partner = partner

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        message = context.message
        assert message is not None and context.task_id and context.context_id
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        if context.current_task is None:  # the protocol wants the Task itself before any update of it
            await event_queue.enqueue_event(
                Task(
                    id=context.task_id,
                    context_id=context.context_id,
                    status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED),
                    history=[message],
                )
            )
        try:
            name, inp, call = self._parse(message, context)
        except (UnknownCapability, ValueError) as exc:
            await updater.reject(_agent_text(context, str(exc)))
            return
        await updater.start_work()

        async def progress(done: float, total: float | None, text: str | None) -> None:
            meta: dict[str, Any] = {"progress": done} | ({"total": total} if total is not None else {})
            status = text or (f"{done:g}/{total:g}" if total else f"{done:g}")
            await updater.update_status(
                TaskState.TASK_STATE_WORKING, message=_agent_text(context, status), metadata=meta
            )

        try:
            finding = await self.partner.invoke(self.partner.get(name), inp, call, progress)
        except PartnerError as exc:
            await updater.failed(_agent_text(context, exc.message))
            return
        except Exception as exc:  # the capability raised: the task fails, the server keeps serving
            log.warning("partner %s: capability %s failed: %s", self.partner.name, name, exc)
            await updater.failed(_agent_text(context, f"capability {name!r} failed: {exc}"))
            return
        await updater.add_artifact(
            [new_data_part(finding.model_dump(mode="json"), JSON), new_text_part(finding.summary)],
            name="finding",
            last_chunk=True,
        )
        self.partner.record_later(call, finding)
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.task_id and context.context_id
        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()

    def _parse(self, message: Message, context: RequestContext) -> tuple[str, CapabilityInput, CallContext]:
        """Which capability, with which input: our clients send a data part; others may send text."""
        meta = {**context.metadata, **MessageToDict(message.metadata)}
        caps = self.partner.capabilities
        name = str(meta.get(CAPABILITY_META) or "")
        if not name:
            if len(caps) != 1:
                raise ValueError(
                    f"say which capability in message metadata {CAPABILITY_META!r}; this partner offers "
                    f"{', '.join(sorted(caps))}"
                )
            name = next(iter(caps))
        self.partner.get(name)  # UnknownCapability, naming the known ones
        data = [d for d in get_data_parts(message.parts) if isinstance(d, dict)]
        fields: dict[str, Any] = dict(data[0]) if data else {}
        texts = get_text_parts(message.parts)
        if texts and not fields.get("question"):
            fields["question"] = "\n".join(texts)
        case_id = str(meta.get(CASE_META) or fields.get("case_id") or context.context_id)
        fields.setdefault("case_id", case_id)
        try:
            inp = CapabilityInput.model_validate(fields)
        except ValidationError as exc:
            raise ValueError(f"invalid input for capability {name!r}: {explain(exc)}") from None
        call = CallContext(
            case_id=case_id, traceparent=_valid(meta.get(TRACEPARENT_META)), capability=name, partner=self.partner.name
        )
        return name, inp, call


def _agent_text(context: RequestContext, text: str) -> Message:
    return new_text_message(text, context_id=context.context_id, task_id=context.task_id, role=Role.ROLE_AGENT)


def a2a_routes(partner: Partner, *, base_url: str | None = None) -> list[Route]:
    """The A2A routes for a partner's HTTP app: the Agent Card and the JSON-RPC endpoint.

    The card names the endpoint's absolute URL. Without `base_url` it is taken from each request,
    so the same app works behind whatever host and port it is served on.
    """
    placeholder = agent_card(partner, base_url or "http://localhost")
    handler = DefaultRequestHandler(
        agent_executor=_PartnerExecutor(partner), task_store=InMemoryTaskStore(), agent_card=placeholder
    )

    async def card(request: Request) -> Response:
        url = base_url or str(request.base_url)
        return JSONResponse(agent_card_to_dict(agent_card(partner, url)))

    return [Route(AGENT_CARD_WELL_KNOWN_PATH, card, methods=["GET"]), *create_jsonrpc_routes(handler, A2A_PATH)]


# -- primary side ------------------------------------------------------------------------------------

class A2AConnection:
    """One discovered A2A agent, called the way `PartnerClient` calls MCP and plain-API partners."""

    def __init__(self, name: str, client: Client, card: AgentCard) -> None:
        self.name = name
        self._client = client
        self.card = card

    @classmethod
    async def connect(cls, name: str, url: str, http: httpx.AsyncClient) -> A2AConnection:
        """Fetch the Agent Card from `url` and build an SDK client for the interface it names."""
        factory = ClientFactory(ClientConfig(streaming=True, httpx_client=http))
        try:
            card = await A2ACardResolver(http, url).get_agent_card()
            client = factory.create(card)
        except (A2AError, httpx.HTTPError) as exc:
            raise PartnerUnavailable(f"partner {name!r}: could not read its A2A Agent Card at {url}: {exc}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise PartnerBadOutput(f"partner {name!r}: {url} has no valid A2A Agent Card: {exc}") from None
        return cls(name, client, card)

    async def close(self) -> None:
        await self._client.close()

    def capabilities(self) -> list[CapabilityInfo]:
        schema = CapabilityInput.model_json_schema()
        return [
            CapabilityInfo(name=s.id, description=s.description, input_schema=schema, output_schema=None)
            for s in self.card.skills
        ]

    async def call(
        self,
        capability: str,
        inp: CapabilityInput,
        case_id: str,
        traceparent: str,
        limit: float,
        on_progress: OnProgress | None,
    ) -> Finding:
        where = f"partner {self.name!r}, capability {capability!r}"
        known = [s.id for s in self.card.skills]
        if capability not in known:
            raise UnknownCapability(capability, known, partner=self.name)
        message = Message(
            message_id=str(uuid.uuid4()),
            role=Role.ROLE_USER,
            parts=[new_data_part(inp.model_dump(mode="json", exclude_defaults=True), JSON)],
            metadata={CAPABILITY_META: capability, CASE_META: case_id, TRACEPARENT_META: traceparent},
        )
        task_id = ""
        task: Task | None = None
        artifacts: list[Part] = []
        try:
            with anyio.fail_after(limit):
                async for event in self._client.send_message(SendMessageRequest(message=message)):
                    kind = event.WhichOneof("payload")
                    if kind == "message":  # an agent may answer with a plain message instead of a task
                        artifacts.extend(event.message.parts)
                        break
                    if kind == "task":
                        task = event.task
                        task_id = task.id
                        for artifact in task.artifacts:
                            artifacts.extend(artifact.parts)
                    elif kind == "artifact_update":
                        artifacts.extend(event.artifact_update.artifact.parts)
                    elif kind == "status_update":
                        update = event.status_update
                        task_id = update.task_id or task_id
                        await self._progress(update.metadata, update.status.message, on_progress)
                        if update.status.state in _FINAL:
                            task = Task(id=task_id, status=update.status)
                            break
        except TimeoutError:
            await self._cancel(task_id)
            raise PartnerTimeout(f"{where}: no answer within {limit:g}s; the task was cancelled") from None
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._cancel(task_id)
            raise
        except A2AClientTimeoutError:
            await self._cancel(task_id)
            raise PartnerTimeout(f"{where}: no answer within {limit:g}s; the task was cancelled") from None
        except A2AError as exc:  # the agent answered with a protocol error, or broke the protocol
            raise PartnerError(f"{where}: {type(exc).__name__}: {exc}") from None
        except httpx.HTTPError as exc:
            raise PartnerUnavailable(f"{where}: {type(exc).__name__}: {exc}") from None
        return self._finding(task, artifacts, capability, where)

    @staticmethod
    async def _progress(metadata: Any, message: Message, on_progress: OnProgress | None) -> None:
        if on_progress is None:
            return
        meta = MessageToDict(metadata)
        if "progress" not in meta:
            return
        total = meta.get("total")
        text = "\n".join(get_text_parts(message.parts)) or None
        result = on_progress(float(meta["progress"]), None if total is None else float(total), text)
        if result is not None:
            await result

    async def _cancel(self, task_id: str) -> None:
        if not task_id:
            return
        with anyio.move_on_after(1):
            try:
                await self._client.cancel_task(CancelTaskRequest(id=task_id))
            except Exception as exc:  # best effort: the caller already has its answer (a timeout)
                log.debug("partner %s: could not cancel task %s: %s", self.name, task_id, exc)

    def _finding(self, task: Task | None, parts: list[Part], capability: str, where: str) -> Finding:
        if task is not None and task.status.state not in (TaskState.TASK_STATE_COMPLETED, 0):
            state = TaskState.Name(task.status.state).removeprefix("TASK_STATE_").lower()
            reason = "\n".join(get_text_parts(task.status.message.parts)) or "(no message)"
            if "unknown capability" in reason:
                raise UnknownCapability(capability, [s.id for s in self.card.skills], partner=self.name)
            raise PartnerError(f"{where}: the task ended {state}: {reason}")
        for data in get_data_parts(parts):
            try:
                return Finding.model_validate(data)
            except ValidationError as exc:
                raise PartnerBadOutput(f"{where}: the artifact is not a valid Finding: {explain(exc)}") from None
        for text in get_text_parts(parts):  # an agent that answers JSON as text
            try:
                return Finding.model_validate(json.loads(text))
            except (ValueError, ValidationError):
                continue
        raise PartnerBadOutput(f"{where}: the answer has no Finding (expected a data part with a Finding)")
