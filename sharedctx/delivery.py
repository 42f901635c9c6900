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
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping

from .backends.base import Backend, ThreadRef
from .config import WorkerSettings
from .decisions import Hold, held_for_decision
from .errors import Ambiguous, AuthFailed, Rejected, Retryable
from .model import CaseRecord, Delivery, Entry, EntryKind
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

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> Worker:
        for name in self.backends:
            for i in range(self.settings.concurrency):
                t = threading.Thread(target=self._lane, args=(name,), name=f"sharedctx-{name}-{i}", daemon=True)
                t.start()
                self._threads.append(t)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.wake()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._threads.clear()

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
        while not self._stop.is_set():
            try:
                worked = self.step(name)
            except Exception:  # the store itself failed; never let a lane die silently
                log.exception("delivery lane %s failed; retrying in a moment", name)
                worked = False
            if worked:
                self.wake(name)  # there may be more: bring in a sibling
            else:
                self._idle(name)

    def _idle(self, name: str) -> None:
        wait = self.settings.poll_interval
        paused = self._paused_until.get(name, 0.0) - time.time()
        if paused > 0:
            wait = min(paused, 5.0)
        cond = self._wake[name]
        with cond:
            if not self._stop.is_set():
                cond.wait(wait)

    def step(self, name: str) -> bool:
        """Claim and deliver at most one due delivery for backend `name`. True if one was handled."""
        if self._paused_until.get(name, 0.0) > time.time():
            return False
        if not self.store.has_due(name):  # a read: idle lanes never contend for the write lock
            return False
        if self.store.get_backend_state(name).state == "stopped":
            return False
        claimed = self.store.claim(name, self.owner, 1, self.settings.lease_seconds)
        for d in claimed:
            self._deliver(self.backends[name], d)
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

    # -- one delivery -----------------------------------------------------------------------------
    def _thread(self, backend: Backend, case: CaseRecord) -> ThreadRef:
        bound = case.bindings.get(backend.name)
        if bound:
            return ThreadRef.model_validate(bound)
        with self._bind_locks_guard:
            lock = self._bind_locks.setdefault((backend.name, case.id), threading.Lock())
        # Two lanes binding the same case must not create two threads; the lock is per (backend,
        # case) so a backend that hangs in bind() holds up nobody else.
        with lock:
            fresh = self.store.get_case(case.id).bindings.get(backend.name)
            if fresh:
                return ThreadRef.model_validate(fresh)
            thread = backend.bind(case)
            self.store.set_binding(case.id, backend.name, thread.model_dump(mode="json"))
            return thread

    def _deliver(self, backend: Backend, d: Delivery) -> None:
        name = backend.name
        try:
            entry = self.store.get_entry(d.entry_id)
            held = self.hold(self.store, entry) if self.hold is not None else None
            if held is not None:
                self._hold(d, held)
                return
            thread = self._thread(backend, self.store.get_case(d.case_id))
            ref = None
            if d.last_error_kind == "ambiguous" or (d.attempts > 1 and entry.kind == EntryKind.RESOLUTION):
                ref = backend.lookup(thread, entry.id)
            if ref is None:
                ref = backend.append(thread, entry)
            if entry.kind == EntryKind.RESOLUTION:
                backend.resolve(thread, entry)
        except AuthFailed as exc:
            reason = str(exc)
            self.store.set_backend_state(name, "stopped", reason)
            self.store.release(d.id, error=reason, kind="auth")
            log.error("backend %s stopped: %s (fix the credentials, then `sharedctx outbox retry --backend %s`)",
                      name, reason, name)
            self._emit("stopped", d, reason)
        except Rejected as exc:
            self.store.mark_dead(d.id, error=str(exc), kind="rejected")
            log.warning("delivery %s to %s rejected, moved to dead letters: %s", d.id, name, exc)
            self._emit("dead", d, str(exc))
        except Retryable as exc:
            kind = "ambiguous" if isinstance(exc, Ambiguous) else "retryable"
            if exc.retry_after is not None:
                self._paused_until[name] = max(self._paused_until.get(name, 0.0), time.time() + exc.retry_after)
            self._retry_or_bury(d, str(exc), kind, exc.retry_after)
        except Exception as exc:  # a bug or an unclassified failure: retry, but say exactly what it was
            self._retry_or_bury(d, f"{type(exc).__name__}: {exc}", "error", None)
        else:
            self.store.mark_delivered(d.id, ref.model_dump(mode="json"))
            self._emit("delivered", d, ref.url or ref.id)

    def _hold(self, d: Delivery, held: Hold) -> None:
        """Park a held delivery (uncounted) and look again later; a declined one goes to dead letters."""
        if held.final:
            self.store.mark_dead(d.id, error=held.reason, kind="declined")
            log.info("delivery %s to %s not sent: %s", d.id, d.backend, held.reason)
            self._emit("dead", d, held.reason)
            return
        self.store.reschedule(d.id, error=held.reason, kind=HOLD_KIND, delay=self.hold_recheck)
        self.store.release(d.id, error=held.reason, kind=HOLD_KIND)  # after: not due in between
        self._emit("held", d, held.reason)

    def _retry_or_bury(self, d: Delivery, error: str, kind: str, retry_after: float | None) -> None:
        if d.attempts >= self.settings.max_attempts:
            reason = f"gave up after {d.attempts} attempts; last error: {error}"
            self.store.mark_dead(d.id, error=reason, kind=kind)
            log.warning("delivery %s to %s moved to dead letters: %s", d.id, d.backend, reason)
            self._emit("dead", d, reason)
            return
        delay = retry_after if retry_after is not None else backoff_delay(d.attempts, self.settings)
        self.store.reschedule(d.id, error=error, kind=kind, delay=delay)
        log.info("delivery %s to %s failed (%s), retrying in %.1fs: %s", d.id, d.backend, kind, delay, error)
        self._emit("retry", d, error)

    def _emit(self, what: str, d: Delivery, detail: str) -> None:
        if self.on_event is not None:
            try:
                self.on_event(what, d, detail)
            except Exception:
                log.exception("delivery event handler failed")
