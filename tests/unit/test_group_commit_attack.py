"""Adversarial tests of SQLite group commit (`sharedctx/store/sqlite/appends.py`, migration 0019).

Each test asserts one of the write path's promises: an Entry only for a committed append and an error only for
an unrecorded one; gap-free, verifying chains whose case head (status, resolved_at, last_seq, last_hash,
updated_at) is what the one-by-one path would leave; one bad append failing alone; nobody left waiting; one
outbox row per (entry, backend); no write acknowledged into a journal that is no longer at its path.
Five of these found bugs in the first version of the write path (fixed; see docs/decisions.md).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharedctx.errors import StoreError
from sharedctx.model import CaseStatus, Entry, EntryDraft
from sharedctx.store.base import verify_entries
from sharedctx.store.sql.journal import JournalSQL
from sharedctx.store.sqlite import SQLiteStore
from sharedctx.store.sqlite import appends as appends_module
from tests.group_commit_kit import WAIT, _Call, _case, _draft, _journal, _leave_a_transaction_open, _until

ROOT = Path(__file__).resolve().parents[2]


# -- nobody is left waiting -------------------------------------------------------------------------------------
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
        self.Lock, self.RLock, self.Condition, self.get_ident = (threading.Lock, threading.RLock,
                                                                threading.Condition, threading.get_ident)

    class Thread(threading.Thread):
        def start(self) -> None:
            raise RuntimeError("can't start new thread")


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
        _until(lambda: appends._writer not in (None, "thread"), "the lead to write")
        others = [_Call(lambda i=i: store.append(_draft(case_id, f"queued {i}"), [])) for i in range(3)]
        _until(lambda: len(appends._queue) == 3, "the others to queue")
        release.set()
        calls = [lead, *others]
        left = [c.outcome for c in calls if not c.done.wait(WAIT)]
        assert not left, ("callers left waiting after a failed hand-over", [c.outcome for c in calls])
        committed = set(_journal(db, case_id))
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
            closing = threading.Thread(target=appends.close, daemon=True)  # SQLiteStore.close()'s first step:
            closing.start()  # it waits for the writing caller to finish the queue
            _until(lambda: appends._closing, "close() to begin")
            conn.release.set()
            closing.join(WAIT)

        others: list[_Call] = []
        helper = threading.Thread(target=orchestrate, daemon=True)
        helper.start()
        with pytest.raises(KeyboardInterrupt):
            store.append(_draft(case_id, "main"), [])
        helper.join(WAIT)
        assert others and all(c.done.wait(WAIT) for c in others)
        store._conn = real
        committed = set(_journal(db, case_id))
        for i, c in enumerate(others):
            recorded = f"other {i}" in committed
            assert isinstance(c.outcome, Entry) == recorded, (f"other {i}", recorded, c.outcome)
    finally:
        store._conn = real
        store.close()



def test_an_append_after_an_interrupted_transaction_is_committed_or_refused(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    case_id = _case(store)
    store.append(_draft(case_id, "warm"), [])
    _leave_a_transaction_open(store, case_id)
    try:
        told: Entry | BaseException = store.append(_draft(case_id, "after the interrupt"), ["x"])
    except StoreError as exc:
        told = exc
    store.close()
    committed = set(_journal(db, case_id))
    assert isinstance(told, Entry) == ("after the interrupt" in committed), (told, committed)


# -- many writers, several write paths: what the one-by-one path would leave ------------------------------------
UNKNOWN = "01NOSUCHCASE00000000000000"
BACKENDS = ("a", "b", "c")


class _Ledger:
    """What every caller asked for and what it was told, to compare with the journal afterwards."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.asked: dict[str, tuple[str, CaseStatus | None, tuple[str, ...]]] = {}  # title -> case, status, backends
        self.told: dict[str, Entry | BaseException] = {}

    def ask(self, title: str, case_id: str, status: CaseStatus | None, backends: tuple[str, ...],
            call: Callable[[], Entry]) -> None:
        with self.lock:
            self.asked[title] = (case_id, status, backends)
        try:
            out: Entry | BaseException = call()
        except Exception as exc:
            out = exc
        with self.lock:
            self.told[title] = out


