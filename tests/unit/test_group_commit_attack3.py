"""Third attack on SQLite group commit (`sharedctx/store/sqlite/appends.py`, `store.py`): the second attack's
fixes — `_after_write` after every batch, `_settle` rolling back and reading the journal, `_interrupted` run
twice, the re-entrant group lock, close() from a signal handler.

Interrupts are modelled as in the second attack: a KeyboardInterrupt raised as a function is entered is a
signal arriving at that call, on the main thread (the only one that gets signals).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
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
    _make_cache_stale,
    _others_join_the_leads_batch,
    _release_stuck,
    _StatFailsAfterStatement,
    _until,
)

ROOT = Path(__file__).resolve().parents[2]


def _main() -> bool:
    return threading.current_thread() is threading.main_thread()


# -- a second Ctrl-C while the first is handled ----------------------------------------------------------------
def test_a_second_interrupt_while_interrupted_wakes_the_batch_leaves_nobody_waiting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lead took [lead, other 0..2]; Ctrl-C as it enters `_write` (nothing written). `_interrupted` settles
    the batch and wakes its callers; a second Ctrl-C arrives as it wakes "other 0". Every other caller returns."""
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    appends = store._appends
    taken: list[Any] = []
    real_finish = appends_module._Pending.finish
    try:
        case_id = _case(store)
        store.append(_draft(case_id, "warm"), [])
        others = _others_join_the_leads_batch(store, case_id, 3)
        real_write = appends._write
        fired: list[bool] = []

        def write(batch: list[Any]) -> None:
            appends._write = real_write  # type: ignore[method-assign]
            taken.extend(batch)
            raise KeyboardInterrupt  # the first Ctrl-C

        def finish(self: Any, error: BaseException | None = None) -> None:
            if _main() and not fired and self.prepared.entry.draft.title == "other 0":
                fired.append(True)
                raise KeyboardInterrupt  # the second Ctrl-C, as `finish` is entered
            real_finish(self, error)

        appends._write = write  # type: ignore[method-assign]
        monkeypatch.setattr(appends_module._Pending, "finish", finish)
        with pytest.raises(KeyboardInterrupt):
            store.append(_draft(case_id, "lead"), ["x"])
        monkeypatch.setattr(appends_module._Pending, "finish", real_finish)
        assert fired
        _assert_told_the_truth(db, case_id, {f"other {i}": c for i, c in enumerate(others)})
    finally:
        for p in taken:
            real_finish(p)
        _release_stuck(store)
        store.close()


def test_a_second_interrupt_inside_settle_never_says_nothing_was_recorded_of_a_committed_batch(
        tmp_path: Path) -> None:
    """[lead, other 0..2] committed by the fast statement; Ctrl-C as `_after_write` is entered, and a second
    one as `_settle` (asking the journal what committed) rolls back. The others are committed: none of them may
    be told nothing was recorded (an Entry, or an 'outcome unknown' error)."""
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    try:
        case_id = _case(store)
        store.append(_draft(case_id, "warm"), [])
        others = _others_join_the_leads_batch(store, case_id, 3)
        real_after, real_rollback = store._after_write, store._rollback_leftover
        fired: list[str] = []

        def after_write(ids: Any = ()) -> None:
            if _main() and others and not fired:
                fired.append("after_write")
                raise KeyboardInterrupt
            real_after(ids)

        def rollback_leftover() -> None:
            if _main() and fired == ["after_write"]:
                fired.append("settle")
                raise KeyboardInterrupt
            real_rollback()

        store._after_write, store._rollback_leftover = after_write, rollback_leftover  # type: ignore[method-assign]
        with pytest.raises(KeyboardInterrupt):
            store.append(_draft(case_id, "lead"), ["x"])
        del store._after_write, store._rollback_leftover
        assert fired == ["after_write", "settle"]
        assert all(c.done.wait(WAIT) for c in others)
        committed = _journal(db, case_id)
        for i, c in enumerate(others):
            if f"other {i}" in committed and not isinstance(c.outcome, Entry):
                assert "nothing was recorded" not in str(c.outcome), f"other {i} committed, told {c.outcome!r}"
    finally:
        _release_stuck(store)
        store.close()


