"""`sharedctx serve`: one HTTP app that takes alerts in and runs the primary agent on them.

    POST /alerts/alertmanager   Alertmanager webhook (payload version 4)
    POST /alerts                the generic JSON alert (format in `sharedctx.intake`)
    GET  /healthz               {"ok": true, "running": <investigations in flight>}

An alert is validated (4xx saying what is wrong; 413 when over `[server] max_alert_bytes`), its case
opened or found by fingerprint, the alert recorded — and only then is 202 returned, so an accepted
alert is durable. The agent runs afterwards, in the background, one task per case at a time:
a firing alert for a new case starts an investigation; the same alert again while the case is open
adds a "re-fired" entry (an identical repeat of a notification adds nothing); a `resolved`
notification makes the agent verify and close.

`build_app(ctx, mounts=[...], lifespans=[...])` keeps the app composable: the shared-context MCP
server (`/mcp`) and backend webhooks (`/webhooks/...`) mount beside the intake, and their lifespans
(e.g. an MCP session manager) run with the app's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .agents.primary import Investigation, PrimaryAgent
from .context import Case, SharedContext
from .errors import SharedCtxError
from .intake import Alert, IntakeError, parse_alertmanager, parse_generic
from .model import Author, EntryKind, format_ts

__all__ = ["Dispatcher", "Outcome", "build_app"]

log = logging.getLogger("sharedctx.server")

Action = Literal["opened", "refired", "repeat", "resolving", "ignored"]


@dataclass(frozen=True)
class Outcome:
    """What the intake did with one alert (the 202 answer lists one per alert)."""

    fingerprint: str
    status: str
    action: Action
    case_id: str | None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "status": self.status, "action": self.action,
                "case_id": self.case_id, "detail": self.detail}  # fmt: skip


class Dispatcher:
    """Alerts -> cases -> background agent runs, one at a time per case."""

    def __init__(self, ctx: SharedContext, agent: PrimaryAgent) -> None:
        self.ctx = ctx
        self.agent = agent
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._investigations: dict[str, Investigation] = {}
        self._busy: set[str] = set()

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def submit(self, alerts: Sequence[Alert]) -> list[Outcome]:
        """Record each alert in its case (durable when this returns), then schedule the agent."""
        outcomes = []
        for alert in alerts:
            outcome, case = await asyncio.to_thread(self._intake, alert)
            outcomes.append(outcome)
            if case is None:
                continue
            if outcome.action == "resolving":
                self._schedule(case, self._verify(case, alert))
            elif outcome.action == "opened" or (outcome.action == "refired" and self._needs_investigation(case)):
                self._schedule(case, self._investigate(case, alert))
        return outcomes

    def _intake(self, alert: Alert) -> tuple[Outcome, Case | None]:
        src = Author(kind="system", name=alert.source.split(":")[0] or "intake")
        attrs = {"fingerprint": alert.fingerprint, "status": alert.status, "alertname": alert.name,
                 "starts_at": format_ts(alert.starts_at) if alert.starts_at else None,
                 "labels": alert.labels, "annotations": alert.annotations}  # fmt: skip
        body = "\n\n".join(x for x in [alert.description, _labels_line(alert), _link(alert)] if x)
        if alert.status == "resolved":
            rec = self.ctx.store.find_open_case(alert.fingerprint)
            if rec is None:
                why = "no open case with this fingerprint"
                return Outcome(alert.fingerprint, alert.status, "ignored", None, why), None
            case = self.ctx.case(rec.id)
            if self._seen(case, alert):
                return Outcome(alert.fingerprint, alert.status, "repeat", case.id, "already recorded"), None
            case.record(EntryKind.ALERT, f"Alert resolved: {alert.title}", body, author=src, attrs=attrs)
            return Outcome(alert.fingerprint, alert.status, "resolving", case.id, "verification scheduled"), case
        case = self.ctx.open_case(alert.case_title, service=alert.service, severity=alert.severity,
                                  fingerprint=alert.fingerprint)  # fmt: skip
        if case.created:
            case.record(EntryKind.ALERT, f"Alert firing: {alert.title}", body, author=src, attrs=attrs)
            return Outcome(alert.fingerprint, alert.status, "opened", case.id, "investigation scheduled"), case
        if self._seen(case, alert):
            return Outcome(alert.fingerprint, alert.status, "repeat", case.id, "same notification again"), None
        case.record(EntryKind.ALERT, f"Alert re-fired: {alert.title}", body, author=src, attrs=attrs)
        return Outcome(alert.fingerprint, alert.status, "refired", case.id, "added to the open case"), case

    @staticmethod
    def _seen(case: Case, alert: Alert) -> bool:
        """Alertmanager repeats notifications (group_interval, repeat_interval): one entry per firing is enough."""
        if alert.starts_at is None:
            return False
        ts = format_ts(alert.starts_at)
        return any(
            e.attrs.get("starts_at") == ts and e.attrs.get("status") == alert.status
            for e in case.timeline(kinds=["alert"])
        )

    def _needs_investigation(self, case: Case) -> bool:
        """A re-fire on a case whose investigation never finished (e.g. the server restarted) starts one."""
        if case.id in self._busy:
            return False
        return not any(e.kind == EntryKind.HANDOFF and e.author.kind == "primary" for e in case.timeline())

    def _schedule(self, case: Case, work: Any) -> None:
        lock = self._locks.setdefault(case.id, asyncio.Lock())

        async def run() -> None:
            async with lock:
                self._busy.add(case.id)
                try:
                    await work
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.exception("agent run for case %s failed", case.id)
                    with contextlib.suppress(Exception):
                        await case.arecord(EntryKind.NOTE, f"The primary agent failed: {type(exc).__name__}",
                                           f"{exc}\n\nThe case is left as it is for a human to pick up.",
                                           author=self.agent.author)  # fmt: skip
                finally:
                    self._busy.discard(case.id)

        task = asyncio.create_task(run(), name=f"sharedctx-case-{case.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _investigate(self, case: Case, alert: Alert) -> None:
        self._investigations[case.id] = await self.agent.investigate(case, alert)

    async def _verify(self, case: Case, alert: Alert) -> None:
        inv = self._investigations.pop(case.id, None)
        await self.agent.verify_and_close(case, alert, investigation=inv)

    async def idle(self, timeout: float | None = None) -> bool:
        """Wait until no agent run is in flight (runs scheduled meanwhile included); False on timeout."""
        async def drain() -> None:
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)

        try:
            await asyncio.wait_for(drain(), timeout)
        except TimeoutError:
            return False
        return True

    async def shutdown(self, grace: float = 5.0) -> None:
        """Let runs finish for `grace` seconds, then cancel what is left (its entries so far stay)."""
        if not await self.idle(grace):
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _labels_line(alert: Alert) -> str:
    return "Labels: " + ", ".join(f"`{k}={v}`" for k, v in sorted(alert.labels.items())) if alert.labels else ""


def _link(alert: Alert) -> str:
    return f"Source: {alert.generator_url}" if alert.generator_url else ""


async def _read_limited(request: Request, limit: int) -> bytes:
    """The body, refusing (413) as soon as it is over the limit rather than after buffering it all."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise IntakeError(f"the payload is {int(declared):,} bytes; the limit is {limit:,} bytes", status=413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise IntakeError(f"the payload is over the limit of {limit:,} bytes", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