def _check_journal(store: SQLiteStore, cases: list[str], ledger: _Ledger) -> None:
    """Acknowledged == committed; every chain gap-free and verifying; each case head (seq, hash, updated_at,
    status, resolved_at) as `head_after` replayed in seq order gives; one outbox row per (entry, backend), in
    the order asked, with the entry's seq, and none for anything not committed."""
    stored = {e.title: e for c in cases for e in store.entries(c)}
    for title, told in ledger.told.items():
        if isinstance(told, Entry):
            e = stored.get(title)
            assert e is not None, f"{title} acknowledged but not in the journal"
            assert (e.id, e.seq, e.hash, e.case_id) == (told.id, told.seq, told.hash, told.case_id), title
        else:
            assert title not in stored, f"{title} failed ({told!r}) but is in the journal"
    for c in cases:
        entries = store.entries(c)
        assert verify_entries(c, entries).ok, verify_entries(c, entries)
        assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
        status, resolved_at = "open", None
        for e in entries:
            asked = ledger.asked.get(e.title)
            wanted = asked[1] if asked else None
            if wanted is not None and wanted.rank > CaseStatus(status).rank:
                status = wanted.value
            if status == "resolved" and resolved_at is None:
                resolved_at = e.ts
        case = store.get_case(c)
        assert (case.last_seq, case.last_hash) == (len(entries), entries[-1].hash if entries else case.last_hash)
        if entries:
            assert case.updated_at == entries[-1].ts
        assert (case.status.value if hasattr(case.status, "value") else case.status, case.resolved_at) == (
            status, resolved_at), c
    rows = store._q("SELECT entry_id, case_id, seq, backend FROM outbox ORDER BY id")
    by_entry: dict[str, list[tuple[str, int, str]]] = {}
    for entry_id, case_id, seq, backend in rows:
        by_entry.setdefault(entry_id, []).append((case_id, seq, backend))
    for title, e in stored.items():
        asked = ledger.asked.get(title)
        backends = asked[2] if asked else ()
        assert by_entry.pop(e.id, []) == [(e.case_id, e.seq, b) for b in backends], title
    assert not by_entry, f"outbox rows of entries not in the journal: {list(by_entry)[:3]}"


def _refuse_boom(store: SQLiteStore) -> None:
    """A trigger that refuses one row (TEMP: per connection, so on every store of the test)."""
    store._conn.execute("CREATE TEMP TRIGGER boom BEFORE INSERT ON entries WHEN NEW.title LIKE '%boom%' "
                        "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")


