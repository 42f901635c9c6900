"""The partner SDK: plain Python functions become a partner agent that any MCP client can call.

    partner = Partner("telemetry", recorder=record_in_case)

    @partner.capability
    def search_logs(inp: CapabilityInput, progress: Progress) -> Finding:
        ...

    partner.run_stdio()          # or: uvicorn.run(partner.http_app())  (MCP at /mcp, the plain API, A2A)

One function, four ways in: MCP over stdio, MCP over Streamable HTTP, the plain JSON API
(`api.py`) and A2A (`a2a.py`). All of them go through `Partner.invoke`, so validation, trace context, progress and
the enrichment entry behave the same whichever way a primary calls. MCP imports stay in this module
and `client.py`, because the SDK's major version changes names (FastMCP became MCPServer in 2.x).
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import threading
import typing
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, overload

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import pydantic_core
from mcp import types
from mcp.server.fastmcp import Context, FastMCP
from pydantic import ValidationError
from starlette.requests import Request

from ..errors import PartnerBadOutput, UnknownCapability
from .models import CallContext, CapabilityInput, Finding, explain
from .trace import parse_traceparent

if TYPE_CHECKING:
    from ..config import McpHttpMode

__all__ = ["CASE_META", "TRACEPARENT_META", "Capability", "Partner", "Progress", "Recorder"]

log = logging.getLogger("sharedctx.channel")

#: `_meta` keys of an MCP `tools/call` that carry the case id and the W3C trace context.
CASE_META = "sharedctx/case"
TRACEPARENT_META = "traceparent"

Recorder = Callable[[str, Finding, "str | None"], None]
"""`recorder(case_id, finding, traceparent)`: writes the partner's enrichment entry; may be slow."""

ProgressSink = Callable[[float, "float | None", "str | None"], Awaitable[None]]
F = TypeVar("F", bound=Callable[..., Any])


class Progress:
    """Handed to a capability that asks for it: report progress, and see whether the call was cancelled.

    `progress(done, total, message)` never blocks and works the same from sync code (run in a worker
    thread) and async code; notifications are sent in order, before the answer. A sync capability
    cannot be interrupted, so long loops should check `progress.cancelled` and return early.
    """

    def __init__(self, sink: ProgressSink | None = None) -> None:
        self._cancelled = False
        self._send: Callable[[tuple[float, float | None, str | None]], None] | None = None
        self._sink = sink

    def __call__(self, done: float, total: float | None = None, message: str | None = None) -> None:
        if self._send is not None and not self._cancelled:
            self._send((float(done), None if total is None else float(total), message))

    @property
    def cancelled(self) -> bool:
        return self._cancelled


@dataclass(frozen=True)
class Capability:
    """A registered capability and which optional arguments its function wants."""

    name: str
    description: str
    fn: Callable[..., Any]
    is_async: bool
    input_arg: str
    progress_arg: str | None = None
    call_arg: str | None = None


def _inspect_capability(fn: Callable[..., Any], name: str) -> Capability:
    """Find the `CapabilityInput`, `Progress` and `CallContext` parameters, or say what is wrong."""
    hints = typing.get_type_hints(fn)
    roles: dict[type, str] = {}
    for param in inspect.signature(fn).parameters:
        ann = hints.get(param)
        if ann not in (CapabilityInput, Progress, CallContext):
            raise TypeError(
                f"capability {name!r}: parameter {param!r} must be annotated CapabilityInput, Progress "
                f"or CallContext (got {ann!r})"
            )
        if ann in roles:
            raise TypeError(f"capability {name!r}: two parameters are annotated {ann.__name__}")
        roles[ann] = param
    if CapabilityInput not in roles:
        raise TypeError(f"capability {name!r} needs one parameter annotated CapabilityInput")
    return Capability(
        name=name,
        description=inspect.getdoc(fn) or name.replace("_", " "),
        fn=fn,
        is_async=inspect.iscoroutinefunction(fn),
        input_arg=roles[CapabilityInput],
        progress_arg=roles.get(Progress),
        call_arg=roles.get(CallContext),
    )


