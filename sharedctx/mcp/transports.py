"""How the shared-context MCP server is reached: stdio, Streamable HTTP mounted on `sharedctx serve`, or
a standalone ASGI app (tests, benchmarks, embedding)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route

from ..access import Access
from ..config import McpHttpMode
from ..context import SharedContext
from .identities import BearerAuth, fixed_identity, scope_identity
from .tools import build_mcp_server

log = logging.getLogger("sharedctx.mcp")


def _security(ctx: SharedContext) -> TransportSecuritySettings | None:
    """Keep the SDK's DNS-rebinding protection on loopback; elsewhere bearer tokens guard the endpoint."""
    if ctx.config.server.host in ("127.0.0.1", "localhost", "::1"):
        return None
    return TransportSecuritySettings(enable_dns_rebinding_protection=False)


def mcp_mount(
    ctx: SharedContext, path: str = "/mcp", *, access: Access | None = None, mode: McpHttpMode | None = None
) -> tuple[list[BaseRoute], Callable[[Any], contextlib.AbstractAsyncContextManager[None]]]:
    """Routes and a lifespan for `server.build_app(ctx, mounts=routes, lifespans=[lifespan])`.

    `mode` (default `[server] mcp_mode`): "stream" or "json" (stateless, one JSON answer per POST). Either
    way every request passes `BearerAuth` and every tool resolves its caller from that request, so a
    stateless server holds nothing between requests that one identity could see of another's."""
    acc = access or Access(ctx.config, ctx.store)
    acc._token_table()  # read every token now: a missing env variable fails at start, by name
    server = build_mcp_server(ctx, scope_identity, access=acc, transport_security=_security(ctx),
                              http_mode=mode or ctx.config.server.mcp_mode)  # fmt: skip
    server.streamable_http_app()  # creates the session manager
    from mcp.server.fastmcp.server import StreamableHTTPASGIApp

    endpoint = BearerAuth(StreamableHTTPASGIApp(server.session_manager), acc)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        async with server.session_manager.run():
            yield

    return [Route(path, endpoint=endpoint)], lifespan


def mcp_http_app(
    ctx: SharedContext, path: str = "/mcp", *, access: Access | None = None, mode: McpHttpMode | None = None
) -> Starlette:
    """A standalone ASGI app serving only the MCP endpoint (tests, benchmarks, embedding)."""
    routes, lifespan = mcp_mount(ctx, path, access=access, mode=mode)
    return Starlette(routes=routes, lifespan=lifespan)


def run_stdio(ctx: SharedContext, name: str | None = None) -> None:
    """`sharedctx mcp [--as NAME]`: serve one identity over stdin/stdout until the host disconnects."""
    from ..redact import install_log_redaction

    acc = Access(ctx.config, ctx.store)
    ident = acc.identity(name)
    server = build_mcp_server(ctx, fixed_identity(ident), access=acc)
    install_log_redaction(server.redactor)
    log.info("sharedctx MCP server on stdio as %s", ident)
    server.run("stdio")