@pytest.mark.parametrize(("heads_kept", "max_batch"), [(None, None), (2, 3)])
def test_many_threads_two_stores_statuses_bad_appends_and_other_write_paths(
        tmp_path: Path, heads_kept: int | None, max_batch: int | None) -> None:
    """32 appending threads over two SQLiteStore objects on one file and 3 cases (batches past MAX_BATCH), with
    status changes, backends in random orders, appends refused by a trigger or for an unknown case, and, at the
    same time, the one-by-one path (`JournalSQL.append`), `advance_investigation` appending with a status,
    `open_case` finding the case by fingerprint and `set_binding` / `write_checkpoint` writing the case rows.
    Also with a cache of 2 heads for 3 cases (it starts over all the time) and batches of at most 3."""
    db = tmp_path / "journal.db"
    one, two = SQLiteStore(db), SQLiteStore(db)
    stores = [one, two]
    for s in stores:
        if heads_kept:
            s._appends.HEADS_KEPT = heads_kept
        if max_batch:
            s._appends.MAX_BATCH = max_batch
    try:
        cases = [one.open_case(title=f"case {i}", service="svc", severity="warning", fingerprint=f"fp{i}",
                               labels={})[0].id for i in range(3)]
        for s in stores:
            _refuse_boom(s)
        ledger = _Ledger()
        per = 30

        def appender(t: int) -> None:
            rng = random.Random(t)
            store = stores[t % 2]
            for i in range(per):
                title = f"t{t}-{i}"
                case_id = rng.choice(cases)
                status = rng.choice([None] * 8 + [CaseStatus.OPEN, CaseStatus.MITIGATED, CaseStatus.RESOLVED])
                if rng.random() < 0.05:
                    title += "-boom"
                if rng.random() < 0.03:
                    case_id = UNKNOWN
                backends = tuple(rng.sample(BACKENDS, rng.randint(0, 3)))
                ledger.ask(title, case_id, status, backends,
                           lambda d=_draft(case_id, title), b=backends, s=status: store.append(d, b, s))

        def other_paths() -> None:
            rng = random.Random(99)
            lease = two.begin_investigation(cases[0], "inv", 600, step="s0", state={})
            assert lease is not None
            for i in range(40):
                case_id = rng.choice(cases)
                title = f"old-{i}"
                status = rng.choice([None, None, CaseStatus.MITIGATED, CaseStatus.RESOLVED])
                ledger.ask(title, case_id, status, ("b",),
                           lambda d=_draft(case_id, title), s=status: JournalSQL.append(one, d, ("b",), s))
                title = f"inv-{i}"
                ledger.ask(title, cases[0], CaseStatus.MITIGATED, ("a", "c"),
                           lambda t=title, i=i: two.advance_investigation(
                               cases[0], "inv", 1, step=f"s{i}", state={"i": i},
                               entries=[(_draft(cases[0], t), ("a", "c"), CaseStatus.MITIGATED)],
                               lease_seconds=600)[0])
                one.open_case(title="again", service="svc", severity="warning", fingerprint=rng.choice(["fp1", "fp2"]),
                              labels={})
                two.set_binding(case_id, "slack", {"channel": "C1", "ts": str(i)})
                if i % 10 == 0:
                    one.write_checkpoint()

        sizes: list[int] = []
        for s in stores:
            real = s._appends._write

            def spy(batch: list[Any], real: Callable[[list[Any]], None] = real) -> None:
                sizes.append(len(batch))
                real(batch)

            s._appends._write = spy  # type: ignore[method-assign]
        threads = [threading.Thread(target=appender, args=(t,), daemon=True) for t in range(32)]
        threads.append(threading.Thread(target=other_paths, daemon=True))
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert not any(t.is_alive() for t in threads), "a writer was left waiting"
        assert len(ledger.told) == len(ledger.asked) == 32 * per + 80
        assert max(sizes) >= 2, sizes  # batches did form
        bad = [t for t, (c, _, _) in ledger.asked.items() if "boom" in t or c == UNKNOWN]
        assert bad and all(not isinstance(ledger.told[t], Entry) for t in bad)
        good = [t for t in ledger.asked if t not in bad]
        assert all(isinstance(ledger.told[t], Entry) for t in good), [ledger.told[t] for t in good
                                                                      if not isinstance(ledger.told[t], Entry)][:3]
        _check_journal(one, cases, ledger)
    finally:
        two.close()
        one.close()