Lifespan = Callable[[Starlette], AbstractAsyncContextManager[Any]]


def build_app(
    ctx: SharedContext,
    *,
    agent: PrimaryAgent | None = None,
    dispatcher: Dispatcher | None = None,
    max_alert_bytes: int | None = None,
    mounts: Sequence[BaseRoute] = (),
    lifespans: Sequence[Lifespan] = (),
) -> Starlette:
    """The intake app. `mounts` are extra routes (e.g. `Mount("/mcp", app=...)`); `lifespans` run with it."""
    disp = dispatcher or Dispatcher(ctx, agent or PrimaryAgent(ctx.config.partners))
    limit = max_alert_bytes or ctx.config.server.max_alert_bytes

    def intake(parse: Callable[..., list[Alert]]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:
                alerts = parse(await _read_limited(request, limit), max_bytes=limit)
            except IntakeError as exc:
                return JSONResponse(exc.to_json(), status_code=exc.status)
            try:
                outcomes = await disp.submit(alerts)
            except SharedCtxError as exc:  # the journal itself failed: the sender should retry
                log.error("alert not recorded: %s", exc)
                return JSONResponse({"error": {"type": "store_unavailable", "message": str(exc)}}, status_code=503)
            return JSONResponse({"accepted": len(outcomes), "alerts": [o.to_json() for o in outcomes]},
                                status_code=202)  # fmt: skip

        return endpoint

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True, "running": disp.running})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for ls in lifespans:
                await stack.enter_async_context(ls(app))
            try:
                yield
            finally:
                await disp.shutdown()

    routes: list[BaseRoute] = [
        Route("/alerts/alertmanager", intake(parse_alertmanager), methods=["POST"]),
        Route("/alerts", intake(parse_generic), methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        *mounts,
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.dispatcher = disp
    app.state.ctx = ctx
    return app
