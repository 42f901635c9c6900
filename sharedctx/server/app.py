"""The HTTP side of `sharedctx serve`: the intake routes, the probes, `/metrics`, and `serve()`.

This is apart from the dispatcher (`dispatch.py`) because it is only the door: it authenticates and
reads a request, hands the alerts over, and turns the outcomes into an answer. `serve()` sits here
because it is what wires this app to its mounts and runs it; its heavy imports (uvicorn, the MCP
server, webhooks) stay inside it so that importing the package does not pay for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any

import anyio
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..agents.primary import PrimaryAgent
from ..config import McpHttpMode
from ..context import SharedContext
from ..errors import ConfigError, IntakeError, SharedCtxError
from ..intake import Batch, read_alertmanager, read_generic
from ..intake_guard import IntakeAuth, is_loopback, read_limited, require_json
from ..observability import metrics_registry, render_metrics, setup_otlp
from .dispatch import Dispatcher

__all__ = ["READY_TIMEOUT", "Lifespan", "build_app", "serve"]

# one logger for the package (log config and tests filter on this name), not one per submodule
log = logging.getLogger("sharedctx.server")

READY_TIMEOUT = 2.0  # seconds `/readyz` waits for the store: a probe must answer faster than it is polled


Lifespan = Callable[[Starlette], AbstractAsyncContextManager[Any]]


def build_app(
    ctx: SharedContext,
    *,
    agent: PrimaryAgent | None = None,
    dispatcher: Dispatcher | None = None,
    max_alert_bytes: int | None = None,
    max_alerts: int | None = None,
    auth: IntakeAuth | None = None,
    mounts: Sequence[BaseRoute] = (),
    lifespans: Sequence[Lifespan] = (),
) -> Starlette:
    """The intake app. `mounts` are extra routes (e.g. `Mount("/mcp", app=...)`); `lifespans` run with it.

    `auth` defaults to `[server]`'s intake credentials (resolved now: a missing variable is a
    `ConfigError` here, not a 500 later); pass `NO_AUTH` for an app that is only reached in-process.
    Mounted routes keep their own authentication: intake credentials are neither needed nor accepted there.
    """
    disp = dispatcher or Dispatcher(ctx, agent or PrimaryAgent(ctx.config.partners))
    limit = max_alert_bytes or ctx.config.server.max_alert_bytes
    count = max_alerts or ctx.config.server.max_alerts_per_request
    guard = auth if auth is not None else IntakeAuth.from_settings(ctx.config.server)

    def intake(read: Callable[..., Batch]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:  # the order is the contract: 401, then 415, then 413, then what the payload says
                guard.check(request.headers.get("authorization"), request.headers.get("host"))
                require_json(request.headers.get("content-type"))
                batch = read(await read_limited(request, limit), max_bytes=limit, max_alerts=count)
            except IntakeError as exc:
                headers = {"WWW-Authenticate": guard.challenge} if exc.status == 401 else None
                return JSONResponse(exc.to_json(), status_code=exc.status, headers=headers)
            try:
                outcomes = await disp.submit(batch.items)
            except SharedCtxError as exc:  # the journal itself failed: the sender should retry
                log.error("alert not recorded: %s", exc)
                return JSONResponse({"error": str(exc), "type": "store_unavailable", "detail": []}, status_code=503)
            rejected = [o for o in outcomes if o.action == "rejected"]
            body: dict[str, Any] = {"accepted": len(outcomes) - len(rejected), "rejected": len(rejected),
                                    "alerts": [o.to_json() for o in outcomes]}  # fmt: skip
            if len(rejected) == len(outcomes):
                detail = [e for o in rejected for e in o.errors]
                return JSONResponse({"error": "no alert in the payload was accepted", "type": "invalid_alert",
                                     "detail": detail, **body}, status_code=422)  # fmt: skip
            return JSONResponse(body, status_code=202)

        return endpoint

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True, "running": disp.running})

    async def readyz(request: Request) -> Response:
        try:
            with anyio.fail_after(READY_TIMEOUT):
                await asyncio.to_thread(ctx.store.ping)
        except TimeoutError:
            return JSONResponse({"ready": False, "reason": f"the store did not answer within {READY_TIMEOUT:g}s"},
                                status_code=503)  # fmt: skip
        except Exception as exc:
            return JSONResponse({"ready": False, "reason": f"the store is not reachable: {exc}"}, status_code=503)
        return JSONResponse({"ready": True})

    registry = metrics_registry(ctx.store, ctx.backends)

    async def metrics(request: Request) -> Response:
        # Outbox numbers tell who is investigating what is failing; from another machine they need the
        # same credentials as the intake. On loopback (and for an app built with NO_AUTH) they are open.
        if not is_loopback(request.client.host if request.client else ""):
            try:
                guard.check(request.headers.get("authorization"))
            except IntakeError as exc:
                challenge = {"WWW-Authenticate": guard.challenge}
                return JSONResponse(exc.to_json(), status_code=exc.status, headers=challenge)
        body = await asyncio.to_thread(render_metrics, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for ls in lifespans:
                await stack.enter_async_context(ls(app))
            await disp.start()
            try:
                yield
            finally:
                await disp.shutdown()

    routes: list[BaseRoute] = [
        Route("/alerts/alertmanager", intake(read_alertmanager), methods=["POST"]),
        Route("/alerts", intake(read_generic), methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        *mounts,
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.dispatcher = disp
    app.state.ctx = ctx
    return app


def serve(
    ctx: SharedContext,
    *,
    host: str | None = None,
    port: int | None = None,
    act: bool = False,
    say: Callable[[str], None] = print,
    mcp_mode: McpHttpMode | None = None,
) -> None:
    """Run `sharedctx serve` until interrupted: intake, `/webhooks/<backend>`, `/mcp` (with `[[agents]]`).

    Raises `ConfigError` before binding anything if the intake credentials cannot be resolved, or if
    the intake would be reachable from other machines without authentication.
    """
    import uvicorn

    from ..humans import human_settings
    from ..mcp import mcp_mount
    from ..redact import Redactor, install_log_redaction
    from ..webhooks import poller_lifespan, webhook_mount

    h, p = host or ctx.config.server.host, ctx.config.server.port if port is None else port
    # what the mounts see (e.g. /mcp's DNS-rebinding protection on loopback) is where we really listen
    ctx.config.server = ctx.config.server.model_copy(update={"host": h, "port": p,
                                                             "mcp_mode": mcp_mode or ctx.config.server.mcp_mode})
    auth = IntakeAuth.from_settings(ctx.config.server)
    if not auth.enabled and not is_loopback(h):
        raise ConfigError(
            f"refusing to serve the alert intake on {h} without authentication: anyone who can reach it could "
            'open cases. Set [server] intake_token = "env:SHAREDCTX_INTAKE_TOKEN" (or intake_basic_user and '
            "intake_basic_password), or listen on 127.0.0.1. See docs/intake.md."
        )
    agent_log = logging.getLogger("sharedctx.agent")
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("sharedctx").setLevel(logging.INFO)
    agent = PrimaryAgent(ctx.config.partners, dry_run=not act, on_event=lambda s, msg: agent_log.info("%s: %s", s, msg))
    say(f"sharedctx: alerts at http://{h}:{p}/alerts/alertmanager and /alerts "
        f"({' or '.join(auth.schemes) + ' auth' if auth.enabled else 'no authentication'}); "
        f"partners: {', '.join(s.name for s in ctx.config.partners) or 'none'}")  # fmt: skip
    if not auth.enabled:
        auth = dataclasses.replace(auth, loopback_host_only=True)
        say("sharedctx: warning: the alert intake has no authentication, so any process on this machine can "
            'open cases; set [server] intake_token = "env:SHAREDCTX_INTAKE_TOKEN" (docs/intake.md)')
    install_log_redaction(ctx.redactor if isinstance(ctx.redactor, Redactor) else None)
    if setup_otlp():
        say("sharedctx: exporting spans over OTLP (OTEL_EXPORTER_OTLP_ENDPOINT)")
    say(f"sharedctx: metrics at http://{h}:{p}/metrics, probes at /healthz and /readyz")
    mounts: list[BaseRoute] = []
    lifespans: list[Lifespan] = []
    if ctx.config.agents:  # /mcp (Streamable HTTP) needs [[agents]] with tokens
        routes, mcp_lifespan = mcp_mount(ctx)
        mounts, lifespans = [*routes], [mcp_lifespan]
        kind = "stateless, JSON answers" if ctx.config.server.mcp_mode == "json" else "streaming"
        say(f"sharedctx: MCP (Streamable HTTP, {kind}, bearer tokens) at http://{h}:{p}/mcp")
    mounts.append(webhook_mount(ctx))  # /webhooks/<backend name>: human answers (docs/humans.md)
    if human_settings(ctx.config).poll:
        lifespans.append(poller_lifespan(ctx))
    hooks = ", ".join(f"/webhooks/{n}" for n in human_settings(ctx.config).webhooks) or "none configured"
    say(f"sharedctx: human answers by webhook ({hooks}) and polling")
    app = build_app(ctx, agent=agent, auth=auth, mounts=mounts, lifespans=lifespans)
    # SIGTERM drains: uvicorn stops accepting connections, finishes the requests in flight, then runs the
    # lifespan's shutdown, where the dispatcher finishes or abandons each step and releases every
    # investigation lease (`Dispatcher.shutdown`). Afterwards uvicorn re-raises the signal to the handler
    # that was there before it; a no-op one lets the drained process exit 0 instead of dying of it (143).
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        # log_config=None: uvicorn's loggers propagate to the root handlers, which carry the redaction filter;
        # its default config would give them their own stderr handlers that no redaction ever sees.
        uvicorn.run(app, host=h, port=p, log_level="warning", log_config=None)
    finally:
        signal.signal(signal.SIGTERM, previous)
    say("sharedctx: stopped; investigation leases released")
