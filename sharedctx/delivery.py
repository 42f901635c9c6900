"""The outbox worker: delivers recorded entries to every backend, behind the agents' backs.

Each backend gets its own lane of `concurrency` threads, so a slow or failing backend only ever
holds up its own lane — never another backend, and never `record()`. Within a lane, the claim
query only hands out the *head* of each (case, backend) line, so entries of one case arrive in
order while many cases are in flight at once.

What happens after a failure is decided here, from the exception type the backend raised:
    Retryable   -> exponential backoff with jitter, or exactly `Retry-After`; the lane pauses for a
                   `Retry-After` because rate limits apply to the whole backend
    Ambiguous   -> same, but the next attempt first asks `backend.lookup()` whether it landed
    AuthFailed  -> the backend is stopped (state kept in the store, shown by `outbox status`),
                   the delivery is released uncounted: no retry storm against a bad token
    Rejected    -> dead letter with the reason (retrying cannot help); `outbox retry` requeues
Any attempt past `max_attempts` goes to dead letters with the last reason.

Exactly-once, by construction (one choke point: `Worker._send`, the only code that calls a backend's
`bind`/`lookup`/`append`/`resolve`):
    1. before any network I/O for a claimed row, `sent_possibly` is committed on it (fenced);
    2. every attempt on a row with `sent_possibly` set first asks `backend.lookup()` and adopts what it
       finds, whatever ended the earlier attempt (kill -9, lease expiry, an error of any kind);
    3. every claim bumps the row's fencing token; every state change names it, and a worker whose lease
       was taken over drops its result instead of marking anything (`LeaseLost`);
    4. a heartbeat renews the lease of every delivery in flight, so a slow delivery keeps its row.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping

from pydantic import BaseModel, Field

from .backends.base import Backend, ThreadRef
from .config import WorkerSettings
from .decisions import Hold, held_for_decision
from .errors import Ambiguous, AuthFailed, LeaseLost, Paced, Rejected, Retryable
from .model import CaseRecord, Delivery, Entry, EntryKind, ExternalRef
from .observability import DELIVERY_SECONDS, delivery_outcome, span
from .store.base import Store

log = logging.getLogger("sharedctx.delivery")

Event = Callable[[str, Delivery, str], None]

# -- decision holds -------------------------------------------------------------------------------
# An entry recorded with `attrs.held_for_decision` is in the journal at once but is not delivered to any
# backend until a person approves it; what counts as an answer is `sharedctx.decisions` alone. Held rows
# stay `pending` with `last_error_kind = 'held'` and are skipped by the head-of-line check, so one
# unanswered question never stops the rest of the case (including the request itself) from reaching
# the people who must answer it.
HOLD_KIND = "held"
HoldCheck = Callable[[Store, Entry], "Hold | None"]


def backoff_delay(attempts: int, settings: WorkerSettings, rng: random.Random | None = None) -> float:
    """Full-jitter-ish exponential backoff: base·2^(n-1), capped, scaled by a random 0.5–1.0."""
    raw = min(settings.max_delay, settings.base_delay * (2 ** max(attempts - 1, 0)))
    return raw * (0.5 + 0.5 * (rng or random).random())


class Worker:
    """Background delivery for one process. Any number of processes may run one (PostgreSQL)."""

    def __init__(
        self,
        store: Store,
        backends: Mapping[str, Backend],
        settings: WorkerSettings | None = None,
        *,
        owner: str | None = None,
        on_event: Event | None = None,
        hold: HoldCheck | None = held_for_decision,
        hold_recheck: float = 5.0,
    ) -> None:
        self.store = store
        self.backends = dict(backends)
        self.settings = settings or WorkerSettings()
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.on_event = on_event
        self.hold = hold  # on by default: every process that delivers must honour holds
        self.hold_recheck = hold_recheck  # seconds between looks for the human's answer
        self._stop = threading.Event()
        self._wake = {name: threading.Condition() for name in self.backends}
        self._paused_until: dict[str, float] = {}
        self._threads: list[threading.Thread] = []
        self._bind_locks: dict[tuple[str, str], threading.Lock] = {}
        self._bind_locks_guard = threading.Lock()
        self._bound: dict[tuple[str, str], ThreadRef] = {}  # (backend, case id) -> its thread, once bound
        # deliveries in flight: id -> (fencing token, set when the heartbeat found the lease lost)
        self._inflight: dict[int, tuple[int, threading.Event]] = {}
        self._inflight_lock = threading.Lock()
        self._heartbeat: threading.Thread | None = None
        self.lost_leases = 0  # results dropped because another claim took the row over
        self.delivered = 0  # deliveries this worker finished (any outcome), for its stop report
        self.empty_claims = 0  # claims that found nothing, so their lane went idle
        self.checkpoint_every = 60.0  # seconds between checkpoints of case heads (sharedctx.verify)
        self._next_checkpoint = time.monotonic() + self.checkpoint_every

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> Worker:
        for name in self.backends:
            for i in range(self.settings.concurrency):
                t = threading.Thread(target=self._lane, args=(name,), name=f"sharedctx-{name}-{i}", daemon=True)
                t.start()
                self._threads.append(t)
        return self

    def stop(self, timeout: float = 5.0) -> int:
        """Drain: claim nothing more, let every delivery in flight finish (up to `timeout` seconds).

        A delivery in flight always ends in a fenced state change that gives its lease back (delivered,
        rescheduled, released or buried), so after a complete drain this process holds no lease and another
        worker can claim the rest at once. Returns how many deliveries were still in flight when `timeout`
        ran out: those are never released early (their request may still land; an early release would let
        another worker send a second copy before the first arrives). Their leases run out as after a
        `kill -9`, and the next claim reconciles by `lookup` (`sent_possibly`)."""
        self._stop.set()
        self.wake()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._threads.clear()
        with self._inflight_lock:
            return len(self._inflight)

    @property
    def running(self) -> bool:
        return bool(self._threads) and not self._stop.is_set()

    def wake(self, backend: str | None = None) -> None:
        """Tell one idle lane per backend there is work (called by `record()` in this process).

        One, not all: a lane that finds work wakes a sibling (see `_lane`), so a backlog ramps up
        to `concurrency` while a single new entry costs one thread switch, not `concurrency`.
        """
        for name, cond in self._wake.items():
            if backend is None or backend == name:
                with cond:
                    cond.notify()

    # -- one lane ---------------------------------------------------------------------------------
    def _lane(self, name: str) -> None:
        worked = False
        while not self._stop.is_set():
            try:
                worked = self.step(name, probe=not worked)
            except Exception:  # the store itself failed; never let a lane die silently
                log.exception("delivery lane %s failed; retrying in a moment", name)
                worked = False
            if worked:
                self.wake(name)  # there may be more: bring in a sibling
            else:
                self._checkpoint()
                self._idle(name)

    def _checkpoint(self) -> None:
        """Now and then, one idle lane records the case heads that moved (truncation evidence, in batches)."""
        now = time.monotonic()
        with self._inflight_lock:
            if now < self._next_checkpoint:
                return
            self._next_checkpoint = now + self.checkpoint_every
        try:
            self.store.write_checkpoint()
        except Exception:
            log.exception("could not write a checkpoint of case heads; the next one will include them")

    def _idle(self, name: str) -> None:
        wait = self.settings.poll_interval
        paused = self._paused_until.get(name, 0.0) - time.time()
        if paused > 0:
            wait = min(paused, 5.0)
        cond = self._wake[name]
        with cond:
            if not self._stop.is_set():
                cond.wait(wait)

    def step(self, name: str, *, probe: bool = True) -> bool:
        """Claim and deliver at most one due delivery for backend `name`. True if one was handled.

        `probe` first asks, with a read, whether anything is due, so idle lanes never contend for the write
        lock (SQLite) to find out; a lane that has just delivered skips it and claims at once. A stopped
        backend has nothing claimable (the claim query checks its state)."""
        if self._paused_until.get(name, 0.0) > time.time():
            return False
        if probe and not self.store.has_due(name):
            return False
        claimed = self.store.claim(name, self.owner, 1, self.settings.lease_seconds)
        for d in claimed:
            self._deliver(self.backends[name], d)
        self.delivered += len(claimed)
        self.empty_claims += not claimed
        return bool(claimed)

    def run_once(self, max_rounds: int = 10_000) -> int:
        """Deliver everything due now, in this thread (for `outbox deliver --once` and tests)."""
        handled = 0
        for _ in range(max_rounds):
            progressed = False
            for name in self.backends:
                if self.step(name):
                    handled += 1
                    progressed = True
            if not progressed:
                break
        return handled

    # -- leases -----------------------------------------------------------------------------------
    def _beat(self) -> None:
        """Renew the lease of every delivery in flight, every third of a lease; exit when none is left."""
        interval = max(0.01, self.settings.lease_seconds / 3)
        while True:
            time.sleep(interval)
            with self._inflight_lock:
                flying = list(self._inflight.items())
                if not flying:
                    self._heartbeat = None  # under the lock: `_in_flight` starts a new one when needed
                    return
            for delivery_id, (token, lost) in flying:
                try:
                    if not self.store.renew_lease(delivery_id, token, self.settings.lease_seconds):
                        lost.set()
                except Exception:  # the store is failing; the final fenced mark will say what happened
                    log.exception("could not renew the lease on delivery %s", delivery_id)

    def _in_flight(self, d: Delivery) -> threading.Event:
        lost = threading.Event()
        with self._inflight_lock:
            self._inflight[d.id] = (d.lease_token, lost)
            if self._heartbeat is None:
                self._heartbeat = threading.Thread(target=self._beat, name="sharedctx-lease-heartbeat", daemon=True)
                self._heartbeat.start()
        return lost

    def _landed(self, d: Delivery) -> None:
        with self._inflight_lock:
            self._inflight.pop(d.id, None)

    def _fenced(self, d: Delivery, changed: bool, what: str) -> bool:
        """Report a state change that found the lease taken over: the result is dropped, never re-marked."""
        if not changed:
            self.lost_leases += 1
            log.warning("delivery %s to %s: lease lost before it could be %s; another claim owns it now",
                        d.id, d.backend, what)
            self._emit("lost", d, f"lease lost before it could be {what}")
        return changed

    # -- one delivery -----------------------------------------------------------------------------
    def _thread(self, backend: Backend, case_id: str) -> ThreadRef:
        """The case's thread on `backend`: bound once, then remembered (a binding never changes)."""
        known = self._bound.get((backend.name, case_id))
        if known is not None:
            return known
        thread = self._bind(backend, self.store.get_case(case_id))
        if len(self._bound) >= 100_000:  # a long-lived worker: forget old cases rather than grow forever
            self._bound.clear()
        self._bound[(backend.name, case_id)] = thread
        return thread

    def _bind(self, backend: Backend, case: CaseRecord) -> ThreadRef:
        bound = case.bindings.get(backend.name)
        if bound:
            return ThreadRef.model_validate(bound)
        with self._bind_locks_guard:
            lock = self._bind_locks.setdefault((backend.name, case.id), threading.Lock())
        # Two lanes binding the same case must not create two threads; the lock is per (backend,
        # case) so a backend that hangs in bind() holds up nobody else. Across processes, only the
        # holder of the case's head delivery binds, and `bind` itself finds a thread created by an
        # attempt that died (the contract in backends/base.py).
        with lock:
            fresh = self.store.get_case(case.id).bindings.get(backend.name)
            if fresh:
                return ThreadRef.model_validate(fresh)
            thread = backend.bind(case)
            self.store.set_binding(case.id, backend.name, thread.model_dump(mode="json"))
            return thread

    def _send(self, backend: Backend, d: Delivery, entry: Entry, lost: threading.Event) -> ExternalRef:
        """The only code that talks to a backend about a delivery (see the module docstring)."""
        if not self.store.mark_attempted(d.id, d.lease_token):
            raise LeaseLost(f"delivery {d.id}: claimed by another worker before it was sent")
        thread = self._thread(backend, d.case_id)
        ref = backend.lookup(thread, entry.id) if d.sent_possibly else None
        if ref is None:
            if lost.is_set():
                raise LeaseLost(f"delivery {d.id}: lease lost while binding; not sending")
            ref = backend.append(thread, entry)
        if entry.kind == EntryKind.RESOLUTION:
            backend.resolve(thread, entry)  # idempotent by contract: a second resolve is a no-op
        return ref

    def _deliver(self, backend: Backend, d: Delivery) -> None:
        name = backend.name
        token = d.lease_token
        lost = self._in_flight(d)
        started = time.perf_counter()
        try:
            entry = self.store.get_entry(d.entry_id)
            held = self.hold(self.store, entry) if self.hold is not None else None
            if held is not None:
                self._hold(d, held)
                return
            with span("sharedctx.deliver", entry.trace_id, {"sharedctx.backend": name, "sharedctx.case_id": d.case_id,
                      "sharedctx.entry_id": d.entry_id, "sharedctx.attempt": d.attempts}):  # fmt: skip
                ref = self._send(backend, d, entry, lost)
        except LeaseLost as exc:
            self._fenced(d, False, f"sent ({exc})")
        except AuthFailed as exc:
            reason = str(exc)
            self.store.set_backend_state(name, "stopped", reason)
            if self._fenced(d, self.store.release(d.id, error=reason, kind="auth", token=token), "released"):
                log.error("backend %s stopped: %s (fix the credentials, then `sharedctx outbox retry --backend %s`)",
                          name, reason, name)
                self._emit("stopped", d, reason)
        except Rejected as exc:
            if self._fenced(d, self.store.mark_dead(d.id, error=str(exc), kind="rejected", token=token), "buried"):
                log.warning("delivery %s to %s rejected, moved to dead letters: %s", d.id, name, exc)
                self._emit("dead", d, str(exc))
        except Paced as exc:  # nothing was sent: wait for the slot, uncounted (see `Paced`)
            self._paused_until[name] = max(self._paused_until.get(name, 0.0), time.time() + (exc.retry_after or 0.0))
            self._put_back(d, str(exc), "paced", exc.retry_after or 0.0)
        except Retryable as exc:
            kind = "ambiguous" if isinstance(exc, Ambiguous) else "retryable"
            if exc.retry_after is not None:
                self._paused_until[name] = max(self._paused_until.get(name, 0.0), time.time() + exc.retry_after)
            self._retry_or_bury(d, str(exc), kind, exc.retry_after)
        except Exception as exc:  # a bug or an unclassified failure: retry, but say exactly what it was
            self._retry_or_bury(d, f"{type(exc).__name__}: {exc}", "error", None)
        else:
            if self._fenced(d, self.store.mark_delivered(d.id, ref.model_dump(mode="json"), token=token), "marked"):
                self._emit("delivered", d, ref.url or ref.id)
        finally:
            self._landed(d)
            DELIVERY_SECONDS.labels(name).observe(time.perf_counter() - started)

    def _hold(self, d: Delivery, held: Hold) -> None:
        """Park a held delivery (uncounted) and look again later; a declined one goes to dead letters."""
        token = d.lease_token
        if held.final:
            if self._fenced(d, self.store.mark_dead(d.id, error=held.reason, kind="declined", token=token), "buried"):
                log.info("delivery %s to %s not sent: %s", d.id, d.backend, held.reason)
                self._emit("dead", d, held.reason)
            return
        if self._put_back(d, held.reason, HOLD_KIND, self.hold_recheck):
            self._emit("held", d, held.reason)

    def _put_back(self, d: Delivery, reason: str, kind: str, delay: float) -> bool:
        """Give a claimed delivery back, due again after `delay` and with its attempt uncounted (nothing
        was sent: held for a person, or waiting for our own rate budget); False if the lease was lost."""
        if not self._fenced(d, self.store.reschedule(d.id, error=reason, kind=kind, delay=delay,
                                                     token=d.lease_token), kind):  # "held" / "paced"
            return False
        self.store.release(d.id, error=reason, kind=kind, token=d.lease_token)  # after: not due in between
        return True

    def _retry_or_bury(self, d: Delivery, error: str, kind: str, retry_after: float | None) -> None:
        token = d.lease_token
        if d.attempts >= self.settings.max_attempts:
            reason = f"gave up after {d.attempts} attempts; last error: {error}"
            if self._fenced(d, self.store.mark_dead(d.id, error=reason, kind=kind, token=token), "buried"):
                log.warning("delivery %s to %s moved to dead letters: %s", d.id, d.backend, reason)
                self._emit("dead", d, reason)
            return
        delay = retry_after if retry_after is not None else backoff_delay(d.attempts, self.settings)
        if self._fenced(d, self.store.reschedule(d.id, error=error, kind=kind, delay=delay, token=token),
                        "rescheduled"):
            log.info("delivery %s to %s failed (%s), retrying in %.1fs: %s", d.id, d.backend, kind, delay, error)
            self._emit("retry", d, error, kind)

    def _emit(self, what: str, d: Delivery, detail: str, kind: str | None = None) -> None:
        """Every delivery outcome passes here: the one place it is counted (`sharedctx_delivery_outcomes`)."""
        delivery_outcome(d.backend, what, kind)
        if self.on_event is not None:
            try:
                self.on_event(what, d, detail)
            except Exception:
                log.exception("delivery event handler failed")