class _InterruptedAsStatementReturns(_BeforeStatement):
    """The batch statement commits; Ctrl-C is raised as it returns (before `_after_write`)."""

    def execute(self, sql: str, params: Any = ()) -> Any:
        out = super().execute(sql, params)
        if sql.startswith("INSERT INTO entry_appends") and _main():
            self.after()
            raise KeyboardInterrupt
        return out

    def after(self) -> None:
        pass


def test_settle_that_cannot_check_the_journal_never_says_nothing_was_recorded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """[lead, other 0..2] commit into the journal at its path; Ctrl-C as the statement returns; `_settle` asks
    the journal, but stat() of it fails (EACCES). The others are committed: 'unknown' is true, 'nothing was
    recorded' is not."""
    from sharedctx.store.sqlite import store as store_module

    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    real = store._conn
    fake_os = _StatFailsAfterStatement(db)
    try:
        case_id = _case(store)
        store.append(_draft(case_id, "warm"), [])
        others = _others_join_the_leads_batch(store, case_id, 3)
        monkeypatch.setattr(store_module, "os", fake_os)
        spy = _InterruptedAsStatementReturns(real)
        spy.after = lambda: setattr(fake_os, "armed", True)  # type: ignore[method-assign]
        store._conn = spy  # type: ignore[assignment]
        with pytest.raises(KeyboardInterrupt):
            store.append(_draft(case_id, "lead"), [])
        store._conn = real
        fake_os.armed = False
        assert all(c.done.wait(WAIT) for c in others)
        committed = _journal(db, case_id)
        assert {f"other {i}" for i in range(3)} <= set(committed)
        for i, c in enumerate(others):
            if not isinstance(c.outcome, Entry):
                assert "nothing was recorded" not in str(c.outcome), f"other {i} committed, told {c.outcome!r}"
    finally:
        fake_os.armed = False
        store._conn = real
        _release_stuck(store)
        store.close()


# -- the careful way: no look after its COMMIT -----------------------------------------------------------------
def test_a_journal_replaced_during_the_careful_write_is_not_acknowledged(tmp_path: Path) -> None:
    """The cache is stale (another process appended), so the batch is written the careful way. The journal is
    swapped for another file while that transaction runs (after `_tx`'s look at it). The commit lands in the
    old inode: the append must not be acknowledged."""
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    try:
        case_id = _case(store)
        store.append(_draft(case_id, "warm"), [])
        _make_cache_stale(db, case_id)
        swap = _journal_swap(db)
        real_write_append = store._write_append

        def write_append(c: Any, p: Any) -> Entry:
            store._write_append = real_write_append  # type: ignore[method-assign]
            swap()
            return real_write_append(c, p)

        store._write_append = write_append  # type: ignore[method-assign]
        try:
            told: Entry | BaseException = store.append(_draft(case_id, "into the old file"), [])
        except StoreError as exc:
            told = exc
        assert isinstance(told, StoreError), f"acknowledged into the replaced journal: {told!r}"
    finally:
        store.close()


# -- a WAL deleted mid-statement, then kill -9 ------------------------------------------------------------------
_KILLED = textwrap.dedent("""
    import os, sqlite3, sys
    from sharedctx.errors import StoreError
    from sharedctx.model import Author, EntryDraft, EntryKind
    from sharedctx.store.sqlite import SQLiteStore

    db, case_id, reader_open = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    store = SQLiteStore(db)
    store._conn.execute("PRAGMA busy_timeout=300")  # the default 30 s: same outcome, 100x slower
    reader = sqlite3.connect(db, isolation_level=None)
    if reader_open:  # another connection of this process reading a snapshot (a long export, a cursor)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM entries").fetchall()
    real = store._conn

    class Rm:
        def execute(self, sql, params=()):
            if sql.startswith("INSERT INTO entry_appends"):
                os.unlink(db + "-wal")  # `rm journal.db-wal` after the look, before the statement
            return real.execute(sql, params)

        def __getattr__(self, name):
            return getattr(real, name)

    store._conn = Rm()
    draft = EntryDraft(case_id=case_id, kind=EntryKind.FINDING, title="killed", body="b",
                       author=Author(kind="primary", name="a3"))
    try:
        told = "ACK " + store.append(draft, []).id
    except StoreError as exc:
        told = "ERR " + str(exc)
    print(told, flush=True)
    os.kill(os.getpid(), 9)
""")