class Partner:
    """A partner agent: a name, its capabilities, and an optional recorder for enrichment entries."""

    def __init__(self, name: str, *, recorder: Recorder | None = None, instructions: str | None = None) -> None:
        self.name = name
        self.recorder = recorder
        self.instructions = instructions
        self._capabilities: dict[str, Capability] = {}
        self._mcp: FastMCP | None = None
        self._http_json = False  # set by http_app(mcp_mode="json"): no progress over HTTP
        # One thread, so a partner's entries are recorded in the order it answered.
        self._records = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sharedctx-recorder-{name}")
        self._pending = 0
        self._idle = threading.Condition()

    # -- registration -----------------------------------------------------------------------------

    @overload
    def capability(self, fn: F, /) -> F: ...
    @overload
    def capability(self, fn: None = None, /, *, name: str | None = None) -> Callable[[F], F]: ...

    def capability(self, fn: F | None = None, /, *, name: str | None = None) -> F | Callable[[F], F]:
        """Register `fn` (sync or async) as a capability; the function is returned unchanged."""

        def register(f: F) -> F:
            cap = _inspect_capability(f, name or f.__name__)
            if cap.name in self._capabilities:
                raise ValueError(f"capability {cap.name!r} is already registered")
            self._capabilities[cap.name] = cap
            if self._mcp is not None:
                self._add_mcp_tool(self._mcp, cap)
            return f

        return register(fn) if fn is not None else register

    @property
    def capabilities(self) -> dict[str, Capability]:
        return dict(self._capabilities)

    def get(self, name: str) -> Capability:
        try:
            return self._capabilities[name]
        except KeyError:
            raise UnknownCapability(name, sorted(self._capabilities)) from None

    # -- running a call (shared by every transport) -----------------------------------------------

    async def invoke(
        self, cap: Capability, inp: CapabilityInput, call: CallContext, sink: ProgressSink | None = None
    ) -> Finding:
        """Run one capability and return its finding, stamped with capability and partner names.

        Progress reported by the capability goes to `sink` (in order, all of it before we return).
        Cancelling the calling task cancels an async capability at its next await, and marks
        `progress.cancelled` for a sync one (whose thread is abandoned, not killed).
        """
        progress = Progress(sink)
        kwargs: dict[str, Any] = {cap.input_arg: inp}
        if cap.call_arg:
            kwargs[cap.call_arg] = call
        if cap.progress_arg:
            kwargs[cap.progress_arg] = progress
        if sink is None or cap.progress_arg is None:
            result = await self._run_fn(cap, kwargs, progress)
        else:
            result = await self._run_with_progress(cap, kwargs, progress, sink)
        return self._as_finding(cap, result)

    async def _run_fn(self, cap: Capability, kwargs: dict[str, Any], progress: Progress) -> Any:
        try:
            if cap.is_async:
                return await cap.fn(**kwargs)
            # FastMCP would run a sync tool on the event loop, freezing every other call: use a thread.
            return await anyio.to_thread.run_sync(functools.partial(cap.fn, **kwargs), abandon_on_cancel=True)
        except anyio.get_cancelled_exc_class():
            progress._cancelled = True
            raise

    async def _run_with_progress(
        self, cap: Capability, kwargs: dict[str, Any], progress: Progress, sink: ProgressSink
    ) -> Any:
        send, receive = anyio.create_memory_object_stream[tuple[float, float | None, str | None]](math.inf)
        loop_thread = threading.get_ident()
        token = anyio.lowlevel.current_token()

        def enqueue(item: tuple[float, float | None, str | None]) -> None:
            try:
                if threading.get_ident() == loop_thread:
                    send.send_nowait(item)
                else:
                    anyio.from_thread.run_sync(send.send_nowait, item, token=token)
            except (anyio.ClosedResourceError, RuntimeError):
                pass  # reported after the call ended: nobody is listening any more

        async def drain() -> None:
            async with receive:
                async for done, total, message in receive:
                    try:
                        await sink(done, total, message)
                    except Exception as exc:  # a client gone away must not fail the analysis
                        log.debug("progress notification not sent: %s", exc)

        progress._send = enqueue
        async with anyio.create_task_group() as tg:
            tg.start_soon(drain)
            try:
                return await self._run_fn(cap, kwargs, progress)
            finally:
                progress._send = None
                send.close()

    def _as_finding(self, cap: Capability, result: Any) -> Finding:
        try:
            finding = result if isinstance(result, Finding) else Finding.model_validate(result)
        except ValidationError as exc:
            raise PartnerBadOutput(
                f"capability {cap.name!r} returned something that is not a Finding: {explain(exc)}"
            ) from None
        if finding.capability and finding.partner:
            return finding
        return finding.model_copy(
            update={"capability": finding.capability or cap.name, "partner": finding.partner or self.name}
        )

    async def call(
        self,
        name: str,
        inp: CapabilityInput,
        *,
        traceparent: str | None = None,
        on_progress: ProgressSink | None = None,
    ) -> Finding:
        """Call a capability in-process (no transport), recording the enrichment entry like a remote call."""
        cap = self.get(name)
        call = CallContext(case_id=inp.case_id, traceparent=_valid(traceparent), capability=cap.name, partner=self.name)
        finding = await self.invoke(cap, inp, call, on_progress)
        self.record_later(call, finding)
        return finding

    # -- the enrichment entry ---------------------------------------------------------------------

    def record_later(self, call: CallContext, finding: Finding) -> None:
        """Hand the finding to the recorder thread; called as the answer leaves, so it never waits.

        The plain API calls this after the response is sent; over MCP it is called as the tool
        returns, so recording runs alongside sending the answer. A recorder failure is logged.
        """
        if self.recorder is None or not call.case_id:
            return
        with self._idle:
            self._pending += 1
        try:
            self._records.submit(self._record, call, finding)
        except RuntimeError:  # executor shut down: the process is exiting
            log.warning("partner %s: shutting down, enrichment for case %s not recorded", self.name, call.case_id)
            self._done_recording()

    def _record(self, call: CallContext, finding: Finding) -> None:
        assert self.recorder is not None and call.case_id is not None
        try:
            self.recorder(call.case_id, finding, call.traceparent)
        except Exception:
            log.exception(
                "partner %s: recording the finding of %s for case %s failed (the answer was sent)",
                self.name,
                finding.capability,
                call.case_id,
            )
        finally:
            self._done_recording()

    def _done_recording(self) -> None:
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()

    def wait_for_records(self, timeout: float | None = None) -> bool:
        """Block until every enrichment entry handed to the recorder is written; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    # -- MCP ---------------------------------------------------------------------------------------

    def mcp(self) -> FastMCP:
        """The FastMCP server exposing every capability as a typed tool (built once, then reused)."""
        if self._mcp is None:
            self._mcp = FastMCP(self.name, instructions=self.instructions, log_level="WARNING")
            for cap in self._capabilities.values():
                self._add_mcp_tool(self._mcp, cap)
        return self._mcp

    def _add_mcp_tool(self, server: FastMCP, cap: Capability) -> None:
        async def tool(ctx: Context, **arguments: Any) -> types.CallToolResult:
            meta = ctx.request_context.meta
            extra = (meta.model_extra or {}) if meta is not None else {}
            inp = CapabilityInput.model_validate(arguments)
            call = CallContext(
                case_id=str(extra.get(CASE_META) or inp.case_id),
                traceparent=_valid(extra.get(TRACEPARENT_META)),
                capability=cap.name,
                partner=self.name,
            )
            sink: ProgressSink | None = None
            # In JSON mode the transport drops every notification sent before the answer, so progress over
            # HTTP is not even queued: the capability's `progress(...)` calls are no-ops (stdio still streams).
            over_json_http = self._http_json and isinstance(ctx.request_context.request, Request)
            if meta is not None and meta.progressToken is not None and not over_json_http:
                sink = ctx.report_progress
            finding = await self.invoke(cap, inp, call, sink)
            self.record_later(call, finding)
            return _tool_result(finding)

        # FastMCP reads the tool's schemas from the signature: give it CapabilityInput's fields as flat
        # arguments (what LLM clients and the Inspector handle best) plus the MCP context, and Finding
        # as the return type, so the advertised outputSchema is Finding's even though the function
        # returns the finished `CallToolResult` (see `_tool_result`).
        params = [
            inspect.Parameter(
                field,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=info.annotation,
                default=info if not info.is_required() else inspect.Parameter.empty,
            )
            for field, info in CapabilityInput.model_fields.items()
        ]
        params.append(inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context))
        tool.__signature__ = inspect.Signature(params, return_annotation=Finding)  # type: ignore[attr-defined]
        tool.__annotations__ = {p.name: p.annotation for p in params} | {"return": Finding}
        tool.__name__ = cap.name
        server.add_tool(tool, name=cap.name, description=cap.description, structured_output=True)

    def run_stdio(self) -> None:
        """Serve MCP over stdin/stdout until the client closes it, then finish pending records."""
        try:
            self.mcp().run("stdio")
        finally:
            self.close()

    def http_app(self, *, a2a: bool = True, mcp_mode: McpHttpMode = "stream") -> Any:
        """One ASGI app: MCP Streamable HTTP at `/mcp`, the plain JSON API under `/v1` (+ `/openapi.json`),
        and A2A (Agent Card at `/.well-known/agent-card.json`, JSON-RPC at `/a2a`).

        `mcp_mode="json"`: `/mcp` is stateless and answers each POST with one JSON body (the SDK's
        `stateless_http` + `json_response`), for hosts that want no SSE. What that gives up: progress
        notifications (a capability's `progress(...)` becomes a no-op over HTTP; the caller's `on_progress`
        is never called), server-to-client requests, and cancelling a running call (a cancel notification
        reaches a fresh stateless server that never saw the call: the capability runs to the end). The
        plain API and A2A are the same in both modes."""
        from .api import add_api_routes

        server = self.mcp()
        add_api_routes(self, server)
        self._http_json = mcp_mode == "json"
        server.settings.stateless_http = server.settings.json_response = self._http_json
        app = server.streamable_http_app()
        if a2a:
            from .a2a import a2a_routes  # the A2A SDK loads only when A2A is served

            app.router.routes.extend(a2a_routes(self))
        return app

    def close(self, timeout: float = 10.0) -> None:
        """Wait (bounded) for pending enrichment entries, then stop the recorder thread."""
        if not self.wait_for_records(timeout):
            log.warning("partner %s: gave up waiting for %d enrichment entries", self.name, self._pending)
        self._records.shutdown(wait=False)


def _tool_result(finding: Finding) -> types.CallToolResult:
    """The finished MCP answer for a finding: exactly what FastMCP would build, minus one check.

    Given a plain `Finding`, FastMCP hands the lowlevel server `(content, structured)` and the server
    then runs `jsonschema.validate(structured, outputSchema)` on every call, which re-checks the whole
    schema against its meta-schema each time (~9 ms of CPU per call for Finding in mcp 1.x). A
    finished `CallToolResult` is passed through as it is; FastMCP still checks its structured content
    with the pydantic model (Finding) the schema was generated from, in microseconds. The text block
    is FastMCP's own rendering of a model (`pydantic_core.to_json(..., indent=2)`), so clients see
    the same result either way.
    """
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=pydantic_core.to_json(finding, fallback=str, indent=2).decode())],
        structuredContent=finding.model_dump(mode="json", by_alias=True),
        isError=False,
    )


def _valid(traceparent: Any) -> str | None:
    """Keep a traceparent only if it is well-formed (W3C: ignore, never fail on, a bad one)."""
    parsed = parse_traceparent(traceparent if isinstance(traceparent, str) else None)
    return str(parsed) if parsed else None
