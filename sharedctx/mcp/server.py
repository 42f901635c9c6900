"""`SharedContextMCP`: FastMCP with an identity per call, one error vocabulary, and one output builder.

See the package docstring for the three things that hold for every response.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
from mcp import types
from mcp.server.fastmcp import FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.shared.exceptions import McpError
from pydantic import AnyUrl, BaseModel, ValidationError
from starlette.requests import Request

from ..access import Access, Identity
from ..context import SharedContext
from ..errors import (
    CaseNotFound,
    EntryNotFound,
    InvalidEntry,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    SharedCtxError,
    Unauthenticated,
    format_validation_error,
)
from ..model import MAX_BODY_BYTES
from ..redact import RedactingFilter, Redactor
from .identities import IdentityResolver

log = logging.getLogger("sharedctx.mcp")

MAX_ARGUMENT_BYTES = 1024 * 1024  # a whole tool call; one entry body is at most 256 KiB
T = TypeVar("T")

_caller: contextvars.ContextVar[Identity] = contextvars.ContextVar("sharedctx_mcp_caller")


def caller() -> Identity:
    """Who is calling the tool that runs now (set by `SharedContextMCP` for the call's duration)."""
    return _caller.get()


def _validation_text(exc: ValidationError) -> str:
    return format_validation_error(exc, "", unknown="unknown argument", limit=5, joiner="; ")


def error_text(exc: BaseException) -> str:
    """The one error vocabulary of the MCP surface (documented in docs/mcp.md)."""
    if isinstance(exc, Unauthenticated):
        return f"401 Unauthorized: {exc}"
    if isinstance(exc, RateLimited):
        return f"429 Too Many Requests: {exc}"
    if isinstance(exc, PermissionDenied):
        return f"403 Forbidden: {exc}"
    if isinstance(exc, CaseNotFound | EntryNotFound):
        return f"404 Not Found: {exc}. Use find_case or search_history to find the right id"
    if isinstance(exc, ValidationError):
        return f"400 Invalid input: {_validation_text(exc)}. Nothing was recorded"
    if isinstance(exc, InvalidEntry):
        return f"400 Invalid input: {exc}"
    if isinstance(exc, SharedCtxError):
        return f"500 {type(exc).__name__}: {exc}"
    return f"500 Internal error ({type(exc).__name__}); nothing is known to have been recorded"


def _root_cause(exc: BaseException) -> BaseException:
    """The library error inside the SDK's wrappers (ToolError, ResourceError, ValueError…), if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, SharedCtxError | ValidationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return exc


class SharedContextMCP(FastMCP[Any]):
    """FastMCP with identity per call, one error vocabulary, and redaction of everything it returns."""

    def __init__(self, ctx: SharedContext, access: Access, resolver: IdentityResolver, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ctx = ctx
        self.access = access
        self.resolver = resolver
        self.redactor: Redactor = ctx.redactor if isinstance(ctx.redactor, Redactor) else Redactor()
        log.addFilter(RedactingFilter(self.redactor))  # our own lines are redacted at the source
        inner = self._mcp_server.request_handlers[types.CallToolRequest]

        async def call_tool_request(req: types.CallToolRequest) -> types.ServerResult:
            if self._tool_manager.get_tool(req.params.name) is None:
                names = ", ".join(t.name for t in self._tool_manager.list_tools())
                raise McpError(types.ErrorData(
                    code=types.INVALID_PARAMS,
                    message=self.redactor.redact(f"Unknown tool: {req.params.name}. Available tools: {names}"),
                ))  # fmt: skip
            return await inner(req)

        self._mcp_server.request_handlers[types.CallToolRequest] = call_tool_request

    def _caller_identity(self) -> Identity:
        try:
            request = self._mcp_server.request_context.request
        except LookupError:
            request = None
        return self.resolver(request if isinstance(request, Request) else None)

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        try:
            size = len(json.dumps(arguments, default=str).encode("utf-8"))
            if size > MAX_ARGUMENT_BYTES:
                raise PayloadTooLarge(
                    f"413 Payload Too Large: the call is {size:,} bytes; the limit is {MAX_ARGUMENT_BYTES:,}. "
                    f"Keep entry bodies under {MAX_BODY_BYTES:,} bytes and link large data as evidence. "
                    "Nothing was recorded"
                )
            ident = self._caller_identity()
        except PayloadTooLarge as exc:
            raise ToolError(self.redactor.redact(str(exc))) from None
        except Exception as exc:
            raise ToolError(self.redactor.redact(error_text(exc))) from None
        token = _caller.set(ident)
        log.info("tool %s called by %s", name, ident)
        try:
            # the tool's own return value (a pydantic model), not the SDK's rendering of it
            result = await self._tool_manager.call_tool(name, arguments, context=self.get_context(),
                                                        convert_result=False)  # fmt: skip
        except ToolError as exc:
            cause = _root_cause(exc)
            text = error_text(cause) if exc.__cause__ is not None else str(exc)
            if not isinstance(cause, SharedCtxError | ValidationError):
                log.warning("tool %s by %s failed: %s: %s", name, ident, type(cause).__name__, cause)
            raise ToolError(self.redactor.redact(text)) from None
        finally:
            _caller.reset(token)
        return self.tool_result(result)

    # -- the output choke point -------------------------------------------------------------------
    def structured(self, value: BaseModel | dict[str, Any]) -> dict[str, Any]:
        """A result as JSON-ready data, redacted value by value (so a secret split across fields, or
        sitting next to JSON punctuation, is judged in its own field, not in a dump of the whole)."""
        data = value.model_dump(mode="json", by_alias=True) if isinstance(value, BaseModel) else value
        redacted: dict[str, Any] = self.redactor.redact_value(data)
        return redacted

    @staticmethod
    def render(structured: dict[str, Any]) -> str:
        """The text form of an already-redacted structured result: nothing else is ever rendered."""
        return json.dumps(structured, ensure_ascii=False, indent=2)

    def tool_result(self, result: Any) -> types.CallToolResult:
        """The one function that builds every tool result: redact the structured value, render its text.

        Returning a finished `CallToolResult` also spares the SDK re-validating the output against its
        JSON schema on every call (jsonschema, meta-schema check included: ~70% of a call's server time);
        outputs are built from the pydantic models that generated those schemas, so it is redundant.
        """
        if not isinstance(result, BaseModel):
            raise TypeError(f"MCP tools return pydantic models; got {type(result).__name__}")
        data = self.structured(result)
        return types.CallToolResult(content=[types.TextContent(type="text", text=self.render(data))],
                                    structuredContent=data, isError=False)  # fmt: skip

    async def read_resource(self, uri: AnyUrl | str) -> Any:
        try:
            ident = self._caller_identity()
        except Exception as exc:
            raise McpError(types.ErrorData(code=types.INVALID_REQUEST, message=error_text(exc))) from None
        token = _caller.set(ident)
        try:
            contents = list(await super().read_resource(uri))
        except Exception as exc:
            cause = _root_cause(exc)
            code = -32002 if isinstance(cause, CaseNotFound) else types.INVALID_REQUEST
            text = error_text(cause) if isinstance(cause, SharedCtxError) else str(exc)
            raise McpError(types.ErrorData(code=code, message=self.redactor.redact(text))) from None
        finally:
            _caller.reset(token)
        log.info("resource %s read by %s", uri, ident)
        return contents


async def off_loop(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Library calls touch the store: run them off the event loop."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))