def _append_then_kill_9(tmp_path: Path, reader_open: bool) -> tuple[str, bool]:
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    case_id = _case(store)
    store.append(_draft(case_id, "warm"), [])
    store.close()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", _KILLED, str(db), case_id, "1" if reader_open else "0"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == -9, out.stderr
    return out.stdout.strip(), "killed" in _journal(db, case_id)


def test_a_wal_deleted_mid_statement_then_kill_9_keeps_what_was_acknowledged(tmp_path: Path) -> None:
    """The WAL is deleted while the batch statement runs; `_after_write` checkpoints the deleted log into the
    journal and acknowledges. kill -9 right after: the acknowledged entry is in the journal."""
    told, recorded = _append_then_kill_9(tmp_path, reader_open=False)
    assert told.startswith("ACK") == recorded, (told, recorded)


def test_a_wal_deleted_mid_statement_with_a_reader_then_kill_9_keeps_what_was_acknowledged(tmp_path: Path) -> None:
    """As above, with another connection of the process holding a read snapshot from before the append: the
    FULL checkpoint cannot copy the batch (busy). Acknowledged ⇒ in the journal after kill -9."""
    told, recorded = _append_then_kill_9(tmp_path, reader_open=True)
    assert told.startswith("ACK") == recorded, (told, recorded)


# -- close() from a signal handler: the re-entrant group lock ---------------------------------------------------
def test_close_from_a_signal_handler_in_the_middle_of_place_tells_everyone_the_truth(tmp_path: Path) -> None:
    """Another thread leads (its write held a moment), two callers queued behind it. The main thread's append
    is in `_place` (holding the re-entrant group lock) when SIGTERM's handler calls close(): close() waits for
    the writer, which releases the group lock under `_place`'s feet. Everyone returns, told the truth."""
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    appends = store._appends
    try:
        case_id = _case(store)
        store.append(_draft(case_id, "warm"), [])
        real_write, real_place = appends._write, appends._place
        release = threading.Event()

        def write(batch: list[Any]) -> None:
            if any(p.prepared.entry.draft.title == "lead" for p in batch):
                release.wait(WAIT)
            real_write(batch)

        def place(p: Any) -> Any:
            if _main():
                threading.Timer(0.2, release.set).start()
                store.close()  # the signal handler, as `_place` is entered
            return real_place(p)

        appends._write = write  # type: ignore[method-assign]
        calls = {"lead": _Call(lambda: store.append(_draft(case_id, "lead"), ["x"]))}
        _until(lambda: appends._writer not in (None, "thread"), "the lead to write")
        calls.update({f"queued {i}": _Call(lambda i=i: store.append(_draft(case_id, f"queued {i}"), ["x"]))
                      for i in range(2)})
        _until(lambda: len(appends._queue) == 2, "the others to queue")
        appends._place = place  # type: ignore[method-assign]
        try:
            told: Entry | BaseException = store.append(_draft(case_id, "main"), ["x"])
        except StoreError as exc:
            told = exc
        appends._place = real_place  # type: ignore[method-assign]
        release.set()
        main = _Call(lambda: told)  # type: ignore[arg-type,return-value]
        calls["main"] = main
        _assert_told_the_truth(db, case_id, calls)
    finally:
        release.set()
        _release_stuck(store)
        store.close()


class _AfterStatement(_BeforeStatement):
    """`before()` runs as the batch statement returns (committed), before `_after_write` looks."""

    def execute(self, sql: str, params: Any = ()) -> Any:
        out = self.conn.execute(sql, params)
        if sql.startswith("INSERT INTO entry_appends"):
            self.before()
        return out


