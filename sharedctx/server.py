"""`sharedctx serve`: one HTTP app that takes alerts in and runs the primary agent on them.

    POST /alerts/alertmanager   Alertmanager webhook (payload version 4)
    POST /alerts                the generic JSON alert (format in `sharedctx.intake`)
    GET  /healthz               {"ok": true, "running": <investigations in flight>} (the process is alive)
    GET  /readyz                {"ready": true}, or 503 {"ready": false, "reason": ...} if the store does not answer
    GET  /metrics               Prometheus text format (`sharedctx.observability`); loopback clients need
                                no credentials, any other client the intake's

Every intake route is built by one factory (`build_app`'s `intake`), the choke point where a request
is authenticated, checked to be JSON and within size (`sharedctx.intake_guard`), then read alert by
alert (`sharedctx.intake`). A payload that cannot be read at all gets a 4xx naming the problem; a
readable one gets 202 with one outcome per alert — `opened`, `refired`, `repeat`, `resolving`,
`ignored`, or `rejected` with the reason — so one bad alert never drops its siblings and
Alertmanager does not retry a batch forever. If no alert was accepted the answer is 422.

An accepted alert is durable before the answer: a new case is opened together with its first entry,
in one transaction (no empty case), or the alert is added to the open case with its fingerprint.
The agent runs afterwards, in the background: a firing alert for a new case begins an investigation;
the same alert again while the case is open adds a "re-fired" entry (an identical repeat of a
notification adds nothing); a `resolved` notification makes the agent verify and close.

Several `serve` replicas may share one store: each investigation is leased to one replica at a time
and checkpointed after every step (`Dispatcher`, `sharedctx.agents.lease`), so a survivor or a
restarted process resumes it where it stopped, without recording any step twice. SIGTERM drains
(`Dispatcher.shutdown`): in-flight steps finish or are abandoned unrecorded, leases are released.

`build_app(ctx, mounts=[...], lifespans=[...])` keeps the app composable: the shared-context MCP
server (`/mcp`) and backend webhooks (`/webhooks/...`) mount beside the intake with their own
authentication, and their lifespans (e.g. an MCP session manager) run with the app's. `serve()` is
what `sharedctx serve` runs: it wires those mounts and refuses to expose an unauthenticated intake
beyond loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from typing import Any, Literal

import anyio
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .agents.lease import HeldInvestigation, replica_name
from .agents.primary import Investigation, LeaseLost, PendingEntry, PrimaryAgent, Step
from .channel.trace import new_traceparent
from .config import McpHttpMode
from .context import Case, NewEntry, SharedContext
from .errors import ConfigError, IntakeError, InvalidEntry, SharedCtxError, StoreError, validation_problems
from .intake import Alert, Batch, Refused, read_alertmanager, read_generic
from .intake_guard import IntakeAuth, is_loopback, read_limited, require_json
from .model import MAX_TITLE_CHARS, Author, EntryKind, format_ts
from .observability import metrics_registry, render_metrics, setup_otlp
from .store.base import InvestigationLease

__all__ = ["Dispatcher", "Outcome", "build_app", "serve"]

log = logging.getLogger("sharedctx.server")

READY_TIMEOUT = 2.0  # seconds `/readyz` waits for the store: a probe must answer faster than it is polled

Action = Literal["opened", "refired", "repeat", "resolving", "ignored", "rejected"]


@dataclass(frozen=True)
class Outcome:
    """What the intake did with one alert (the answer lists one per alert, in payload order)."""

    fingerprint: str | None
    status: str | None
    action: Action
    case_id: str | None
    detail: str = ""
    errors: tuple[str, ...] = ()  # `where: what is wrong`, for a rejected alert

    @classmethod
    def rejected(cls, refused: Refused) -> Outcome:
        return cls(refused.fingerprint, refused.status, "rejected", None, refused.reason, tuple(refused.errors))

    def to_json(self) -> dict[str, Any]:
        out = {"fingerprint": self.fingerprint, "status": self.status, "action": self.action,
               "case_id": self.case_id, "detail": self.detail}  # fmt: skip
        return {**out, "errors": list(self.errors)} if self.action == "rejected" else out


class Dispatcher:
    """Alerts -> cases -> investigations, each owned by one replica at a time.

    Any number of `serve` processes may share one store. An investigation is a row in the store
    leased to one replica (`sharedctx.agents.lease`): this dispatcher begins one when it opens a case,
    takes over any whose lease expired or was released (`scan`, every `scan_every` seconds), and runs
    the agent only while it holds the lease. Within the process, runs of one case are serialized.
    """

    def __init__(
        self,
        ctx: SharedContext,
        agent: PrimaryAgent,
        *,
        owner: str | None = None,
        lease_seconds: float | None = None,
        drain_seconds: float | None = None,
    ) -> None:
        self.ctx = ctx
        self.agent = agent
        self.owner = owner or replica_name()
        self.lease_seconds = lease_seconds or ctx.config.server.investigation_lease
        self.drain_seconds = ctx.config.server.drain_seconds if drain_seconds is None else drain_seconds
        self.scan_every = min(1.0, self.lease_seconds / 5)
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._active: dict[str, int] = {}  # case id -> drive tasks scheduled or running here
        self._draining = False
        self._scanner: asyncio.Task[None] | None = None
        self._held: dict[str, HeldInvestigation] = {}  # leases this replica holds now, by case id

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def submit(self, alerts: Sequence[Alert | Refused]) -> list[Outcome]:
        """Record each alert in its case (durable when this returns), then schedule the agent.

        A `Refused` alert, or one the journal refuses (`InvalidEntry`), becomes a `rejected` outcome
        and the others go on. A journal failure (`StoreError`) propagates: the sender should retry.
        Once draining (SIGTERM), alerts are still recorded, but investigations are left to other replicas.
        """
        outcomes = []
        for alert in alerts:
            if isinstance(alert, Refused):
                outcomes.append(Outcome.rejected(alert))
                continue
            try:
                outcome, case, lease = await asyncio.to_thread(self._intake, alert)
            except InvalidEntry as exc:
                outcomes.append(Outcome(alert.fingerprint, alert.status, "rejected", None, exc.message,
                                        (exc.message,)))  # fmt: skip
                continue
            except ValidationError as exc:  # a model downstream (author, entry) refused a value intake let through
                problems = validation_problems(exc)
                log.warning("alert %s passed intake but was refused downstream: %s", alert.fingerprint, problems)
                outcomes.append(Outcome(alert.fingerprint, alert.status, "rejected", None, "; ".join(problems),
                                        tuple(problems)))  # fmt: skip
                continue
            outcomes.append(outcome)
            if case is not None:
                self._schedule(case, lease)
        return outcomes

    def _intake(self, alert: Alert) -> tuple[Outcome, Case | None, InvestigationLease | None]:
        """Record the alert; returns the case to run the agent on (if any) and, when this call began its
        investigation, the lease on it."""
        src = Author(kind="system", name=alert.source.split(":")[0] or "intake")
        attrs = {"fingerprint": alert.fingerprint, "status": alert.status, "alertname": alert.name,
                 "starts_at": format_ts(alert.starts_at) if alert.starts_at else None,
                 "labels": alert.labels, "annotations": alert.annotations}  # fmt: skip
        body = "\n\n".join(x for x in [alert.description, _labels_line(alert), _link(alert)] if x)
        if alert.status == "resolved":
            rec = self.ctx.store.find_open_case(alert.fingerprint)
            if rec is None:
                why = "no open case with this fingerprint"
                return Outcome(alert.fingerprint, alert.status, "ignored", None, why), None, None
            case = self.ctx.case(rec.id)
            if self._seen(case, alert):
                return Outcome(alert.fingerprint, alert.status, "repeat", case.id, "already recorded"), None, None
            case.record(EntryKind.ALERT, _title("Alert resolved: ", alert), body, author=src, attrs=attrs)
            return (Outcome(alert.fingerprint, alert.status, "resolving", case.id, "verification scheduled"), case,
                    self._resolved(case, alert))  # fmt: skip
        first = NewEntry(EntryKind.ALERT, _title("Alert firing: ", alert), body, author=src, attrs=attrs)
        case = self.ctx.open_case(alert.case_title, service=alert.service, severity=alert.severity,
                                  fingerprint=alert.fingerprint, first=first)  # fmt: skip
        if case.created:  # the case and its first entry were one transaction; the investigation is ours
            lease = self._begin(case, Investigation(case=case, alert=alert, traceparent=new_traceparent()))
            return Outcome(alert.fingerprint, alert.status, "opened", case.id, "investigation scheduled"), case, lease
        if self._seen(case, alert):
            lease = self._begin_orphan(case, alert)
            return (Outcome(alert.fingerprint, alert.status, "repeat", case.id, "same notification again"),
                    case if lease else None, lease)  # fmt: skip
        case.record(EntryKind.ALERT, _title("Alert re-fired: ", alert), body, author=src, attrs=attrs)
        lease = self._begin_orphan(case, alert)
        return Outcome(alert.fingerprint, alert.status, "refired", case.id, "added to the open case"), case, lease

    def _begin_orphan(self, case: Case, alert: Alert) -> InvestigationLease | None:
        """Begin the investigation of an open case that has none and was never investigated: opened by an
        older version, or by a replica that died (or whose store failed) between opening the case and
        beginning its investigation. Alertmanager's retry or repeat of the alert then starts it."""
        if self.ctx.store.get_investigation(case.id) is not None or not self._never_investigated(case):
            return None
        return self._begin(case, Investigation(case=case, alert=alert, traceparent=new_traceparent()))

    def _begin(self, case: Case, inv: Investigation, resolved: Alert | None = None) -> InvestigationLease | None:
        """Create the case's investigation leased to this replica (None: it already has one)."""
        return self.ctx.store.begin_investigation(
            case.id, self.owner, self.lease_seconds, step=inv.step.value, state=inv.to_state(),
            resolved=resolved.model_dump(mode="json") if resolved else None,
        )  # fmt: skip

    def _resolved(self, case: Case, alert: Alert) -> InvestigationLease | None:
        """Leave the resolved alert with the investigation (its owner verifies once it is free to); a case
        that has no investigation gets one that starts at verification."""
        if self.ctx.store.note_resolved(case.id, alert.model_dump(mode="json")):
            return None
        inv = Investigation(case=case, alert=alert, traceparent=self.agent._trace_of(case), step=Step.VERIFY)
        return self._begin(case, inv, resolved=alert)

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

    @staticmethod
    def _never_investigated(case: Case) -> bool:
        return not any(e.kind == EntryKind.HANDOFF and e.author.kind == "primary" for e in case.timeline())

    def _schedule(self, case: Case, lease: InvestigationLease | None) -> None:
        """Run the case's investigation here: with `lease` if this replica just began it, else if it can
        take the lease (free or expired, with work to do). Runs of one case queue behind each other."""
        lock = self._locks.setdefault(case.id, asyncio.Lock())
        self._active[case.id] = self._active.get(case.id, 0) + 1

        async def drive() -> None:
            held = lease
            try:
                async with lock:
                    while not self._draining:
                        if held is None:
                            held = await asyncio.to_thread(
                                self.ctx.store.take_investigation, case.id, self.owner, self.lease_seconds
                            )
                            if held is None:
                                return
                        waiting = await self._run_held(case, held)
                        held = None
                        if not waiting:
                            return
                        # it reached awaiting-recovery and was released: take it again, in case a resolved
                        # alert arrived meanwhile (whoever noted it may have found the lease still ours)
            finally:
                if held is not None:  # never started (draining): give it back at once
                    HeldInvestigation(self.ctx, held, self.lease_seconds).release()
                self._active[case.id] -= 1
                if not self._active[case.id]:
                    del self._active[case.id]

        task = asyncio.create_task(drive(), name=f"sharedctx-case-{case.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_held(self, case: Case, lease: InvestigationLease) -> bool:
        """Run the agent from the lease's checkpoint while the heartbeat keeps the lease; release it after.

        True if the investigation now waits for recovery (a resolved alert may be waiting already)."""
        held = HeldInvestigation(self.ctx, lease, self.lease_seconds)
        self._held[case.id] = held
        inv = Investigation.from_state(case, lease.step, lease.state, lease.resolved)
        inv.checkpoint = held.checkpoint
        inv.should_stop = lambda: self._draining
        log.info("case %s: %s the investigation at %s (lease %d)", case.id,
                 "beginning" if lease.token == 1 else "taking over", lease.step, lease.token)  # fmt: skip
        work = asyncio.create_task(self.agent.run(inv), name=f"sharedctx-agent-{case.id}")
        beat = asyncio.create_task(held.heartbeat(work))
        release = True
        try:
            await work
        except asyncio.CancelledError:
            if not beat.done():  # this replica is shutting down, not a lost lease
                raise
        except LeaseLost as exc:
            log.warning("%s", exc)
        except StoreError as exc:  # the store is away: keep the lease until it expires, then anyone retries
            log.error("case %s: the investigation stopped at %s: %s", case.id, inv.step.value, exc)
            release = False
        except Exception as exc:
            log.exception("agent run for case %s failed", case.id)
            await self._failed(inv, exc)
        finally:
            beat.cancel()
            self._held.pop(case.id, None)
            if release:
                held.release()
        return inv.step == Step.AWAITING_RECOVERY

    async def _failed(self, inv: Investigation, exc: Exception) -> None:
        """A step raised: record that (fenced, like any step) and stop the investigation for a human."""
        inv.pending = [PendingEntry(EntryKind.NOTE, f"The primary agent failed: {type(exc).__name__}",
                                    f"{exc}\n\nThe case is left as it is for a human to pick up.",
                                    {"author": self.agent.author})]  # fmt: skip
        with contextlib.suppress(Exception):
            await self.agent._commit(inv, Step.FAILED)

    async def scan(self) -> int:
        """Take over every investigation whose lease is free or expired (a replica died or drained, or
        this one restarted); returns how many were scheduled here."""
        try:
            ids = await asyncio.to_thread(self.ctx.store.orphaned_investigations)
        except SharedCtxError as exc:
            log.warning("could not look for orphaned investigations: %s", exc)
            return 0
        n = 0
        for case_id in ids:
            if case_id in self._active or self._draining:
                continue
            try:
                case = await asyncio.to_thread(self.ctx.case, case_id)
            except SharedCtxError:
                continue
            self._schedule(case, None)
            n += 1
        return n

    async def start(self) -> None:
        """Begin scanning for investigations to take over (at once: a restart resumes what it left)."""
        if self._scanner is None:
            self._scanner = asyncio.create_task(self._scan_forever(), name="sharedctx-takeover-scan")

    async def _scan_forever(self) -> None:
        while not self._draining:
            await self.scan()
            await asyncio.sleep(self.scan_every)

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

    async def shutdown(self, grace: float | None = None) -> None:
        """Drain: take no more investigations, let each run finish its current step (for up to `grace`
        seconds, `[server] drain_seconds`), then cancel what is left. Every lease is released, so
        another replica takes over at once; a cancelled step was not recorded and is run again there."""
        self._draining = True
        log.info("draining: %d investigation(s) in flight; no new ones are taken", len(self._held))
        if self._scanner is not None:
            self._scanner.cancel()
            await asyncio.gather(self._scanner, return_exceptions=True)
        if not await self.idle(self.drain_seconds if grace is None else grace):
            # Release first, then cancel: unwinding a step (e.g. closing a partner's process) can take
            # seconds, and the fence already keeps the abandoned step from recording anything.
            for held in list(self._held.values()):
                await asyncio.to_thread(held.release)
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        log.info("drained: every investigation lease released")


def _title(prefix: str, alert: Alert) -> str:
    """`Alert firing: <title>`, cut to fit an entry title (a 300-character alert title must not be refused)."""
    text = prefix + alert.title
    return text if len(text) <= MAX_TITLE_CHARS else text[: MAX_TITLE_CHARS - 1] + "…"


def _labels_line(alert: Alert) -> str:
    return "Labels: " + ", ".join(f"`{k}={v}`" for k, v in sorted(alert.labels.items())) if alert.labels else ""


def _link(alert: Alert) -> str:
    return f"Source: {alert.generator_url}" if alert.generator_url else ""


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

    from .humans import human_settings
    from .mcp import mcp_mount
    from .redact import Redactor, install_log_redaction
    from .webhooks import poller_lifespan, webhook_mount

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