def test_a_queue_longer_than_max_batch_with_bad_appends_on_one_case(tmp_path: Path) -> None:
    """60 callers queue behind a held first batch on ONE case (with statuses, and refused rows here and there):
    written as several batches of at most MAX_BATCH, each caller told the truth, one chain."""
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    try:
        case_id = _case(store)
        _refuse_boom(store)
        store.append(_draft(case_id, "warm"), [])
        appends = store._appends
        real_write = appends._write
        sizes: list[int] = []
        release = threading.Event()

        def hold(batch: list[Any]) -> None:
            sizes.append(len(batch))
            if len(sizes) == 1:
                release.wait(WAIT)
            real_write(batch)

        appends._write = hold  # type: ignore[method-assign]
        ledger = _Ledger()
        statuses = {17: CaseStatus.MITIGATED, 40: CaseStatus.RESOLVED, 41: CaseStatus.OPEN, 50: CaseStatus.RESOLVED}

        def one(i: int) -> None:
            title = f"e{i}" + ("-boom" if i % 13 == 5 else "")
            backends = BACKENDS[: i % 4]
            ledger.ask(title, case_id, statuses.get(i), backends,
                       lambda: store.append(_draft(case_id, title), backends, statuses.get(i)))

        first = threading.Thread(target=one, args=(0,), daemon=True)
        first.start()
        _until(lambda: bool(sizes), "the first batch")
        threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(1, 61)]
        for t in threads:
            t.start()
        _until(lambda: len(appends._queue) == 60, "60 callers to queue")
        release.set()
        for t in [first, *threads]:
            t.join(60)
        assert not any(t.is_alive() for t in [first, *threads])
        assert sizes[0] == 1 and max(sizes) == appends.MAX_BATCH and sum(sizes) == 61, sizes
        ledger.asked["warm"] = (case_id, None, ())
        ledger.told["warm"] = store.entries(case_id)[0]
        for title, told in ledger.told.items():
            assert isinstance(told, Entry) == ("boom" not in title), (title, told)
        _check_journal(store, [case_id], ledger)
        assert store.get_case(case_id).status == CaseStatus.RESOLVED
    finally:
        store.close()


def test_close_while_many_appends_are_in_flight_leaves_nobody_waiting(tmp_path: Path) -> None:
    """16 threads append as fast as they can on 2 cases; close() in the middle. Every caller returns; each was
    told an Entry exactly when its entry is in the journal; appends after close() fail with a StoreError."""
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    cases = [_case(store, "a"), _case(store, "b")]
    ledger = _Ledger()
    stop = threading.Event()
    counts = [0] * 16

    def appender(t: int) -> None:
        rng = random.Random(t)
        i = 0
        while not stop.is_set() or i < 5:
            title, case_id = f"t{t}-{i}", cases[(t + i) % 2]
            status = rng.choice([None] * 6 + [CaseStatus.MITIGATED, CaseStatus.RESOLVED])
            ledger.ask(title, case_id, status, ("x",), lambda d=_draft(case_id, title), s=status: store.append(
                d, ("x",), s))
            counts[t] = i = i + 1
            if isinstance(ledger.told[title], StoreError) and stop.is_set():
                return

    threads = [threading.Thread(target=appender, args=(t,), daemon=True) for t in range(16)]
    for t in threads:
        t.start()
    _until(lambda: sum(counts) >= 200, "some appends")
    stop.set()
    store.close()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "an append was left waiting by close()"
    with pytest.raises(StoreError):
        store.append(_draft(cases[0], "after close"), [])
    failed = [v for v in ledger.told.values() if not isinstance(v, Entry)]
    assert all(isinstance(v, StoreError) for v in failed), failed[:3]
    reopened = SQLiteStore(db)
    try:
        _check_journal(reopened, cases, ledger)
    finally:
        reopened.close()


# -- several processes, statuses, kill -9 -------------------------------------------------------------------------
def _status_of(title: str) -> CaseStatus | None:
    """The status a writer asks for with the entry `title` (a rule both the writers and the check know)."""
    n = zlib.crc32(title.encode())
    return {0: CaseStatus.MITIGATED, 1: CaseStatus.RESOLVED, 2: CaseStatus.OPEN}.get(n % 97)