@pytest.mark.parametrize("when", [
    pytest.param(_BeforeStatement, id="before"),
    # close() on the writer's own thread closes the connection under the write (store._lock is re-entrant); the
    # last connection's close copies the WAL into the journal and removes it. `_after_write` used to report
    # "write-ahead log deleted ... may be lost" about that committed, copied batch; it now asks the journal.
    pytest.param(_AfterStatement, id="after"),
])
def test_close_from_a_signal_handler_around_the_statement(tmp_path: Path, when: type[_BeforeStatement]) -> None:
    """The main thread leads [lead, other 0..2] on the fast way; SIGTERM's handler calls close() just before
    the batch statement, or as it returns (inside `store._lock`, which is re-entrant, so close() closes the
    connection under the write). Everyone returns, told the truth (committed: never 'nothing was recorded')."""
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    real = store._conn
    try:
        case_id = _case(store)
        store.append(_draft(case_id, "warm"), [])
        others = _others_join_the_leads_batch(store, case_id, 3)
        store._conn = when(real, store.close)  # type: ignore[assignment]
        try:
            told: Entry | BaseException = store.append(_draft(case_id, "lead"), ["x"])
        except StoreError as exc:
            told = exc
        calls = {f"other {i}": c for i, c in enumerate(others)}
        calls["lead"] = _Call(lambda: told)  # type: ignore[arg-type,return-value]
        assert all(c.done.wait(WAIT) for c in calls.values())
        committed = _journal(db, case_id)
        for title, c in calls.items():
            if title in committed and not isinstance(c.outcome, Entry):
                assert "nothing was recorded" not in str(c.outcome), (title, c.outcome)
        _assert_told_the_truth(db, case_id, calls)
    finally:
        store._conn = real
        _release_stuck(store)
        store.close()


def test_after_a_close_mid_write_only_a_batch_the_journal_holds_is_acknowledged(tmp_path: Path) -> None:
    """The rule behind the test above, both ways: the store closed (its WAL copied and removed by the close),
    `_after_write` acknowledges a batch only when the journal file holds every one of its entries."""
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    case_id = _case(store)
    entry = store.append(_draft(case_id, "in the journal"), [])
    store.close()
    _until(lambda: not Path(f"{db}-wal").exists(), "the last connection's close to remove the WAL")
    store._after_write([entry.id])  # in the journal: no error
    with pytest.raises(StoreError, match="may be lost"):
        store._after_write([entry.id, "01J0000000000000000000NONE"])


# -- a Ctrl-C inside Thread.start(): the writer thread started, but not recorded --------------------------------
class _StartInterrupted(threading.Thread):
    """A Thread whose start() on the main thread is interrupted as it returns (the Ctrl-C lands in
    `Thread.start`'s wait for the new thread to signal it started): the thread runs, the caller never knows."""

    def start(self) -> None:
        super().start()
        if _main() and not _FIRED:
            _FIRED.append(True)
            raise KeyboardInterrupt


_FIRED: list[bool] = []


class _ThreadingWithInterruptedStart:
    """`threading` as appends.py sees it, except that its Thread is `_StartInterrupted`."""

    Thread = _StartInterrupted

    def __getattr__(self, name: str) -> Any:
        return getattr(threading, name)


