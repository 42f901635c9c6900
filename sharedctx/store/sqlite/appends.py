"""SQLite's write path for `record()`: group commit, one statement per batch.

SQLite has one writer at a time, and Python runs one thread at a time. What several threads recording at once
can overlap is SQLite's own work (the GIL is released inside each call into SQLite) with the callers' Python
(validation, redaction, serialisation, hashing). So the write path is built to keep SQLite busy and to call
into it as rarely as possible:

- A batch is ONE statement, `INSERT INTO entry_appends VALUES (...), (...)` (migration 0019): the write lock,
  every entry with its search row, outbox rows and case head, and the COMMIT happen in one call, during which
  the writing thread needs no GIL. Five or more calls per append, each waiting to get the GIL back from a thread
  that is busy preparing, was what made four threads slower than one.
- Each caller places its own entry on the chain before it queues, from a cache of case heads, so the writer
  does no Python per entry. The cache is optimistic; the statement's guard refuses an entry placed on anything
  but the case's current head, and then the batch is written again the careful way (`_write_each`: heads read
  inside `BEGIN IMMEDIATE`, one SAVEPOINT per append). Another process, or another write path, costs a retry,
  never a forked chain.
- A lone caller (nobody else inside `append`) writes its own batch: no hand-off, no thread wake-up. With other
  callers about, the writer thread writes, so that no caller spends its turn inside SQLite instead of preparing
  (when the first caller in line wrote for the others, 2 threads recorded 2,701/s against one thread's 3,536/s).
- While callers are still preparing, the writer takes at most half of the callers in `append` per batch, and the
  others prepare while SQLite writes it. Taking the whole queue left every caller waiting on the same write with
  nobody holding the GIL (batches of 3 then 1 with 4 threads); halves keep both the GIL and SQLite busy. With
  nobody left preparing, the whole queue goes in one batch.

- The journal's files are looked at (`stat`) before a batch and again after it (`_still_ours`, `_after_write`).
  Each look hands the GIL away, and the writer thread then waits for a caller to give it back: the look before a
  batch, just after the previous batch's callers were woken, cost four threads about a fifth of their throughput.
  So it is skipped when a look taken after every one of the batch's appends was queued found both files ours
  (`_looked_upto`): a deletion or a replacement that came before any of those `record()` calls would have been
  seen by it. The look after each batch, which decides what is acknowledged, is never skipped.

What does not change: `append` returns only after the COMMIT that holds its entry; a failed append fails only its
own caller; a failure of the write itself fails every caller of that batch, none of them acknowledged.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ...errors import StoreError
from ...model import CaseStatus, Entry, EntryDraft
from ..sql import ENTRY_COLS, PreparedAppend, head_after
from ..sql.common import placed_entry_params
from ..sql.journal import CASE_HEAD
from .files import append_error, copy_error

if TYPE_CHECKING:
    from .store import SQLiteStore

_ENTRY_COLUMNS = [col.strip() for col in ENTRY_COLS.split(",")] + ["evidence_text"]
_APPEND_COLUMNS = [*_ENTRY_COLUMNS, "backends", "queued_at", "head_status", "head_resolved_at", "new_status",
                   "new_resolved_at"]
_APPEND = f"INSERT INTO entry_appends ({', '.join(_APPEND_COLUMNS)}) VALUES "
_APPEND_ROW = "(" + ",".join("?" * len(_APPEND_COLUMNS)) + ")"
_INTERRUPTED = "the write was interrupted before it committed; nothing was recorded"
_UNKNOWN = ("the write was interrupted and the journal could not be asked whether it committed: the entry may or "
            "may not be recorded; check with `sharedctx verify`")


def _wake_all(batch: list[_Pending], error: BaseException | None = None) -> None:
    """Settle and wake every one of `batch`, even when an interrupt lands in the middle (then re-raised)."""
    interrupted: BaseException | None = None
    for p in batch:
        while not p.done:
            try:
                p.finish(copy_error(error) if error is not None else None)
            except BaseException as exc:  # a signal: finish this one and the rest, then let it go on
                interrupted = interrupted or exc
    if interrupted is not None:
        raise interrupted


class _Placed(NamedTuple):
    """An entry placed on its case's cached head, and its row for `entry_appends`."""

    entry: Entry
    row: list[Any]


