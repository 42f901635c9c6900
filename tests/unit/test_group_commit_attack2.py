"""Second attack on SQLite group commit (`sharedctx/store/sqlite/appends.py`): the fixes of the first attack, and
what it did not try.

Interrupts are modelled where CPython raises them: a pending signal is raised as a function is entered or a
loop jumps back, so a patch that raises KeyboardInterrupt on entry (before delegating) is a signal arriving at
that call. Only the main thread gets signals, so every interrupt here hits a caller writing on the main thread.
Twelve of these found defects in the write path after the first attack's fixes (see docs/decisions.md).
"""

from __future__ import annotations

import gc
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from sharedctx.errors import StoreError
from sharedctx.model import Entry
from sharedctx.store.sqlite import SQLiteStore
from sharedctx.store.sqlite import appends as appends_module
from tests.group_commit_kit import (
    WAIT,
    _assert_told_the_truth,
    _BeforeStatement,
    _Call,
    _case,
    _draft,
    _journal,
    _journal_swap,
    _leave_a_transaction_open,
    _make_cache_stale,
    _others_join_the_leads_batch,
    _release_stuck,
    _StatFailsAfterStatement,
    _until,
)


def test_an_interrupt_as_the_lead_enters_write_leaves_nobody_of_its_batch_waiting(tmp_path: Path) -> None:
    """The lead took [lead, other 0..2] off the queue; Ctrl-C arrives as it calls `_write`. Nobody is left
    parked: each other caller gets its Entry (if written) or an error (if not)."""
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    appends = store._appends
    taken: list[Any] = []
    try:
        case_id = _case(store)
        store.append(_draft(case_id, "warm"), [])
        others = _others_join_the_leads_batch(store, case_id, 3)
        real_write = appends._write


        def write(batch: list[Any]) -> None:
            appends._write = real_write  # type: ignore[method-assign]
            taken.extend(batch)
            raise KeyboardInterrupt  # the signal, raised as `_write` is entered

        appends._write = write  # type: ignore[method-assign]
        with pytest.raises(KeyboardInterrupt):
            store.append(_draft(case_id, "lead"), ["x"])
        _assert_told_the_truth(db, case_id, {f"other {i}": c for i, c in enumerate(others)})
    finally:
        for p in taken:  # the bug leaves them where nothing reaches them
            p.finish()
        _release_stuck(store)
        store.close()


