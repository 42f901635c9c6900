"""Adversarial tests of SQLite group commit (`sharedctx/store/sqlite/appends.py`, migration 0019).

Each test asserts one of the write path's promises: an Entry only for a committed append and an error only for
an unrecorded one; gap-free, verifying chains whose case head (status, resolved_at, last_seq, last_hash,
updated_at) is what the one-by-one path would leave; one bad append failing alone; nobody left waiting; one
outbox row per (entry, backend); no write acknowledged into a journal that is no longer at its path.
Tests marked xfail(strict) document a bug found by this attack (see each reason).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sharedctx.errors import StoreError
from sharedctx.model import Author, Entry, EntryDraft, EntryKind
from sharedctx.store.sqlite import SQLiteStore
from sharedctx.store.sqlite import appends as appends_module

PRIMARY = Author(kind="primary", name="attacker")
WAIT = 10.0  # seconds a caller may take before it counts as left waiting forever (never a timing assertion)


def _draft(case_id: str, title: str) -> EntryDraft:
    return EntryDraft(case_id=case_id, kind=EntryKind.FINDING, title=title, body="body", author=PRIMARY)


def _case(store: SQLiteStore, title: str = "case") -> str:
    case, _ = store.open_case(title=title, service="svc", severity="warning", fingerprint=None, labels={})
    return case.id


def _until(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


class _Call:
    """One append on its own daemon thread; `outcome` is its Entry or exception, `done` whether it returned."""

    def __init__(self, fn: Callable[[], Entry]) -> None:
        self.outcome: Entry | BaseException | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Entry]) -> None:
        try:
            self.outcome = fn()
        except BaseException as exc:
            self.outcome = exc
        finally:
            self.done.set()


def _titles(db: Path, case_id: str) -> set[str]:
    """The titles committed to the journal at `db`, read through a fresh store (another process's view)."""
    other = SQLiteStore(db)
    try:
        return {e.title for e in other.entries(case_id)}
    finally:
        other.close()


# -- nobody is left waiting -------------------------------------------------------------------------------------
@pytest.mark.xfail(strict=True, reason=(
    "BUG: GroupCommit.append sets _writer='caller' and calls _take() (appends.py:112-113) OUTSIDE the try at "
    "line 117. A KeyboardInterrupt/SystemExit raised there (a signal is checked when _take is entered) leaves "
    "_writer='caller' with nobody writing: the interrupted entry stays queued and every later append on the "
    "store parks on its gate forever."))
def test_an_interrupt_as_the_lone_caller_takes_its_batch_leaves_nobody_waiting(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "journal.db")
    try:
        case_id = _case(store)
        store.append(_draft(case_id, "warm"), [])
        appends = store._appends
        real_take = appends._take
        fired: list[bool] = []

        def take() -> list[Any]:
            if not fired:  # the pending signal is raised as _take is entered (CPython checks it at a call)
                fired.append(True)
                raise KeyboardInterrupt
            return real_take()

        appends._take = take  # type: ignore[method-assign]
        with pytest.raises(KeyboardInterrupt):
            store.append(_draft(case_id, "interrupted"), [])
        appends._take = real_take  # type: ignore[method-assign]
        after = _Call(lambda: store.append(_draft(case_id, "after"), []))
        assert after.done.wait(WAIT), "an append after an interrupted lone caller waits forever"
        assert isinstance(after.outcome, Entry)
    finally:
        appends._writer = None  # let close() finish even when the bug left the store wedged
        store.close()


class _NoThreads:
    """`threading` as appends.py sees it, except that no new thread can be started (RuntimeError "can't start
    new thread": a process at its thread limit, or at interpreter shutdown)."""

    def __init__(self) -> None:
        self.Lock, self.Condition = threading.Lock, threading.Condition

    class Thread(threading.Thread):
        def start(self) -> None:
            raise RuntimeError("can't start new thread")


@pytest.mark.xfail(strict=True, reason=(
    "BUG: GroupCommit._hand_over (appends.py:166-171) sets _writer='thread' BEFORE starting the thread; when "
    "Thread.start() raises, append's except clause (line 128-133) handles neither _writer value: the queued "
    "callers park forever, every later append queues behind a writer that does not exist, and the lead caller "
    "gets the RuntimeError although its entry IS committed."))
def test_a_writer_thread_that_cannot_start_leaves_nobody_waiting(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    try:
        case_id = _case(store)
        store.append(_draft(case_id, "warm"), [])
        appends = store._appends
        monkeypatch.setattr(appends_module, "threading", _NoThreads())
        real_write = appends._write
        release = threading.Event()

        def hold(batch: list[Any]) -> None:
            if batch[0].prepared.entry.draft.title == "lead":
                release.wait(WAIT)
            real_write(batch)

        appends._write = hold  # type: ignore[method-assign]
        lead = _Call(lambda: store.append(_draft(case_id, "lead"), []))
        _until(lambda: appends._writer == "caller", "the lead to write")
        others = [_Call(lambda i=i: store.append(_draft(case_id, f"queued {i}"), [])) for i in range(3)]
        _until(lambda: len(appends._queue) == 3, "the others to queue")
        release.set()
        calls = [lead, *others]
        left = [c.outcome for c in calls if not c.done.wait(WAIT)]
        assert not left, ("callers left waiting after a failed hand-over", [c.outcome for c in calls])
        committed = _titles(db, case_id)
        for title, c in zip(["lead", "queued 0", "queued 1", "queued 2"], calls, strict=True):
            assert isinstance(c.outcome, Entry) == (title in committed), (title, c.outcome)
    finally:
        appends._writer, appends._thread = None, None  # let close() finish even when the bug wedged the store
        appends._queue.clear()
        store.close()


# -- the journal replaced mid-run ---------------------------------------------------------------------------------
class _Entering:
    """The store's connection, except that it signals `entering` just before it runs a batch statement (that
    is, after `_still_ours()` said the file is ours)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.entering = threading.Event()

    def execute(self, sql: str, params: Any = ()) -> Any:
        if sql.startswith("INSERT INTO entry_appends"):
            self.entering.set()
        return self.conn.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


@pytest.mark.xfail(strict=True, reason=(
    "BUG: _still_ours() runs BEFORE the write lock is taken (appends.py:231 _write_placed; store.py:209 _tx, "
    "before _begin). The statement then waits up to 30 s (busy_timeout / _begin's retry) for another process's "
    "write lock; if the journal is replaced meanwhile, the append is committed into the old inode and "
    "acknowledged, although the journal at the path will never hold it. Check the file after the lock is held."))
def test_a_journal_replaced_while_an_append_waits_for_the_write_lock_is_not_acknowledged(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    store, other = SQLiteStore(db), SQLiteStore(db)
    try:
        case_id = _case(store)
        store.append(_draft(case_id, "warm"), [])  # cached head: the next append goes straight to the statement
        real = store._conn
        spy = _Entering(real)
        store._conn = spy  # type: ignore[assignment]
        other._conn.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        call = _Call(lambda: store.append(_draft(case_id, "while replaced"), []))
        assert spy.entering.wait(WAIT)  # checked the file, now waiting for the lock
        os.replace(db, tmp_path / "moved.db")  # an operator restores a backup / swaps the journal
        SQLiteStore(tmp_path / "fresh.db").close()
        os.replace(tmp_path / "fresh.db", db)
        other._conn.execute("ROLLBACK")
        assert call.done.wait(WAIT)
        store._conn = real
        assert isinstance(call.outcome, StoreError), (
            f"acknowledged into the replaced journal: {call.outcome!r}")
    finally:
        store._conn = real
        other.close()
        store.close()


# -- an error means "not recorded" ------------------------------------------------------------------------------
class _HeldThenInterrupted:
    """The store's connection as the main thread's batches see it: the first batch statement waits for
    `release`; the second one commits and THEN raises KeyboardInterrupt (a signal that arrived while SQLite
    worked is raised as the call returns: the usual moment for Ctrl-C or a SIGTERM handler raising SystemExit)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.release = threading.Event()
        self.statements = 0

    def execute(self, sql: str, params: Any = ()) -> Any:
        if not sql.startswith("INSERT INTO entry_appends"):
            return self.conn.execute(sql, params)
        self.statements += 1
        if self.statements == 1:
            assert self.release.wait(WAIT)
        out = self.conn.execute(sql, params)
        if self.statements == 2:
            raise KeyboardInterrupt
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


@pytest.mark.xfail(strict=True, reason=(
    "BUG: an interrupt raised after the batch statement committed (as _write_placed's execute returns, "
    "appends.py:233, before line 236-238 set each entry) makes _write's finally (line 218-222) tell every "
    "other caller of the batch StoreError('...; nothing was recorded') although their entries ARE committed. "
    "Reached when the main thread writes others' entries: while close() is in progress (line 127)."))
def test_an_interrupt_after_the_commit_never_tells_a_caller_nothing_was_recorded(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    real = store._conn
    try:
        case_id = _case(store)
        store.append(_draft(case_id, "warm"), [])
        appends = store._appends
        conn = _HeldThenInterrupted(real)
        store._conn = conn  # type: ignore[assignment]

        def orchestrate() -> None:  # while the main thread writes its own batch: others queue, then close()
            _until(lambda: conn.statements == 1, "the main thread's batch")
            others.extend(_Call(lambda i=i: store.append(_draft(case_id, f"other {i}"), [])) for i in range(3))
            _until(lambda: len(appends._queue) == 3, "the others to queue")
            appends.close()  # SQLiteStore.close()'s first step (the rest waits for the connection's lock)
            conn.release.set()

        others: list[_Call] = []
        helper = threading.Thread(target=orchestrate, daemon=True)
        helper.start()
        with pytest.raises(KeyboardInterrupt):
            store.append(_draft(case_id, "main"), [])
        helper.join(WAIT)
        assert others and all(c.done.wait(WAIT) for c in others)
        store._conn = real
        committed = _titles(db, case_id)
        for i, c in enumerate(others):
            recorded = f"other {i}" in committed
            assert isinstance(c.outcome, Entry) == recorded, (f"other {i}", recorded, c.outcome)
    finally:
        store._conn = real
        store.close()