class _Pending:
    """One caller's append in the queue: what it is, then its outcome. `gate` is released once, when the
    outcome is known (a bare lock is the cheapest way to park one thread and wake exactly that one)."""

    __slots__ = ("attempt", "done", "entry", "error", "gate", "number", "owner", "placed", "prepared")

    def __init__(self, prepared: PreparedAppend) -> None:
        self.prepared = prepared
        self.number = 0  # its place in the order of queueing (`GroupCommit._queued`), once queued
        self.placed: _Placed | None = None
        self.attempt: Entry | None = None  # what the careful way last placed for it (see `_settle`)
        self.owner = threading.get_ident()
        self.entry: Entry | None = None
        self.error: BaseException | None = None
        self.done = False
        self.gate = threading.Lock()
        self.gate.acquire()

    @property
    def case_id(self) -> str:
        return self.prepared.entry.draft.case_id

    def finish(self, error: BaseException | None = None) -> None:
        """Settle the outcome (an error only if there is none yet) and wake the caller, once."""
        if self.done:
            return
        if self.entry is None and self.error is None:
            self.error = error or StoreError(_INTERRUPTED)
        self.done = True
        self.gate.release()

    def result(self) -> Entry:
        if self.error is not None:
            raise self.error
        assert self.entry is not None
        return self.entry


