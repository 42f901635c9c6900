"""Who is calling: an MCP tool never takes its caller from its arguments, only from here.

Over stdio and in memory the whole connection is one configured identity (`sharedctx mcp --as NAME`);
over HTTP `BearerAuth` authenticates each request (`Access.authenticate`, constant time) and puts the
identity into the ASGI scope, where `scope_identity` finds it. Scopes and write policy are `access.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ..access import Access, Identity
from ..errors import Unauthenticated

log = logging.getLogger("sharedctx.mcp")

IDENTITY_SCOPE_KEY = "sharedctx.identity"
IdentityResolver = Callable[[Request | None], Identity]


def fixed_identity(identity: Identity) -> IdentityResolver:
    """For stdio and in-memory sessions: one identity for the whole connection."""
    return lambda _request: identity


def scope_identity(request: Request | None) -> Identity:
    """For HTTP: the identity `BearerAuth` put into the request scope."""
    ident = request.scope.get(IDENTITY_SCOPE_KEY) if request is not None else None
    if not isinstance(ident, Identity):
        raise Unauthenticated()
    return ident


class BearerAuth:
    """ASGI middleware: 401 unless `Authorization: Bearer <token>` names a configured agent."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            ident = self.access.authenticate(Headers(scope=scope).get("authorization"))
        except Unauthenticated as exc:
            log.info("MCP request refused: 401 (%s)", "no token" if "missing" in str(exc) else "bad token")
            response = JSONResponse(
                {"error": "unauthorized", "status": 401, "message": str(exc)},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="sharedctx", error="invalid_token"'},
            )
            await response(scope, receive, send)
            return
        scope[IDENTITY_SCOPE_KEY] = ident
        # The SDK binds a Streamable HTTP session to the principal in scope["user"] that opened it, and answers
        # any later request of that session from another principal with 404 "Session not found". Without a
        # principal every session was open to every agent: one who learned another's session id could end it
        # (DELETE) or read its server-to-client stream. The token itself is not put here, only the agent's name.
        scope["user"] = AuthenticatedUser(AccessToken(token=f"sharedctx-agent:{ident.name}", client_id=ident.name,
                                                      scopes=[ident.role]))  # fmt: skip
        await self.app(scope, receive, send)