class BackendDrain(BaseModel):
    """Where one backend's deliveries stand after a drain."""

    backend: str
    delivered: int = 0
    pending: int = Field(0, description="still to deliver (not held)")
    held: int = Field(0, description="waiting for a human decision before delivery")
    dead: int = Field(0, description="dead letters that need an operator (`outbox list --dead`)")
    declined: int = Field(0, description="dead letters a human declined on purpose; never to be delivered")
    stopped: bool = False
    reason: str | None = None

    @property
    def settled(self) -> bool:
        return self.pending == 0 and self.dead == 0 and not self.stopped


class DrainReport(BaseModel):
    """What `drain()` left behind, per backend. Truthy only when nothing deliverable is left undelivered:
    no pending row, no dead letter an operator must look at, no stopped backend. Held and declined entries
    wait for (or were refused by) a person, so they do not make the report falsy."""

    backends: list[BackendDrain] = Field(default_factory=list)
    timed_out: bool = False

    def __bool__(self) -> bool:
        return all(b.settled for b in self.backends)

    def summary(self) -> str:
        parts = []
        for b in self.backends:
            state = f"stopped ({b.reason})" if b.stopped else "running"
            parts.append(f"{b.backend}: {b.delivered} delivered, {b.pending} pending, {b.held} held, "
                         f"{b.dead} dead, {b.declined} declined; {state}")
        return "; ".join(parts) or "no backends"