def test_an_interrupt_while_the_lead_wakes_its_batch_leaves_nobody_waiting(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch [lead, other 0..2] committed; Ctrl-C arrives in `_write`'s last loop, as the lead wakes the
    second caller (`p.finish()`). Every other caller still returns, with its committed Entry."""
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    appends = store._appends
    taken: list[Any] = []
    try:
        case_id = _case(store)
        store.append(_draft(case_id, "warm"), [])
        others = _others_join_the_leads_batch(store, case_id, 3)
        real_finish = appends_module._Pending.finish
        real_write = appends._write
        calls: list[int] = []

        def write(batch: list[Any]) -> None:
            taken.extend(batch)
            real_write(batch)

        appends._write = write  # type: ignore[method-assign]

        def finish(self: Any, error: BaseException | None = None) -> None:
            main = threading.current_thread() is threading.main_thread()
            if main and not calls and self.prepared.entry.draft.title == "other 0":
                calls.append(1)
                raise KeyboardInterrupt  # the signal, raised as `finish` is entered
            real_finish(self, error)

        monkeypatch.setattr(appends_module._Pending, "finish", finish)
        with pytest.raises(KeyboardInterrupt):
            store.append(_draft(case_id, "lead"), ["x"])
        monkeypatch.setattr(appends_module._Pending, "finish", real_finish)
        assert calls
        _assert_told_the_truth(db, case_id, {f"other {i}": c for i, c in enumerate(others)})
    finally:
        for p in taken:  # the bug leaves them where nothing reaches them
            appends_module._Pending.finish(p)
        _release_stuck(store)
        store.close()


# -- `_settle`: what the journal says after an interrupt ---------------------------------------------------------
def test_an_interrupt_after_the_careful_commit_tells_each_caller_its_committed_entry(tmp_path: Path) -> None:
    """The cache is stale (another process appended), so the batch [lead, other 0..2] is written the careful
    way (`PreparedEntry.place` mints a new id and ts each time it is placed). Ctrl-C arrives as `_tx` returns
    from its COMMIT: every other caller must be told its entry as committed, not "nothing was recorded"."""
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    try:
        case_id = _case(store)
        store.append(_draft(case_id, "warm"), [])
        _make_cache_stale(db, case_id)
        others = _others_join_the_leads_batch(store, case_id, 3)
        real_tx = store._tx

        @contextmanager
        def tx() -> Iterator[Any]:
            store._tx = real_tx  # type: ignore[method-assign]
            with real_tx() as c:
                yield c
            raise KeyboardInterrupt  # the signal, raised as the COMMIT returns

        store._tx = tx  # type: ignore[method-assign]
        with pytest.raises(KeyboardInterrupt):
            store.append(_draft(case_id, "lead"), ["x"])
        store._tx = real_tx  # type: ignore[method-assign]
        _assert_told_the_truth(db, case_id, {f"other {i}": c for i, c in enumerate(others)})
    finally:
        _release_stuck(store)
        store.close()


class _SecondInterruptOnRollback:
    """The store's connection, except that the first ROLLBACK is interrupted before it runs (a second Ctrl-C)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.fired = False

    def execute(self, sql: str, params: Any = ()) -> Any:
        if sql == "ROLLBACK" and not self.fired:
            self.fired = True
            raise KeyboardInterrupt
        return self.conn.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def test_a_second_interrupt_during_the_rollback_acknowledges_nothing_uncommitted(tmp_path: Path) -> None:
    """The careful write of [lead, other 0..2] is interrupted after two appends (inside BEGIN IMMEDIATE), and a
    second Ctrl-C hits `_tx`'s ROLLBACK, so the transaction stays open on the connection. `_settle` must not
    read the open transaction's own rows as committed: `_rollback_leftover` discards them at the next write."""
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    real_conn = store._conn
    try:
        case_id = _case(store)
        store.append(_draft(case_id, "warm"), [])
        _make_cache_stale(db, case_id)
        others = _others_join_the_leads_batch(store, case_id, 3)
        real_write_append = store._write_append
        written: list[str] = []

        def write_append(c: Any, p: Any) -> Entry:
            if len(written) == 2:
                store._write_append = real_write_append  # type: ignore[method-assign]
                raise KeyboardInterrupt  # the first Ctrl-C
            written.append(p.entry.draft.title)
            return real_write_append(c, p)

        store._write_append = write_append  # type: ignore[method-assign]
        store._conn = _SecondInterruptOnRollback(real_conn)  # type: ignore[assignment]
        with pytest.raises(KeyboardInterrupt):
            store.append(_draft(case_id, "lead"), ["x"])
        store._conn = real_conn
        assert written == ["lead", "other 0"]
        after = store.append(_draft(case_id, "after"), [])  # the next write: the leftover is rolled back
        assert after.seq == 3  # warm, foreign, after
        _assert_told_the_truth(db, case_id, {f"other {i}": c for i, c in enumerate(others)})
    finally:
        store._conn = real_conn
        _release_stuck(store)
        store.close()


# -- the journal or its WAL replaced mid-write ------------------------------------------------------------------
def test_a_wal_deleted_while_an_append_waits_for_the_write_lock_is_not_acknowledged(tmp_path: Path) -> None:
    """Like the first attack's replaced journal, but `rm journal.db-wal` while the batch statement waits for
    another process's write lock: the commit lands in the unlinked WAL (no other process sees it, a crash loses
    it), so the append must not be acknowledged."""
    db = tmp_path / "journal.db"
    store, other = SQLiteStore(db), SQLiteStore(db)
    real = store._conn
    try:
        case_id = _case(store)
        store.append(_draft(case_id, "warm"), [])
        spy = _BeforeStatement(real)
        store._conn = spy  # type: ignore[assignment]
        other._conn.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        call = _Call(lambda: store.append(_draft(case_id, "while deleted"), []))
        assert spy.entering.wait(WAIT)
        os.unlink(str(db) + "-wal")
        other._conn.execute("ROLLBACK")
        assert call.done.wait(WAIT)
        store._conn = real
        # Either refused, or copied out of the deleted WAL into the journal before it was acknowledged (the
        # store checkpoints a deleted WAL it finds after a write): what counts is that the answer is true.
        recorded = "while deleted" in _journal(db, case_id)
        assert isinstance(call.outcome, Entry) == recorded, (call.outcome, recorded)
        assert isinstance(call.outcome, Entry | StoreError), call.outcome
        with pytest.raises(StoreError):  # and nothing more is written to a journal whose log was deleted
            store.append(_draft(case_id, "after"), [])
    finally:
        store._conn = real
        other.close()
        store.close()


def test_a_journal_replaced_just_before_a_fast_statement_is_not_acknowledged(tmp_path: Path) -> None:
    """The journal is swapped after `_still_ours()` looked and before the statement runs (the caller's thread
    lost the GIL after the stat, or waited for the write lock for less than SLOW_STATEMENT). The statement
    commits into the old inode: that append must not be acknowledged."""
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    real = store._conn
    try:
        case_id = _case(store)
        store.append(_draft(case_id, "warm"), [])
        store._appends.SLOW_STATEMENT = 3600.0  # the statement counts as fast however loaded this machine is
        store._conn = _BeforeStatement(real, _journal_swap(db))  # type: ignore[assignment]
        try:
            told: Entry | BaseException = store.append(_draft(case_id, "into the old file"), [])
        except StoreError as exc:
            told = exc
        store._conn = real
        assert isinstance(told, StoreError), f"acknowledged into the replaced journal: {told!r}"
    finally:
        store._conn = real
        store.close()


class _ReplacedThenInterrupted(_BeforeStatement):
    """The batch statement commits into a journal replaced meanwhile, and a Ctrl-C is raised as it returns."""

    def execute(self, sql: str, params: Any = ()) -> Any:
        out = super().execute(sql, params)
        if sql.startswith("INSERT INTO entry_appends"):
            raise KeyboardInterrupt
        return out


def test_settle_after_an_interrupt_never_acknowledges_into_a_replaced_journal(tmp_path: Path) -> None:
    """The lead's batch [lead, other 0..2] commits into a journal replaced while it waited, and Ctrl-C comes as
    the statement returns (before the post-statement file check). `_settle` asks the journal which entries
    committed: through the old inode, it must not acknowledge them."""
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    real = store._conn
    try:
        case_id = _case(store)
        store.append(_draft(case_id, "warm"), [])
        others = _others_join_the_leads_batch(store, case_id, 3)
        store._conn = _ReplacedThenInterrupted(real, _journal_swap(db))  # type: ignore[assignment]
        with pytest.raises(KeyboardInterrupt):
            store.append(_draft(case_id, "lead"), [])
        store._conn = real
        assert all(c.done.wait(WAIT) for c in others)
        told = [c.outcome for c in others]
        assert all(isinstance(t, StoreError) for t in told), f"acknowledged into the replaced journal: {told!r}"
    finally:
        store._conn = real
        _release_stuck(store)
        store.close()


# -- the writer role: a second interrupt, a dying writer thread, close() on the writer's own thread ---------------
def test_a_second_interrupt_inside_interrupted_leaves_later_appends_writable(tmp_path: Path) -> None:
    """The lone lead is interrupted as it enters `_write`; a second Ctrl-C arrives as `_interrupted` is entered
    (before it takes the group lock). Later appends, from other threads, still return."""
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    appends = store._appends
    try:
        case_id = _case(store)
        store.append(_draft(case_id, "warm"), [])
        real_write, real_interrupted = appends._write, appends._interrupted

        def write(batch: list[Any]) -> None:
            appends._write = real_write  # type: ignore[method-assign]
            raise KeyboardInterrupt  # the first Ctrl-C

        def interrupted(me: Any) -> None:
            appends._interrupted = real_interrupted  # type: ignore[method-assign]
            raise KeyboardInterrupt  # the second Ctrl-C

        appends._write, appends._interrupted = write, interrupted  # type: ignore[method-assign]
        with pytest.raises(KeyboardInterrupt):
            store.append(_draft(case_id, "lead"), [])
        later = _Call(lambda: store.append(_draft(case_id, "later"), []))
        _assert_told_the_truth(db, case_id, {"later": later})
        assert isinstance(later.outcome, Entry)
    finally:
        _release_stuck(store)
        store.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_writer_thread_that_dies_leaves_nobody_waiting(tmp_path: Path) -> None:
    """The writer thread dies outside `_write` (here: MemoryError as it takes a batch). The callers it was to
    write, and every later caller, still return (an Entry exactly when committed)."""
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    appends = store._appends
    try:
        case_id = _case(store)
        store.append(_draft(case_id, "warm"), [])
        real_take, real_write = appends._take, appends._write
        release = threading.Event()
        died: list[bool] = []

        def take() -> list[Any]:
            if threading.current_thread().name == "sharedctx-writer" and not died:
                died.append(True)
                raise MemoryError
            return real_take()

        def hold(batch: list[Any]) -> None:
            if batch[0].prepared.entry.draft.title == "lead":
                release.wait(WAIT)
            real_write(batch)

        appends._take, appends._write = take, hold  # type: ignore[method-assign]
        lead = _Call(lambda: store.append(_draft(case_id, "lead"), []))
        _until(lambda: appends._writer not in (None, "thread"), "the lead to write")
        calls = {f"queued {i}": _Call(lambda i=i: store.append(_draft(case_id, f"queued {i}"), [])) for i in range(3)}
        _until(lambda: len(appends._queue) == 3, "the others to queue")
        release.set()
        assert lead.done.wait(WAIT)
        _until(lambda: bool(died) and appends._writer != "thread", "the writer thread to fail and give the role back")
        calls["later"] = _Call(lambda: store.append(_draft(case_id, "later"), []))
        _assert_told_the_truth(db, case_id, calls)
    finally:
        _release_stuck(store)
        store.close()


def test_close_on_the_writing_callers_own_thread_returns(tmp_path: Path) -> None:
    """A SIGTERM handler that calls `store.close()` runs on the main thread, which may be the lead, in the middle
    of `_lead` (here: as it calls `_take`, under the group lock). close() must return (it cannot wait for the
    writer: that is its own thread), and the lead's append must return too."""
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    appends = store._appends
    try:
        case_id = _case(store)
        store.append(_draft(case_id, "warm"), [])
        real_take = appends._take

        def take() -> list[Any]:
            appends._take = real_take  # type: ignore[method-assign]
            store.close()  # the signal handler
            return real_take()

        appends._take = take  # type: ignore[method-assign]
        lead = _Call(lambda: store.append(_draft(case_id, "lead"), []))
        assert lead.done.wait(WAIT), "close() called on the writer's own thread never returned"
    finally:
        if not lead.done.is_set():
            appends._writer = None  # the bug left the lead deadlocked on its own lock: free it, end its close()
            appends._group.release()
            lead.done.wait(WAIT)
        store.close()


# -- resources, close() ----------------------------------------------------------------------------------------
def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _cycle(db: Path, case_id: str, n: int, *, until_writer: bool = False) -> SQLiteStore:
    """Open a store on `db`, have 4 threads append to it at once (so that batches and a writer thread form).
    `until_writer`: again, up to 50 rounds, until a writer thread has started (4 × 3 appends usually start one,
    but whether callers overlap is up to the scheduler)."""
    store = SQLiteStore(db)
    errors: list[BaseException] = []

    def appender(t: int, r: int) -> None:
        try:
            for i in range(3):
                store.append(_draft(case_id, f"{n}-{r}-{t}-{i}"), ["x"])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    for r in range(50 if until_writer else 1):
        threads = [threading.Thread(target=appender, args=(t, r)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)
        assert not errors and not any(t.is_alive() for t in threads), errors
        if store._appends._thread is not None:
            break
    return store


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts file descriptors through /proc")
def test_200_stores_opened_written_by_4_threads_and_closed_leak_no_thread_or_descriptor(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    before = set(threading.enumerate())  # other tests' threads in this process are not ours to count

    def ours() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t not in before and t.name.startswith("sharedctx-")]

    first = SQLiteStore(db)
    case_id = _case(first)
    first.close()
    _until(lambda: not ours(), "the first store's threads to end")
    fds = _fds()
    for n in range(200):
        _cycle(db, case_id, n).close()
    _until(lambda: not ours(), "the stores' threads to end")
    # 200 leaked stores would hold 400+ descriptors; a few may come and go with other tests' threads
    _until(lambda: _fds() <= fds + 8, "the stores' files to be closed")
    gc.collect()
    alive = [o for o in gc.get_objects() if isinstance(o, SQLiteStore) and o.url == str(db) and o is not first]
    assert not alive, f"{len(alive)} closed stores kept alive"
    store = SQLiteStore(db)
    try:
        assert store.get_case(case_id).last_seq == 200 * 12
    finally:
        store.close()


def test_close_twice_from_several_callers_at_once_then_append_fails_cleanly(tmp_path: Path) -> None:
    """Four appending threads each call close() right after their last append (close() racing the others'
    appends and the writer thread, and called four times); then close() again, and an append: StoreError."""
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    case_id = _case(store)
    store.append(_draft(case_id, "warm"), [])
    calls: dict[str, _Call] = {}
    closers: list[threading.Thread] = []

    def appender(t: int) -> None:
        for i in range(30):
            title = f"{t}-{i}"
            calls[title] = _Call(lambda title=title: store.append(_draft(case_id, title), ["x"]))
            calls[title].done.wait(WAIT)
        store.close()

    closers = [threading.Thread(target=appender, args=(t,), daemon=True) for t in range(4)]
    for t in closers:
        t.start()
    for t in closers:
        t.join(4 * WAIT)
    assert not any(t.is_alive() for t in closers), "close() never returned"
    store.close()
    with pytest.raises(StoreError):
        store.append(_draft(case_id, "after close"), [])
    _assert_told_the_truth(db, case_id, calls)


def test_a_store_dropped_without_close_leaves_no_thread_behind(tmp_path: Path) -> None:
    """20 stores written by 4 threads (a writer thread started) and then dropped, never closed: once they are
    garbage, their threads (writer, checkpoints) end and their files are closed."""
    db = tmp_path / "journal.db"
    before = set(threading.enumerate())  # other tests' threads in this process (a search pool, say) are not ours

    def ours() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t not in before and t.name.startswith("sharedctx-")]

    first = SQLiteStore(db)
    case_id = _case(first)
    first.close()
    _until(lambda: not ours(), "the first store's threads to end")
    for n in range(20):
        store = _cycle(db, case_id, n, until_writer=True)
        assert store._appends._thread is not None  # a writer thread did start
        del store
    gc.collect()
    try:
        # collected again on each look: a store one of its threads held for a moment during a collection (an
        # idle writer looks at it once a second) is garbage all the same, just not yet collected
        _until(lambda: gc.collect() >= 0 and not ours(), "the dropped stores' threads to end")
        gc.collect()
        held = [fd for fd in os.listdir("/proc/self/fd")
                if os.path.realpath(f"/proc/self/fd/{fd}").startswith(str(db))]
        assert not held, f"{len(held)} descriptors still open on the dropped stores' journal"
    finally:
        for ref in [o for o in gc.get_objects() if isinstance(o, SQLiteStore) and o.url == str(db)]:
            ref.close()


# -- a leftover transaction, a check that cannot tell -----------------------------------------------------------
class _FailingRollback:
    """The store's connection, except that its next ROLLBACK fails (an I/O error, say) and leaves the
    transaction open, as SQLite does when a ROLLBACK fails."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.failed = False

    def execute(self, sql: str, params: Any = ()) -> Any:
        if sql == "ROLLBACK" and not self.failed:
            self.failed = True
            raise sqlite3.OperationalError("disk I/O error")
        return self.conn.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def test_a_leftover_transaction_whose_rollback_fails_is_never_joined(tmp_path: Path) -> None:
    """A transaction left open by an interrupt (as in the first attack), and the ROLLBACK meant to discard it
    fails. The next append must not run inside that transaction and be acknowledged: it would be lost."""
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    real = store._conn
    try:
        case_id = _case(store)
        store.append(_draft(case_id, "warm"), [])
        _leave_a_transaction_open(store, case_id)
        store._conn = _FailingRollback(real)  # type: ignore[assignment]
        try:
            told: Entry | BaseException = store.append(_draft(case_id, "after the interrupt"), ["x"])
        except StoreError as exc:
            told = exc
        store._conn = real
    finally:
        store._conn = real
        store.close()  # closing a connection inside a transaction rolls it back
    committed = _journal(db, case_id)
    assert isinstance(told, Entry) == ("after the interrupt" in committed), (told, list(committed))


def test_a_check_that_fails_after_the_commit_never_says_nothing_was_recorded(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch statement committed into the journal at its path (it waited for the lock, so the file is checked
    again), and that check cannot stat the file. The caller may get an error, but not one saying nothing was
    recorded: the entry is in the journal."""
    from sharedctx.store.sqlite import store as store_module

    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    real = store._conn
    try:
        case_id = _case(store)
        store.append(_draft(case_id, "warm"), [])
        store._appends.SLOW_STATEMENT = 0.0  # the statement counts as having waited for the write lock
        fake_os = _StatFailsAfterStatement(db)
        monkeypatch.setattr(store_module, "os", fake_os)

        class Arm(_BeforeStatement):
            def execute(self, sql: str, params: Any = ()) -> Any:
                out = super().execute(sql, params)
                fake_os.armed = sql.startswith("INSERT INTO entry_appends")
                return out

        store._conn = Arm(real)  # type: ignore[assignment]
        try:
            told: Entry | BaseException = store.append(_draft(case_id, "committed"), [])
        except StoreError as exc:
            told = exc
        store._conn = real
        fake_os.armed = False
    finally:
        store._conn = real
        store.close()
    committed = _journal(db, case_id)
    assert "committed" in committed
    assert isinstance(told, Entry) or "nothing was recorded" not in str(told), told


# -- a Ctrl-C at each call of the lead's turn ---------------------------------------------------------------------
_CACHED = [("appends", "_take"), ("appends", "_set_writer"), ("appends", "_write_placed"),
           ("store", "_rollback_leftover"), ("store", "_still_ours"), ("store", "_file_still_ours")]
_CAREFUL = [("appends", "_write_each"), ("store", "_tx"), ("store", "_write_append")]
_POINTS = [(o, n, False) for o, n in _CACHED] + [(o, n, True) for o, n in _CACHED + _CAREFUL]


@pytest.mark.parametrize(("owner", "name", "stale"), _POINTS,
                         ids=[f"{n}-{'stale' if s else 'cached'}" for _, n, s in _POINTS])
def test_a_ctrl_c_at_any_call_of_the_leads_turn_leaves_everyone_told_the_truth(
        tmp_path: Path, owner: str, name: str, stale: bool) -> None:
    """The main thread leads a batch [lead, other 0..2] (the cache fresh, or stale so that the careful way
    writes it) and Ctrl-C is raised as it calls `name` for the first time in its turn. Every other caller
    returns, with its entry as committed, or an error and nothing committed; the chain verifies; the store
    still takes appends."""
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    appends = store._appends
    target = appends if owner == "appends" else store
    fired: list[bool] = []
    others: list[_Call] = []
    try:
        case_id = _case(store)
        store.append(_draft(case_id, "warm"), [])
        if stale:
            _make_cache_stale(db, case_id)
        real = getattr(target, name)

        def interrupted(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is threading.main_thread() and not fired and others:
                fired.append(True)
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        others = _others_join_the_leads_batch(store, case_id, 3)
        setattr(target, name, interrupted)
        with pytest.raises(KeyboardInterrupt):
            store.append(_draft(case_id, "lead"), ["x"])
        delattr(target, name)
        assert fired
        _assert_told_the_truth(db, case_id, {f"other {i}": c for i, c in enumerate(others)})
        assert isinstance(store.append(_draft(case_id, "after"), []), Entry)
    finally:
        _release_stuck(store)
        store.close()


# -- callers interrupted while parked, among many: chains, heads, outbox ----------------------------------------
class _Gate:
    """A `_Pending.gate` whose park (its second acquire) raises KeyboardInterrupt when `interrupt` is set."""

    def __init__(self, interrupt: bool) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.interrupt = interrupt

    def acquire(self, *args: Any, **kwargs: Any) -> bool:
        if self.interrupt:
            self.interrupt = False
            raise KeyboardInterrupt
        return self.lock.acquire(*args, **kwargs)

    def release(self) -> None:
        self.lock.release()


class _InterruptedWhileParked(appends_module._Pending):
    def __init__(self, prepared: Any) -> None:
        super().__init__(prepared)
        self.gate = _Gate("parked-interrupt" in prepared.entry.draft.title)  # type: ignore[assignment]


def test_callers_interrupted_while_parked_leave_chains_heads_and_outbox_exact(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """8 threads append to 2 cases with statuses and backends; one append in 5 is interrupted while it waits for
    its batch (taken off the queue if not yet taken, so a later entry was placed on it). Everyone else is told
    the truth, and chains, case heads and outbox rows are exactly what the one-by-one path would leave."""
    import random
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_group_commit_attack import BACKENDS, _check_journal, _Ledger

    monkeypatch.setattr(appends_module, "_Pending", _InterruptedWhileParked)
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    try:
        cases = [_case(store, "a"), _case(store, "b")]
        ledger = _Ledger()
        statuses = [None] * 5 + list(appends_module.CaseStatus)

        def appender(t: int) -> None:
            rng = random.Random(t)
            for i in range(30):
                title = f"t{t}-{i}" + ("-parked-interrupt" if rng.random() < 0.2 else "")
                case_id, status, backends = rng.choice(cases), rng.choice(statuses), BACKENDS[: rng.randrange(4)]
                with ledger.lock:
                    ledger.asked[title] = (case_id, status, backends)
                try:
                    told: Any = store.append(_draft(case_id, title), backends, status)
                except BaseException as exc:
                    told = exc
                if not isinstance(told, KeyboardInterrupt):  # its own interrupt: either outcome is the truth
                    with ledger.lock:
                        ledger.told[title] = told

        threads = [threading.Thread(target=appender, args=(t,), daemon=True) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(6 * WAIT)
        assert not any(t.is_alive() for t in threads), "a caller was left waiting"
        assert all(isinstance(v, Entry) for v in ledger.told.values()), [
            v for v in ledger.told.values() if not isinstance(v, Entry)][:3]
        assert len(ledger.told) < len(ledger.asked)  # some were interrupted
        _check_journal(store, cases, ledger)

    finally:
        store.close()