class GroupCommit:
    """The append queue of one `SQLiteStore` (see the module docstring).

    Who writes is `_writer`: None (nobody: the next caller will), the `_Pending` of the caller writing now (so
    that caller, interrupted, can tell the role is its own), or "thread" (the writer thread). Every way out of
    a writer's turn — done, handed over, interrupted, a thread that would not start — leaves the role with
    someone who will write the queue or settles every queued append, so nobody waits forever."""

    MAX_BATCH = 45  # 22 values a row: one statement stays under SQLite's oldest variable limit (999)
    HEADS_KEPT = 10_000  # cached case heads; past this the cache starts over (a miss costs one SELECT)

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        # Guards everything below. Re-entrant: a signal handler on a thread that holds it (SIGTERM → close())
        # must not deadlock on its own lock.
        self._group = threading.RLock()
        self._wake = threading.Condition(self._group)  # the writer thread waits here for work; close() for the end
        self._queue: list[_Pending] = []
        self._inflight: list[_Pending] = []  # the batch a writing caller took and has not settled yet
        self._writer: _Pending | str | None = None
        self._thread: threading.Thread | None = None
        self._closing = False
        self._heads: dict[str, list[Any]] = {}  # case id -> [last_seq, last_hash, status, resolved_at], as queued
        self._present: set[object] = set()  # a token per caller inside `append` (add/discard: atomic, no lock)
        self._queued = 0  # appends queued so far: each one's `number`
        self._looked_upto = 0  # every append numbered up to this was queued before a look that found the files ours

    def append(self, draft: EntryDraft, backends: Sequence[str], status: CaseStatus | None) -> Entry:
        token = object()
        try:
            self._present.add(token)
            return self._append(draft, backends, status)
        finally:
            self._present.discard(token)

    def _append(self, draft: EntryDraft, backends: Sequence[str], status: CaseStatus | None) -> Entry:
        me = _Pending(self.store._prepare_append(draft, backends, status))
        head = None if me.case_id in self._heads else self._read_head(me.case_id)
        try:
            with self._group:
                if head is not None:
                    if len(self._heads) >= self.HEADS_KEPT:
                        self._heads.clear()
                    self._heads.setdefault(me.case_id, head)
                me.placed = self._place(me.prepared)
                self._queued += 1
                me.number = self._queued
                self._queue.append(me)
                if self._writer is None:  # alone: write it ourselves; else the thread writes (module docstring)
                    if len(self._present) > 1 and not self._closing and self._start_thread():
                        self._set_writer("thread")
                    else:
                        self._writer = me
            if self._writer is me:  # only we set it to `me`, and nobody else changes it until we let go
                self._lead(me)
            else:
                me.gate.acquire()  # released by whoever writes our batch
        except BaseException:
            try:
                self._interrupted(me)
            except BaseException:  # a second interrupt while the first is handled: hand over again
                self._interrupted(me)
            raise
        return me.result()

    def close(self) -> None:
        """Let whoever writes finish what is queued, then stop the writer thread."""
        with self._group:
            self._closing = True
            self._wake.notify_all()
            writer = self._writer
            if not (isinstance(writer, _Pending) and writer.owner == threading.get_ident()):
                # (the writing caller's own thread — a signal handler — cannot wait for itself)
                self._wake.wait_for(lambda: self._writer is None, timeout=30)
            thread = self._thread
        if thread is not None and thread.ident is not None:
            thread.join(30)

    def _lead(self, me: _Pending) -> None:
        """Write on the calling thread, batch after batch, until the queue is empty or the writer thread took it."""
        batch: list[_Pending] = []
        while True:
            with self._group:
                self._inflight = []
                if not self._queue:
                    self._set_writer(None)
                    return
                # After our own batch, others queued: the writer thread drains, we go back to work. Closing, or
                # no thread to be had: we finish the queue ourselves.
                if batch and not self._closing and self._start_thread():
                    self._set_writer("thread")
                    return
                batch = self._inflight = self._take()  # `_interrupted` settles it if we never get to
            self._write(batch)

    def _interrupted(self, me: _Pending) -> None:
        """A caller left `append` by an exception (KeyboardInterrupt, SystemExit, a failure before queueing)."""
        with self._group:
            if me in self._queue:  # never taken: never written, never will be (taken: its writer settles it)
                self._queue.remove(me)
                me.finish()
            if self._writer is not me:
                return
            inflight = self._inflight  # cleared only once settled: a second interrupt settles it again
        self._settle_all(inflight)  # taken by us: committed or not, each caller is told which, and woken
        while True:
            with self._group:
                self._inflight = []  # settled and woken (the batch above, or the queue failed below)
                if self._writer is not me:
                    return
                if not self._queue:
                    self._set_writer(None)
                    return
                if not self._closing and self._start_thread():
                    self._set_writer("thread")
                    return
                # Out of the queue first: nobody writes what we fail. In flight until woken, and the role still
                # ours, so that a second interrupt (which runs this again) wakes them and gives the role back.
                queued, self._queue = self._queue, []
                self._inflight = queued
            _wake_all(queued, StoreError("the append was not written: the caller writing its batch was "
                                         "interrupted and no writer thread could take over; nothing was recorded"))

    # -- under self._group ------------------------------------------------------------------------
    def _place(self, p: PreparedAppend) -> _Placed | None:
        """Place `p` on its case's head as cached (including what is queued before it) and move the head on.
        None when the head is unknown here (an unknown case, or a read that failed): `_write_each` says why."""
        head = self._heads.get(p.entry.draft.case_id)
        if head is None:
            return None
        entry = p.entry.place(head[0] + 1, head[1])
        params = placed_entry_params(entry, p.params, p.entry.ts_text)
        status, resolved_at = head_after(head[2], head[3], p.status, params["ts"])
        row = [params[col] for col in _ENTRY_COLUMNS]
        row += [json.dumps(p.backends), time.time(), head[2], head[3], status, resolved_at]
        head[:] = [entry.seq, entry.hash, status, resolved_at]
        return _Placed(entry, row)

    def _take(self) -> list[_Pending]:
        """The next batch. While other callers are still preparing, at most half of the callers inside `append`:
        the rest prepare while SQLite writes (see the module docstring); with nobody preparing, everything."""
        n = self.MAX_BATCH
        if len(self._present) > len(self._queue):
            n = min(n, max(1, len(self._present) // 2))
        batch = self._queue[:n]
        del self._queue[:n]
        return batch

    def _set_writer(self, writer: _Pending | str | None) -> None:
        self._writer = writer
        self._wake.notify_all()  # the thread, when it is handed the queue; close(), when nobody writes any more

    def _start_thread(self) -> bool:
        """The writer thread, running (started now if need be); False if none can be started."""
        if self._thread is not None and self._thread.is_alive():
            return True
        before, self._thread = self._thread, threading.Thread(target=_drain, args=(weakref.ref(self), self._wake),
                                                              name="sharedctx-writer", daemon=True)
        try:  # known before it starts: an interrupt inside start() must not lead to a second one
            self._thread.start()  # it blocks on self._group (held by our caller) until it is handed the queue
        except RuntimeError:  # "can't start new thread": at the thread limit, or at interpreter shutdown
            self._thread = before
            return False
        return True

    # -- writing -----------------------------------------------------------------------------------
    def _drain_turn(self) -> bool:
        """One turn of the writer thread (see `_drain`): write one batch of the queue. False: end the thread."""
        batch: list[_Pending] = []
        try:
            with self._group:
                if self._writer != "thread":  # closing, and nothing handed over: end; else not ours yet: wait
                    return not self._closing
                batch = self._take()
                if not batch:
                    self._set_writer(None)
                    return True
            self._write(batch)  # settles every append of the batch and wakes its caller, whatever happens
        except BaseException as exc:  # not a signal (those reach the main thread): whatever it was, the
            self._settle_all(batch)  # batch is settled, the queue failed, and the role given back
            queued: list[_Pending] = []
            with self._group:
                if self._writer == "thread":
                    queued, self._queue = self._queue, []
                    self._set_writer(None)
            _wake_all(queued, StoreError(f"the writer thread failed ({exc!r}); nothing was recorded"))
        return True

    def _read_head(self, case_id: str) -> list[Any] | None:
        try:
            rows = self.store._q(CASE_HEAD, (case_id,))
        except sqlite3.Error:
            return None  # `_write_each` reads it again inside its transaction and names the failure
        return list(rows[0]) if rows else None

    def _write(self, batch: list[_Pending]) -> None:
        """Write `batch`; set each one's entry (only once committed) or error, and wake its caller."""
        batch = [p for p in batch if not p.done]  # settled already (failed by an interrupted writer): never written
        try:
            placed = [p for p in batch if p.placed is not None]
            if placed and not self._write_placed(placed):
                with self._group:  # a head moved under the cache (or a row failed): forget, and write carefully
                    for p in batch:
                        self._heads.pop(p.case_id, None)
            careful = [p for p in batch if p.entry is None]
            if careful:
                self._write_each(careful)
                with self._group:
                    for p in careful:
                        self._heads.pop(p.case_id, None)
        except Exception as exc:
            err = append_error(self.store.url, exc)
            for p in batch:
                if p.entry is None and p.error is None:  # nothing of it committed: nobody is told it was
                    p.error, err = err, copy_error(err)
        finally:
            self._settle_all(batch)

    def _settle_all(self, batch: list[_Pending]) -> None:
        """Every append of `batch` gets its outcome and its caller is woken, whatever happens meanwhile."""
        left: BaseException | None = None  # what the callers the journal could not answer for are told
        try:
            if any(p.entry is None and p.error is None for p in batch):
                left = StoreError(_UNKNOWN)  # until the journal has answered
                left = self._settle(batch)  # a BaseException (KeyboardInterrupt) stopped the write: ask the journal
        finally:
            _wake_all(batch, left)

    def _settle(self, batch: list[_Pending]) -> BaseException | None:
        """After an interrupt: which of the batch's entries did commit (a statement or a COMMIT may have finished
        just before the signal was raised)? Those callers get their entry. Returns what the rest are told:
        None ("nothing was recorded", now checked), or the reason the journal could not say."""
        tried: dict[str, tuple[_Pending, Entry]] = {}
        for p in batch:
            attempt = p.attempt or (p.placed.entry if p.placed is not None else None)
            if attempt is not None and p.entry is None and p.error is None:
                tried[attempt.id] = (p, attempt)
        if not tried:
            return None
        store = self.store
        try:
            with store._lock:
                store._rollback_leftover()  # rows of a transaction still open were never committed
                store._after_write()  # in the journal at our path, or nothing is acknowledged (says which)
                rows = store._conn.execute(
                    f"SELECT id FROM entries WHERE id IN ({','.join('?' * len(tried))})", list(tried)).fetchall()
        except StoreError as exc:
            return exc
        except sqlite3.Error as exc:
            return StoreError(f"{_UNKNOWN} ({exc})")
        for (entry_id,) in rows:
            p, entry = tried[entry_id]
            p.entry = entry
        return None

    def _write_placed(self, placed: list[_Pending]) -> bool:
        """The fast way: one statement, its own transaction. False, with nothing written, when SQLite refused
        it (the guard on a case head, a constraint, a trigger)."""
        rows = [value for p in placed if p.placed is not None for value in p.placed.row]
        sql = _APPEND + ",".join([_APPEND_ROW] * len(placed))
        store = self.store
        # A look at the files taken after every one of these was queued found them ours: a deletion or a
        # replacement that came before any of these `record()` calls would have been seen by it (module docstring).
        looked = max(p.number for p in placed) <= self._looked_upto
        with store._lock:
            store._rollback_leftover()  # the statement must be its own transaction, not join a forgotten one
            if not looked:
                store._still_ours()  # a journal known to be gone is not written at all
            try:
                store._conn.execute(sql, rows)
            except sqlite3.Error:
                return False
            queued = self._queued  # read before the look: these were all queued before it
            if store._after_write([p.placed.entry.id for p in placed if p.placed is not None]):  # nor one replaced
                self._looked_upto = queued
        for p in placed:
            assert p.placed is not None
            p.entry = p.placed.entry
        return True

    def _write_each(self, batch: list[_Pending]) -> None:
        """The careful way: one transaction, heads read inside it, each append in its own SAVEPOINT, so that a
        bad one fails alone and says why. A lone append needs no savepoint."""
        store = self.store
        written: list[tuple[_Pending, Entry]] = []
        with store._tx() as c:
            if len(batch) == 1:
                batch[0].attempt = entry = store._write_append(c, batch[0].prepared)
                written.append((batch[0], entry))
            else:
                for p in batch:
                    c.execute("SAVEPOINT sharedctx_append")
                    try:
                        p.attempt = entry = store._write_append(c, p.prepared)
                        written.append((p, entry))
                    except Exception as exc:
                        # Undo this append only. If even that fails, the transaction is broken: the exception
                        # leaves the loop, and `_write` fails the rest of the batch.
                        c.execute("ROLLBACK TO sharedctx_append")
                        p.error = append_error(store.url, exc)
                    c.execute("RELEASE sharedctx_append")
        for p, entry in written:  # committed: now, and only now, each caller gets its entry
            p.entry = entry


_IDLE_LOOK = 1.0  # seconds between an idle writer thread's looks at whether its store is still there


def _drain(ref: weakref.ref[GroupCommit], wake: threading.Condition) -> None:
    """The writer thread: write what is queued, batch after batch, for as long as its store lives. While idle it
    holds the queue only through `ref`, so a store dropped without close() is collected, and the thread ends."""
    while True:
        with wake:
            while True:
                group = ref()
                if group is None:
                    return
                if group._writer == "thread" or group._closing:
                    break
                del group
                wake.wait(_IDLE_LOOK)
        if not group._drain_turn():
            return
        del group
