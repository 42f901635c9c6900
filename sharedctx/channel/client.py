"""The primary side of the direct channel: call a partner's capabilities and get typed findings back.

    async with PartnerClient(settings) as telemetry:        # settings: a `[[partners]]` entry
        finding = await telemetry.call("search_logs", CapabilityInput(case_id=case.id, service="checkout"))

Every failure becomes one of three errors the investigation can record and move past:
`PartnerTimeout` (no answer in `timeout`; the call is cancelled on the partner too),
`PartnerUnavailable` (cannot start or reach it, or it died mid-call: never a hang), and
`PartnerBadOutput` (the answer does not validate as a `Finding`). A capability the partner does
not offer is `UnknownCapability` (with the names it does offer); other refusals (the capability
raised) are a plain `PartnerError` whose message says which.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from typing import IO, TYPE_CHECKING, Any

import anyio
import httpx
from mcp import ClientSession, McpError, StdioServerParameters, types
from mcp.client.stdio import get_default_environment, stdio_client
from mcp.client.streamable_http import streamable_http_client
from pydantic import ValidationError

from ..config import PartnerSettings, Secret
from ..errors import (
    ConfigError,
    PartnerBadOutput,
    PartnerError,
    PartnerTimeout,
    PartnerUnavailable,
    UnknownCapability,
)
from ..observability import PARTNER_ERRORS, PARTNER_SECONDS, span
from ._watch import WatchedTransport
from .api import CASE_HEADER

if TYPE_CHECKING:
    from .a2a import A2AConnection
from .models import CapabilityInfo, CapabilityInput, Finding, explain
from .partner import CASE_META, TRACEPARENT_META
from .trace import child_traceparent, current_or_new_traceparent, parse_traceparent

__all__ = ["OnProgress", "PartnerClient", "ask_all"]

log = logging.getLogger("sharedctx.channel")

OnProgress = Callable[[float, "float | None", "str | None"], "Awaitable[None] | None"]
"""`on_progress(done, total, message)`, sync or async; called for each MCP progress notification."""

_STDERR_TAIL = 600
# What the MCP transports report when the connection itself is gone (not a stray message).
_TRANSPORT_FAILURES = (httpx.HTTPError, OSError, anyio.BrokenResourceError, anyio.ClosedResourceError)


class PartnerClient:
    """A connection to one partner over MCP (stdio, Streamable HTTP), the plain HTTP API, or A2A."""

    def __init__(self, settings: PartnerSettings, *, http_client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self._http_client = http_client
        self._stack: AsyncExitStack | None = None
        self._session: ClientSession | None = None
        self._http: httpx.AsyncClient | None = None
        self._stderr: IO[str] | None = None
        self._inflight: set[anyio.CancelScope] = set()
        self._broken: str | None = None
        self._caps: list[CapabilityInfo] | None = None
        self._a2a: A2AConnection | None = None
        #: True once the partner answered an MCP POST with a JSON body: it serves MCP in JSON mode and will
        #: send no progress notifications (`call`'s `on_progress` is then never called).
        self.json_mode = False
        self._said_no_progress = False

    @classmethod
    def over_session(cls, name: str, session: ClientSession, *, timeout: float = 30.0) -> PartnerClient:
        """A client on an already-initialised MCP session (in-memory tests, custom transports)."""
        client = cls(PartnerSettings(name=name, transport="http", url="memory://", timeout=timeout))
        client._session = session
        return client

    @property
    def name(self) -> str:
        return self.settings.name

    # -- connecting --------------------------------------------------------------------------------

    async def __aenter__(self) -> PartnerClient:
        if self._session is not None:  # over_session: the caller owns the connection
            return self
        headers = {key: Secret(ref).get() for key, ref in self.settings.headers.items()}
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            if self.settings.transport == "api":
                self._http = self._http_client or await stack.enter_async_context(
                    httpx.AsyncClient(base_url=self.settings.url or "", headers=headers, timeout=self.settings.timeout)
                )
            elif self.settings.transport == "a2a":
                await self._connect_a2a(stack, headers)
            else:
                await self._connect_mcp(stack, headers)
        except BaseException as exc:
            failure: BaseException = exc
            try:  # unwinding the transports may replace a cancellation with its real cause
                await stack.__aexit__(type(exc), exc, exc.__traceback__)
            except BaseException as closing:
                failure = closing
            if isinstance(failure, PartnerError | ConfigError) or not isinstance(failure, Exception):
                raise failure from None
            reason = f"{_describe(failure)}{self._stderr_tail()}"
            raise PartnerUnavailable(f"partner {self.name!r}: could not connect: {reason}") from failure
        self._stack = stack
        return self

    async def _connect_mcp(self, stack: AsyncExitStack, headers: dict[str, str]) -> None:
        s = self.settings
        if s.transport == "stdio":
            assert s.command
            # The partner's stderr goes to a file so that, if it dies, the error can say why.
            errlog = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115
            self._stderr = stack.enter_context(errlog)
            params = StdioServerParameters(
                command=s.command[0], args=s.command[1:], env={**get_default_environment(), **s.resolved_env()}
            )
            read, write = await stack.enter_async_context(stdio_client(params, errlog=self._stderr))
        else:
            http = await stack.enter_async_context(
                httpx.AsyncClient(
                    headers=headers,
                    timeout=httpx.Timeout(s.timeout, read=max(300.0, s.timeout)),
                    transport=WatchedTransport(self._transport_failed, self._answers_in_json),
                )
            )
            read, write, _ = await stack.enter_async_context(streamable_http_client(s.url or "", http_client=http))
        session = await stack.enter_async_context(ClientSession(read, write, message_handler=self._on_message))
        try:
            with anyio.fail_after(s.timeout):
                await self._guarded(session.initialize())
        except TimeoutError:
            raise PartnerTimeout(
                f"partner {self.name!r} did not complete the MCP handshake in {s.timeout:g}s"
            ) from None
        except McpError as exc:
            raise PartnerUnavailable(
                f"partner {self.name!r}: MCP handshake failed: {exc.error.message}{self._stderr_tail()}"
            ) from None
        self._session = session

    async def _connect_a2a(self, stack: AsyncExitStack, headers: dict[str, str]) -> None:
        from .a2a import A2AConnection  # the A2A SDK loads only for partners that use it

        s = self.settings
        http = self._http_client
        if http is None:
            timeout = httpx.Timeout(s.timeout, read=max(300.0, s.timeout))
            http = await stack.enter_async_context(httpx.AsyncClient(headers=headers, timeout=timeout))
        elif headers:
            http.headers.update(headers)
        with anyio.fail_after(s.timeout):
            self._a2a = await A2AConnection.connect(self.name, s.url or "", http)
        stack.push_async_callback(self._a2a.close)

    def _answers_in_json(self) -> None:
        self.json_mode = True

    def _transport_failed(self, reason: str) -> None:
        self._broken = reason
        for scope in list(self._inflight):
            scope.cancel()

    async def _on_message(self, message: Any) -> None:
        """Transport errors arrive here, not at the waiting call: fail the calls instead of hanging."""
        if isinstance(message, _TRANSPORT_FAILURES):
            self._transport_failed(_describe(message))
        elif isinstance(message, Exception):  # e.g. a late answer to a call we gave up on: harmless
            log.debug("partner %s: %s", self.name, _describe(message))

    async def _guarded(self, awaitable: Awaitable[Any]) -> Any:
        with anyio.CancelScope() as scope:
            self._inflight.add(scope)
            try:
                return await awaitable
            finally:
                self._inflight.discard(scope)
        raise PartnerUnavailable(f"partner {self.name!r}: connection failed: {self._broken or 'unknown reason'}")

    async def __aexit__(self, *exc_info: Any) -> None:
        stack, self._stack = self._stack, None
        if stack is None:
            return
        self._session = None
        try:  # not inside a new cancel scope: the stack's task groups must unwind in their own nesting
            await stack.__aexit__(*exc_info)
        except Exception as exc:  # closing a partner that already died must not mask the caller's result
            log.debug("partner %s: error while closing: %s", self.name, _describe(exc))

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.flush()
            self._stderr.seek(0)
            tail = self._stderr.read()[-_STDERR_TAIL:].strip()
        except (OSError, ValueError):
            return ""
        return f" (its stderr ends with: {tail})" if tail else ""

    # -- discovering -------------------------------------------------------------------------------

    async def capabilities(self) -> list[CapabilityInfo]:
        """What the partner offers (cached after the first ask); `PartnerTimeout` if it does not say in time."""
        if self._caps is None:
            limit = self.settings.timeout
            try:
                with anyio.fail_after(limit):
                    if self._a2a is not None:
                        self._caps = self._a2a.capabilities()
                    else:
                        self._caps = await (self._api_capabilities() if self._http else self._mcp_capabilities())
            except TimeoutError:
                raise PartnerTimeout(f"partner {self.name!r} did not list its capabilities within {limit:g}s") from None
        return self._caps

    async def _mcp_capabilities(self) -> list[CapabilityInfo]:
        try:
            result = await self._guarded(self._require_session().list_tools())
        except McpError as exc:
            raise PartnerUnavailable(f"partner {self.name!r}: tools/list failed: {exc.error.message}") from None
        return [
            CapabilityInfo(
                name=t.name, description=t.description or "", input_schema=t.inputSchema, output_schema=t.outputSchema
            )
            for t in result.tools
        ]

    async def _api_capabilities(self) -> list[CapabilityInfo]:
        assert self._http is not None
        try:
            resp = await self._http.get("/v1/capabilities")
            resp.raise_for_status()
            return [CapabilityInfo.model_validate(c) for c in resp.json()["capabilities"]]
        except httpx.HTTPError as exc:
            reason = _describe(exc)
            raise PartnerUnavailable(f"partner {self.name!r}: GET /v1/capabilities failed: {reason}") from None
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            reason = str(exc)
            raise PartnerBadOutput(
                f"partner {self.name!r}: GET /v1/capabilities is no capability list: {reason}"
            ) from None

    def _require_session(self) -> ClientSession:
        if self._session is None:
            raise PartnerUnavailable(f"partner {self.name!r}: not connected (use `async with PartnerClient(...)`)")
        return self._session

    # -- calling -----------------------------------------------------------------------------------

    async def call(
        self,
        capability: str,
        inp: CapabilityInput,
        *,
        case_id: str | None = None,
        traceparent: str | None = None,
        on_progress: OnProgress | None = None,
        timeout: float | None = None,
    ) -> Finding:
        """Ask one capability; the case id and `traceparent` travel with the call (MCP `_meta` / headers).

        `traceparent` defaults to the active OpenTelemetry span, else a new trace. Cancelling the
        calling task also cancels the call on the partner (not on a partner serving MCP in JSON mode,
        which cannot be told: its capability runs to the end). `on_progress` is called for each progress
        notification; a partner in JSON mode (`json_mode`) and the plain API send none, so it is never
        called there and the finding arrives as usual.
        """
        case_id = case_id or inp.case_id
        traceparent = traceparent or current_or_new_traceparent()
        limit = timeout or self.settings.timeout
        parent = parse_traceparent(traceparent)
        attrs = {"sharedctx.partner": self.name, "sharedctx.capability": capability, "sharedctx.case_id": case_id}
        label = capability  # an unknown name is counted as `_unknown`: callers (LLMs) may ask for anything
        started = time.perf_counter()
        with span("sharedctx.partner_call", parent.trace_id if parent else None, attrs,
                  parent_id=parent.parent_id if parent else None):  # fmt: skip
            try:
                if self._http is not None:
                    return await self._call_api(capability, inp, case_id, traceparent, limit)
                if self._a2a is not None:
                    return await self._a2a.call(capability, inp, case_id, traceparent, limit, on_progress)
                return await self._call_mcp(capability, inp, case_id, traceparent, limit, on_progress)
            except BaseException as exc:  # cancellation included: the caller gave up on this partner
                label = "_unknown" if isinstance(exc, UnknownCapability) else capability
                PARTNER_ERRORS.labels(self.name, label, type(exc).__name__).inc()
                raise
            finally:
                PARTNER_SECONDS.labels(self.name, label).observe(time.perf_counter() - started)

    async def _call_mcp(
        self,
        capability: str,
        inp: CapabilityInput,
        case_id: str,
        traceparent: str,
        limit: float,
        on_progress: OnProgress | None,
    ) -> Finding:
        session = self._require_session()
        where = f"partner {self.name!r}, capability {capability!r}"
        request_id = session._request_id  # the id send_request is about to use: needed to cancel it remotely
        try:
            with anyio.fail_after(limit):
                # Not `session.call_tool`: it re-checks the answer with `jsonschema.validate`, which
                # re-validates the whole schema on every call (~9 ms in mcp 1.30). We validate the
                # same contract with the pydantic model the schema was generated from, in microseconds.
                request = types.CallToolRequest(
                    params=types.CallToolRequestParams(
                        name=capability,
                        arguments=inp.model_dump(mode="json", exclude_defaults=True),
                        _meta=types.RequestParams.Meta(**{TRACEPARENT_META: traceparent, CASE_META: case_id}),
                    )
                )
                result = await self._guarded(
                    session.send_request(
                        types.ClientRequest(request),
                        types.CallToolResult,
                        progress_callback=_AsyncProgress(on_progress) if on_progress else None,
                    )
                )
        except TimeoutError:
            await self._cancel_remote(session, request_id, f"no answer within {limit:g}s")
            raise PartnerTimeout(f"{where}: no answer within {limit:g}s; the call was cancelled") from None
        except anyio.get_cancelled_exc_class():
            await self._cancel_remote(session, request_id, "cancelled by the caller")
            raise
        except McpError as exc:
            if exc.error.code == types.CONNECTION_CLOSED:
                raise PartnerUnavailable(f"{where}: the partner went away mid-call{self._stderr_tail()}") from None
            if exc.error.message.startswith("Unknown tool"):  # how some servers say it (a JSON-RPC error)
                raise UnknownCapability(capability, await self._known_names(), partner=self.name) from None
            raise PartnerError(f"{where}: {exc.error.message}") from None
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
            raise PartnerUnavailable(f"{where}: the connection is closed{self._stderr_tail()}") from None
        except RuntimeError as exc:  # ClientSession's own check against the advertised output schema
            if "structured content" in str(exc) or "schema" in str(exc):
                raise PartnerBadOutput(f"{where}: {exc}") from None
            raise
        if on_progress is not None and self.json_mode and not self._said_no_progress:
            self._said_no_progress = True
            log.info("partner %s serves MCP in JSON mode: no progress notifications, on_progress is not called",
                     self.name)
        if result.isError and _error_text(result).startswith("Unknown tool"):  # FastMCP's words for it
            raise UnknownCapability(capability, await self._known_names(), partner=self.name)
        return self._finding_from(result, where)

    async def _known_names(self) -> list[str]:
        """The capability names, for an "unknown capability" error: listed once if not yet known."""
        if self._caps is None:
            try:
                await self.capabilities()
            except PartnerError as exc:
                log.debug("partner %s: could not list capabilities: %s", self.name, exc)
        return [c.name for c in self._caps or []]

    def _finding_from(self, result: types.CallToolResult, where: str) -> Finding:
        if result.isError:
            raise PartnerError(f"{where} failed: {_error_text(result)}")
        if result.structuredContent is None:
            raise PartnerBadOutput(f"{where}: the answer has no structured content (expected a Finding)")
        try:
            return Finding.model_validate(result.structuredContent)
        except ValidationError as exc:
            raise PartnerBadOutput(f"{where}: the answer is not a valid Finding: {explain(exc)}") from None

    async def _cancel_remote(self, session: ClientSession, request_id: int, reason: str) -> None:
        """Tell the partner to stop working on a call we no longer wait for (best effort, bounded)."""
        note = types.ClientNotification(
            types.CancelledNotification(params=types.CancelledNotificationParams(requestId=request_id, reason=reason))
        )
        with anyio.CancelScope(shield=True), anyio.move_on_after(1):
            try:
                await session.send_notification(note)
            except Exception as exc:
                log.debug("partner %s: could not send cancellation: %s", self.name, _describe(exc))

    async def _call_api(
        self, capability: str, inp: CapabilityInput, case_id: str, traceparent: str, limit: float
    ) -> Finding:
        assert self._http is not None
        where = f"partner {self.name!r}, capability {capability!r}"
        try:
            with anyio.fail_after(limit):
                resp = await self._http.post(
                    f"/v1/capabilities/{capability}",
                    content=inp.model_dump_json(exclude_defaults=True),
                    headers={"content-type": "application/json", "traceparent": traceparent, CASE_HEADER: case_id},
                    timeout=limit,
                )
        except (TimeoutError, httpx.TimeoutException):
            raise PartnerTimeout(f"{where}: no answer within {limit:g}s; the request was abandoned") from None
        except httpx.TransportError as exc:
            raise PartnerUnavailable(f"{where}: {_describe(exc)}") from None
        if resp.status_code == 404 and (known := _api_known_capabilities(resp)) is not None:
            raise UnknownCapability(capability, known, partner=self.name)
        if resp.status_code != 200:
            message = _api_error_message(resp)
            if resp.status_code >= 502:
                raise PartnerUnavailable(f"{where}: HTTP {resp.status_code}: {message}")
            raise PartnerError(f"{where}: HTTP {resp.status_code}: {message}")
        try:
            return Finding.model_validate_json(resp.content)
        except ValidationError as exc:
            raise PartnerBadOutput(f"{where}: the answer is not a valid Finding: {explain(exc)}") from None


async def ask_all(
    clients: Sequence[PartnerClient],
    capability: str,
    inp: CapabilityInput,
    *,
    traceparent: str | None = None,
    on_progress: OnProgress | None = None,
) -> list[Finding | PartnerError]:
    """Ask several partners the same question at once; one answer or error per client, in order.

    Each call is a child span of one trace, so all of them join with the step that asked.
    A dead or slow partner costs at most its own timeout and never hides the others' findings.
    """
    root = traceparent or current_or_new_traceparent()
    results: list[Finding | PartnerError] = [PartnerError("not asked")] * len(clients)

    async def ask(i: int, client: PartnerClient) -> None:
        try:
            results[i] = await client.call(
                capability, inp, traceparent=child_traceparent(root), on_progress=on_progress
            )
        except PartnerError as exc:
            results[i] = exc

    async with anyio.create_task_group() as tg:
        for i, client in enumerate(clients):
            tg.start_soon(ask, i, client)
    return results


class _AsyncProgress:
    """Adapts a sync or async `on_progress` to the SDK's async progress callback."""

    def __init__(self, fn: OnProgress) -> None:
        self._fn = fn

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        result = self._fn(progress, total, message)
        if result is not None:
            await result


def _error_text(result: types.CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent)) or "(no message)"


def _api_known_capabilities(resp: httpx.Response) -> list[str] | None:
    """The names listed by the plain API's `unknown_capability` error; None for any other 404."""
    try:
        error = resp.json()["error"]
        if error["type"] == "unknown_capability":
            return [str(name) for name in error["known"]]
    except (ValueError, KeyError, TypeError):
        pass
    return None


def _api_error_message(resp: httpx.Response) -> str:
    try:
        return str(resp.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return resp.text[:300] or resp.reason_phrase


def _describe(exc: BaseException | None) -> str:
    """A one-line reason, unwrapping the exception groups that anyio task groups produce."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if exc is None:
        return "unknown error"
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, PartnerError) else f"{type(exc).__name__}: {text}"