def test_an_interrupt_inside_thread_start_leaves_one_writer_thread(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The main thread leads [lead, other 0..2]; others queue behind its batch, so it hands the queue to a new
    writer thread, and Ctrl-C arrives inside Thread.start(). Everyone is told the truth, and exactly one writer
    thread serves this store."""
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    appends = store._appends
    _FIRED.clear()
    try:
        case_id = _case(store)
        store.append(_draft(case_id, "warm"), [])
        real_write = appends._write
        calls: dict[str, _Call] = {}

        def write(batch: list[Any]) -> None:  # while the lead writes its own batch, others queue behind it
            if _main() and not calls:
                calls.update({f"queued {i}": _Call(lambda i=i: store.append(_draft(case_id, f"queued {i}"), ["x"]))
                              for i in range(3)})
                _until(lambda: len(appends._queue) == 3, "the others to queue")
            real_write(batch)

        before = {t for t in threading.enumerate() if t.name == "sharedctx-writer"}
        appends._write = write  # type: ignore[method-assign]
        monkeypatch.setattr(appends_module, "threading", _ThreadingWithInterruptedStart())
        with pytest.raises(KeyboardInterrupt):
            store.append(_draft(case_id, "lead"), ["x"])
        monkeypatch.undo()
        assert _FIRED
        _assert_told_the_truth(db, case_id, calls)
        writers = [t for t in threading.enumerate() if t.name == "sharedctx-writer" and t not in before]
        assert len(writers) <= 1, f"{len(writers)} writer threads for one store"
    finally:
        _release_stuck(store)
        store.close()


# -- `_after_write`: the journal replaced after the statement, before the look -----------------------------------
def test_a_journal_replaced_after_the_statement_before_the_check_is_not_acknowledged(tmp_path: Path) -> None:
    """[lead, other 0..2] commit into the journal, which is swapped for another file as the statement returns
    (before `_after_write` looks). Nobody is acknowledged. (The journal now at the path is not read back: the swap
    leaves the old journal's -wal beside it, and SQLite would replay it onto the new file.)"""
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    real = store._conn
    try:
        case_id = _case(store)
        store.append(_draft(case_id, "warm"), [])
        others = _others_join_the_leads_batch(store, case_id, 3)
        store._conn = _AfterStatement(real, _journal_swap(db))  # type: ignore[assignment]
        try:
            told: Entry | BaseException = store.append(_draft(case_id, "lead"), [])
        except StoreError as exc:
            told = exc
        store._conn = real
        assert all(c.done.wait(WAIT) for c in others)
        outcomes = [told, *(c.outcome for c in others)]
        assert all(isinstance(t, StoreError) for t in outcomes), outcomes
    finally:
        store._conn = real
        _release_stuck(store)
        store.close()


# -- a second Ctrl-C while `_interrupted` fails the queue -------------------------------------------------------
def test_a_second_interrupt_while_the_queue_is_failed_never_writes_a_failed_append(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The main thread leads; three callers queue behind its batch. Ctrl-C as it hands the queue over; no writer
    thread can start then, so `_interrupted` fails the queue, and a second Ctrl-C arrives as it fails the second
    caller. The re-run finds a thread can start now. Each caller is told the truth."""
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    appends = store._appends
    real_finish = appends_module._Pending.finish
    try:
        case_id = _case(store)
        store.append(_draft(case_id, "warm"), [])
        real_write, real_start = appends._write, appends._start_thread
        calls: dict[str, _Call] = {}
        starts: list[int] = []
        fired: list[bool] = []

        def write(batch: list[Any]) -> None:
            if _main() and not calls:
                calls.update({f"queued {i}": _Call(lambda i=i: store.append(_draft(case_id, f"queued {i}"), ["x"]))
                              for i in range(3)})
                _until(lambda: len(appends._queue) == 3, "the others to queue")
            real_write(batch)

        def start_thread() -> bool:
            starts.append(1)
            if len(starts) == 1:
                raise KeyboardInterrupt  # the first Ctrl-C, as the lead hands over
            if len(starts) == 2:
                return False  # no thread can be started just then
            return real_start()

        def finish(self: Any, error: BaseException | None = None) -> None:
            if _main() and not fired and self.prepared.entry.draft.title == "queued 1":
                fired.append(True)
                raise KeyboardInterrupt  # the second Ctrl-C
            real_finish(self, error)

        appends._write, appends._start_thread = write, start_thread  # type: ignore[method-assign]
        monkeypatch.setattr(appends_module._Pending, "finish", finish)
        with pytest.raises(KeyboardInterrupt):
            store.append(_draft(case_id, "lead"), ["x"])
        monkeypatch.setattr(appends_module._Pending, "finish", real_finish)
        assert fired and len(starts) >= 2  # (the fixed code fails the queue out of it: no third start)
        _assert_told_the_truth(db, case_id, calls)
    finally:
        _release_stuck(store)
        store.close()