WRITER = """
import json, sys, threading
from sharedctx.model import Author, EntryDraft, EntryKind
from sharedctx.store.sqlite import SQLiteStore
sys.path.insert(0, sys.argv[6])
from test_group_commit_attack import _status_of
db, tag, cases, threads, per = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
store = SQLiteStore(db)
lock = threading.Lock()
def run(t):
    for i in range(per):
        title = f"{tag}-{t}-{i}"
        e = store.append(EntryDraft(case_id=cases[(t * 7 + i) % len(cases)], kind=EntryKind.FINDING, title=title,
                                    author=Author(kind="primary", name=tag)), ["x", "y"][: 1 + i % 2],
                         _status_of(title))
        with lock:
            print(json.dumps([title, e.id, e.case_id, e.seq, e.hash]), flush=True)
ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
[t.start() for t in ts]
[t.join() for t in ts]
store.close()
"""


def _writer(db: Path, tag: str, cases: list[str], threads: int, per: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-c", WRITER, str(db), tag, json.dumps(cases), str(threads), str(per),
                             str(Path(__file__).parent)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_kill_9_of_one_of_two_processes_writing_the_same_cases_with_statuses(tmp_path: Path) -> None:
    """Two processes (3 threads each) append to the same 3 cases with status changes; one is killed -9 while it
    writes, the other finishes. Everything acknowledged is in the journal as acknowledged, each chain verifies,
    each case head (seq, hash, updated_at, status, resolved_at) is the one-by-one replay of its entries, and
    every entry has its outbox rows, in order."""
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    cases = [_case(store, f"case {i}") for i in range(3)]
    store.close()
    victim, survivor = _writer(db, "v", cases, 3, 100_000), _writer(db, "s", cases, 3, 80)
    assert victim.stdout is not None
    lines = [victim.stdout.readline() for _ in range(150)]
    assert all(lines), victim.stderr.read() if victim.stderr else "the victim exited"
    victim.send_signal(signal.SIGKILL)
    rest, _ = victim.communicate(timeout=60)
    out, err = survivor.communicate(timeout=300)
    assert survivor.returncode == 0, err
    acked = [json.loads(x) for x in ("".join(lines) + rest).split("\n")[:-1] if x.strip()]
    acked += [json.loads(x) for x in out.splitlines() if x.strip()]
    assert len(acked) >= 150 + 3 * 80
    store = SQLiteStore(db)
    try:
        stored = {e.id: e for c in cases for e in store.entries(c)}
        for title, entry_id, case_id, seq, digest in acked:
            e = stored.get(entry_id)
            assert e is not None, f"acknowledged {title} is gone"
            assert (e.title, e.case_id, e.seq, e.hash) == (title, case_id, seq, digest)
        ledger = _Ledger()
        for e in stored.values():
            backends = ("x", "y")[: 1 + int(e.title.rsplit("-", 1)[1]) % 2]
            ledger.asked[e.title] = (e.case_id, _status_of(e.title), backends)
            ledger.told[e.title] = e
        assert any(_status_of(t) == CaseStatus.RESOLVED for t in ledger.asked)
        _check_journal(store, cases, ledger)
    finally:
        store.close()


# -- other write paths between cached appends (random interleavings) ---------------------------------------------
_STATUS = st.sampled_from([None, None, None, CaseStatus.OPEN, CaseStatus.MITIGATED, CaseStatus.RESOLVED])
_OPS = st.lists(st.tuples(st.sampled_from(["one", "two", "old", "inv", "binding", "checkpoint", "open_case"]),
                          st.integers(0, 2), _STATUS), min_size=1, max_size=40)


@settings(max_examples=100, deadline=None)
@given(ops=_OPS)
def test_any_interleaving_of_write_paths_keeps_heads_and_chains(ops: list[tuple[str, int, CaseStatus | None]]) -> None:
    """Appends through two stores' caches ("one", "two"), the one-by-one path ("old"), an investigation step
    appending with a status ("inv"), `set_binding`, `write_checkpoint` and `open_case` by fingerprint, in any
    order on the same cases: each append lands on the true head, and the heads are what a replay gives."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "journal.db"
        one, two = SQLiteStore(db), SQLiteStore(db)
        try:
            cases = [one.open_case(title=f"c{i}", service="svc", severity="warning", fingerprint=f"fp{i}",
                                   labels={})[0].id for i in range(3)]
            leases = {c: two.begin_investigation(c, "inv", 600, step="s", state={}) for c in cases}
            ledger = _Ledger()
            for n, (op, i, status) in enumerate(ops):
                case_id, title = cases[i], f"{op}-{n}"
                backends = BACKENDS[: n % 4]
                if op in ("one", "two"):
                    store = one if op == "one" else two
                    ledger.ask(title, case_id, status, backends,
                               lambda s=store, d=_draft(case_id, title), b=backends, st_=status: s.append(d, b, st_))
                elif op == "old":
                    ledger.ask(title, case_id, status, backends,
                               lambda d=_draft(case_id, title), b=backends, st_=status: JournalSQL.append(
                                   two, d, b, st_))
                elif op == "inv":
                    lease = leases[case_id]
                    assert lease is not None
                    ledger.ask(title, case_id, status, backends,
                               lambda c=case_id, d=_draft(case_id, title), b=backends, st_=status, n=n:
                               one.advance_investigation(c, "inv", 1, step=f"s{n}", state={}, entries=[(d, b, st_)],
                                                         lease_seconds=600)[0])
                elif op == "binding":
                    two.set_binding(case_id, "slack", {"channel": "C", "ts": str(n)})
                elif op == "checkpoint":
                    one.write_checkpoint()
                else:
                    two.open_case(title="again", service="svc", severity="warning", fingerprint=f"fp{i}", labels={})
            assert all(isinstance(v, Entry) for v in ledger.told.values()), ledger.told
            _check_journal(one, cases, ledger)
            _check_journal(two, cases, ledger)
        finally:
            two.close()
            one.close()



class _FailingRedactor:
    """The store's redactor, except that it raises for a draft whose title says so."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def sanitize(self, model: Any) -> Any:
        if isinstance(model, EntryDraft) and "redact-fails" in model.title:
            raise RuntimeError("redactor failed")
        return self.real.sanitize(model)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_failures_before_queueing_fail_only_their_caller(tmp_path: Path) -> None:
    """A redactor that raises, a status that is not a CaseStatus (raises in `_place`, under the group lock), a
    backend that cannot be serialised: each fails its own caller only, moves no cached head, and the 16 threads
    writing alongside are all written on one gap-free chain."""
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    try:
        case_id = _case(store)
        store.append(_draft(case_id, "warm"), [])
        store.redactor = _FailingRedactor(store.redactor)  # type: ignore[assignment]
        ledger = _Ledger()
        bad: set[str] = set()

        def appender(t: int) -> None:
            for i in range(25):
                title, status, backends = f"t{t}-{i}", None, ("x",)
                kind = (t + i) % 9
                if kind == 1:
                    title += "-redact-fails"
                elif kind == 2:
                    status = "resolved"  # a plain string, not a CaseStatus
                elif kind == 3:
                    backends = (object(),)  # type: ignore[assignment]
                if kind in (1, 2, 3):
                    bad.add(title)
                ledger.ask(title, case_id, None, ("x",), lambda d=_draft(case_id, title), s=status, b=backends:
                           store.append(d, b, s))  # type: ignore[arg-type]

        threads = [threading.Thread(target=appender, args=(t,), daemon=True) for t in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads)
        for title, told in ledger.told.items():
            assert isinstance(told, Entry) == (title not in bad), (title, told)
        for title in bad:
            ledger.asked.pop(title)
            ledger.told.pop(title)
        ledger.asked["warm"] = (case_id, None, ())
        ledger.told["warm"] = store.entries(case_id)[0]
        _check_journal(store, [case_id], ledger)
        assert store.get_case(case_id).last_seq == 1 + 16 * 25 - len(bad)
    finally:
        store.close()
