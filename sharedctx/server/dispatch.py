"""Alerts -> cases -> investigations: what the intake does with an alert once it has been read.

This is apart from the HTTP app (`app.py`) because it does not depend on HTTP at all: tests drive it
alone (`submit`, `scan`, `shutdown`), and the demo builds one to hand to its app. Its state (the
leases this replica holds, the runs in flight, draining) lives here only; the app just keeps a reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from ..agents.lease import HeldInvestigation, replica_name
from ..agents.primary import Investigation, LeaseLost, PendingEntry, PrimaryAgent, Step
from ..channel.trace import new_traceparent
from ..context import Case, NewEntry, SharedContext
from ..errors import InvalidEntry, SharedCtxError, StoreError, validation_problems
from ..intake import Alert, Refused
from ..model import MAX_TITLE_CHARS, Author, EntryKind, format_ts
from ..store.base import InvestigationLease

__all__ = ["Action", "Dispatcher", "Outcome"]

# one logger for the package (log config and tests filter on this name), not one per submodule
log = logging.getLogger("sharedctx.server")


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
        try:
            inv = Investigation.from_state(case, lease.step, lease.state, lease.resolved)
        except Exception as exc:  # whatever a corrupt or foreign checkpoint raises
            await self._unreadable(held, exc)
            return False
        self._held[case.id] = held
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

    async def _unreadable(self, held: HeldInvestigation, exc: Exception) -> None:
        """A checkpoint this code cannot read (a corrupt row, a state written by another version): no step is
        guessed from it (a REMEDIATE that was acting must never choose and run a runbook again). It is parked
        at `failed` with a note saying why, its stored state kept as it was for a person to read, and released;
        otherwise every scan would take it again and nothing would say why it never moves."""
        lease = held.lease
        log.error("case %s: the checkpoint at %s cannot be read, parked at failed: %s", lease.case_id, lease.step, exc)
        title = f"The primary agent could not resume this investigation: {type(exc).__name__}"
        note = PendingEntry(EntryKind.NOTE, title,
                            f"Its checkpoint (at step `{lease.step}`) does not read: {exc}\n\nNo step was run from it; "
                            "the case is left as it is for a human to pick up.", {"author": self.agent.author})
        try:
            await held.advance(Step.FAILED, lease.state, [note])
        except Exception:  # the store is away: the lease expires, and the next scan tries again
            log.exception("case %s: could not park the unreadable investigation", lease.case_id)
            return
        held.release()

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
