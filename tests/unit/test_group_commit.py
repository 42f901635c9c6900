"""Issue 13, "Faster writes": SQLite appends are group-committed (see `SQLiteStore.append`).

What group commit must not change, tested here: every caller gets its own entry back, each case's chain stays
gap-free and verifies with threads AND processes writing the same cases at once, one bad append in a batch
fails only its own caller, and what was acknowledged survives a kill -9 in the middle of batches.

Batches are forced where a test is about them: the test holds the first batch before it writes, so the other
callers queue behind it; on release the writer thread takes all of them as one batch (the helper lets it: the
store itself would leave half of them for a next batch while the first batch's callers are still inside
`append`). A spy on `GroupCommit._write` proves the batch really formed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sharedctx.errors import CaseNotFound, StoreError
from sharedctx.model import (
    Author,
    CaseStatus,
    Entry,
    EntryDraft,
    EntryKind,
    Evidence,
    canonical_bytes,
    chain_hash,
    parse_ts,
)
from sharedctx.store.base import PreparedEntry, construct_entry, verify_entries
from sharedctx.store.sqlite import SQLiteStore

ROOT = Path(__file__).resolve().parents[2]
PRIMARY = Author(kind="primary", name="writer")


def _draft(case_id: str, title: str, body: str = "body") -> EntryDraft:
    return EntryDraft(case_id=case_id, kind=EntryKind.FINDING, title=title, body=body, author=PRIMARY)


def _case(store: SQLiteStore, title: str = "case") -> str:
    case, _ = store.open_case(title=title, service="svc", severity="warning", fingerprint=None, labels={})
    return case.id


def _spy_batches(store: SQLiteStore) -> list[list[str]]:
    """Record the titles of every batch the store writes (on this instance only)."""
    seen: list[list[str]] = []
    appends = store._appends
    real = appends._write

    def spy(batch: list[Any]) -> None:
        seen.append([p.prepared.entry.draft.title for p in batch])
        real(batch)

    appends._write = spy  # type: ignore[method-assign]
    return seen


def _forced_batch(store: SQLiteStore, calls: list[Callable[[], Entry]], seen: list[list[str]]
                  ) -> list[Entry | BaseException]:
    """Run `calls` (each one append) on threads while the first batch is held before it writes, so the others
    pile up in the queue and are written as one batch after it; return each call's entry or exception, in
    order. `seen` is the `_spy_batches` list of the store."""
    out: list[Entry | BaseException | None] = [None] * len(calls)
    appends = store._appends
    spied = appends._write
    release = threading.Event()
    held: list[int] = []

    def hold(batch: list[Any]) -> None:
        if not held:
            held.append(len(batch))
            release.wait(10)
        spied(batch)

    def run(i: int) -> None:
        try:
            out[i] = calls[i]()
        except BaseException as exc:
            out[i] = exc

    def take_all() -> list[Any]:
        # The first batch is the first append alone (the writer thread may start after several queued); the
        # next one is all the rest, whoever is still on the way out of `append`.
        n = 1 if not held else appends.MAX_BATCH
        batch, appends._queue = appends._queue[:n], appends._queue[n:]
        return batch

    appends._write = hold  # type: ignore[method-assign]
    appends._take = take_all  # type: ignore[method-assign]
    try:
        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10

        def placed() -> int:  # taken by the held writer, queued behind it, or already failed before queueing
            return sum(held) + len(appends._queue) + sum(r is not None for r in out)

        while placed() < len(calls) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert placed() == len(calls), "the appends did not queue up behind the first"
    finally:
        release.set()
        appends._write = spied  # type: ignore[method-assign]
    for t in threads:
        t.join(10)
    del appends._take
    assert all(r is not None for r in out)
    return [r for r in out if r is not None]


def test_queued_appends_are_written_as_one_batch_and_each_caller_gets_its_own_entry(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "journal.db")
    try:
        a, b = _case(store, "a"), _case(store, "b")
        batches = _spy_batches(store)
        titles = [f"t{i}" for i in range(6)]
        status = {2: CaseStatus.MITIGATED, 3: CaseStatus.RESOLVED, 4: CaseStatus.OPEN}  # b, a, b
        results = _forced_batch(store, [lambda t=t, i=i: store.append(_draft(a if i % 2 else b, t), ["x", "y"],
                                                                      status.get(i))
                                        for i, t in enumerate(titles)], batches)
        assert sum(map(len, batches)) == 6 and max(map(len, batches)) >= 2, batches
        for title, r in zip(titles, results, strict=True):
            assert isinstance(r, Entry) and r.title == title
            assert store.get_entry(r.id) == r
        for case_id in (a, b):
            entries = store.entries(case_id)
            assert verify_entries(case_id, entries).ok
            assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
            case = store.get_case(case_id)
            assert (case.last_seq, case.last_hash) == (len(entries), entries[-1].hash)
            assert case.updated_at == entries[-1].ts
        assert store.get_case(b).status == CaseStatus.MITIGATED  # a later `open` never moves a status back
        resolved = store.get_case(a)
        assert resolved.status == CaseStatus.RESOLVED and resolved.resolved_at == store.entries(a, kinds=None)[
            [e.title for e in store.entries(a)].index("t3")].ts
        for backend in ("x", "y"):
            assert sum(store.outbox_counts()[backend].values()) == 6
        rows = store._q("SELECT entry_id, case_id, seq FROM outbox WHERE backend = 'y' ORDER BY entry_id")
        assert sorted(rows) == sorted((e.id, e.case_id, e.seq) for c in (a, b) for e in store.entries(c))
    finally:
        store.close()


def test_one_bad_append_in_a_batch_fails_only_its_caller(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "journal.db")
    try:
        case_id = _case(store)
        # a database-level failure for one entry only (what a constraint or a full disk on one row looks like)
        store._conn.execute("CREATE TEMP TRIGGER boom BEFORE INSERT ON entries WHEN NEW.title = 'boom' "
                            "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")
        batches = _spy_batches(store)
        calls: list[Callable[[], Entry]] = [
            lambda: store.append(_draft(case_id, "first"), ["x"]),
            lambda: store.append(_draft(case_id, "ok 1"), ["x"]),
            lambda: store.append(_draft("01NOSUCHCASE00000000000000", "unknown case"), ["x"]),
            lambda: store.append(_draft(case_id, "boom"), ["x"]),
            lambda: store.append(_draft(case_id, "ok 2"), ["x"]),
        ]
        results = _forced_batch(store, calls, batches)
        bad = next(b for b in batches if "boom" in b)
        assert "unknown case" in bad and {"ok 1", "ok 2", "first"} & set(bad), batches  # good and bad together
        assert isinstance(results[2], CaseNotFound)
        assert isinstance(results[3], StoreError) and "refused by the test" in str(results[3])
        good = [r for i, r in enumerate(results) if i not in (2, 3)]
        assert all(isinstance(r, Entry) for r in good)
        entries = store.entries(case_id)
        assert sorted(e.title for e in entries) == ["first", "ok 1", "ok 2"]
        assert verify_entries(case_id, entries).ok and [e.seq for e in entries] == [1, 2, 3]
        assert sum(store.outbox_counts()["x"].values()) == 3  # nothing of the failed ones is left behind
    finally:
        store.close()


def test_a_failed_commit_fails_every_caller_of_the_batch_and_acknowledges_none(tmp_path: Path) -> None:
    """The write itself fails (here: the journal file was replaced, which is checked before every batch)."""
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    try:
        case_id = _case(store)
        store.append(_draft(case_id, "before"), [])
        before = store.get_case(case_id).last_seq
        appends = store._appends
        with store._lock:  # the first append waits for the connection; the others queue behind it
            calls: list[Callable[[], Entry]] = [lambda i=i: store.append(_draft(case_id, f"e{i}"), [])
                                                for i in range(4)]
            out: list[Any] = [None] * 4
            threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, _catch(calls[i]))) for i in range(4)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 10
            while len(appends._queue) < 3 and time.monotonic() < deadline:
                time.sleep(0.005)
            assert len(appends._queue) == 3 and appends._writer not in (None, "thread")  # a caller writes
            os.replace(db, tmp_path / "moved.db")
            db.write_bytes(b"")
        for t in threads:
            t.join(10)
        assert all(isinstance(r, StoreError) and "replaced" in str(r) for r in out), out
        assert store.get_case(case_id).last_seq == before  # read through the connection to the old file
    finally:
        store.close()


class _Interrupting:
    """The store's connection, except that its first batch statement raises `KeyboardInterrupt` (Ctrl-C
    while the main thread writes)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.fired = False

    def execute(self, sql: str, params: Any = ()) -> Any:
        if sql.startswith("INSERT INTO entry_appends") and not self.fired:
            self.fired = True
            raise KeyboardInterrupt
        return self.conn.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def test_an_interrupted_writer_acknowledges_nothing_and_leaves_nobody_waiting(tmp_path: Path) -> None:
    """A BaseException (KeyboardInterrupt) in the write: its caller gets it, nothing of that batch is
    acknowledged, the appends queued behind it are still written, and the next append works."""
    store = SQLiteStore(tmp_path / "journal.db")
    try:
        case_id = _case(store)
        store.append(_draft(case_id, "warm"), [])  # the head is cached, so the others queue without reading it
        batches = _spy_batches(store)
        real = store._conn
        store._conn = _Interrupting(real)  # type: ignore[assignment]
        try:
            results = _forced_batch(store, [lambda i=i: store.append(_draft(case_id, f"e{i}"), [])
                                            for i in range(4)], batches)
        finally:
            store._conn = real
        titles = [f"e{i}" for i in range(4)]
        outcome = dict(zip(titles, results, strict=True))
        hit = batches[0]  # the held, first batch is the one interrupted
        assert all(isinstance(outcome[t], KeyboardInterrupt) for t in hit), outcome
        rest = [t for t in titles if t not in hit]
        assert rest and all(isinstance(outcome[t], Entry) for t in rest), outcome
        stored = {e.title for e in store.entries(case_id)}
        assert stored == {"warm", *rest}  # acknowledged == committed
        assert verify_entries(case_id, store.entries(case_id)).ok
        assert store.append(_draft(case_id, "after"), []).title == "after"  # nobody left waiting
    finally:
        store.close()


def _spy_fast(store: SQLiteStore) -> list[bool]:
    """Record, for every batch written the fast way (one statement), whether SQLite took it."""
    outcomes: list[bool] = []
    appends = store._appends
    real = appends._write_placed

    def spy(placed: list[Any]) -> bool:
        outcomes.append(real(placed))
        return outcomes[-1]

    appends._write_placed = spy  # type: ignore[method-assign]
    return outcomes


def test_one_batch_of_one_case_is_one_statement_and_one_chain(tmp_path: Path) -> None:
    """Several appends to the SAME case queued together: placed one after the other on the cached head, written
    by one statement (the guard checks each row against the head the row before it left), one chain."""
    store = SQLiteStore(tmp_path / "journal.db")
    try:
        case_id = _case(store)
        store.append(_draft(case_id, "warm"), [])
        batches, fast = _spy_batches(store), _spy_fast(store)
        results = _forced_batch(store, [lambda i=i: store.append(_draft(case_id, f"e{i}"), ["x"],
                                                                 CaseStatus.MITIGATED if i == 3 else None)
                                        for i in range(6)], batches)
        assert all(isinstance(r, Entry) for r in results), results
        assert max(map(len, batches)) >= 2 and fast and all(fast), (batches, fast)
        entries = store.entries(case_id)
        assert verify_entries(case_id, entries).ok and [e.seq for e in entries] == list(range(1, 8))
        assert {r.id for r in results if isinstance(r, Entry)} <= {e.id for e in entries}
        assert store.get_case(case_id).status == CaseStatus.MITIGATED
        assert store.get_case(case_id).last_hash == entries[-1].hash
    finally:
        store.close()


def test_a_head_moved_by_another_writer_is_refused_and_written_again(tmp_path: Path) -> None:
    """The cache of case heads is only a guess: another store on the same file (another process) appends, and
    this store's next append, placed on the old head, is refused by the statement's guard, written again from
    the head read inside the transaction, and acknowledged with the right seq. Then the cache is right again."""
    db = tmp_path / "journal.db"
    mine, other = SQLiteStore(db), SQLiteStore(db)
    try:
        case_id = _case(mine)
        mine.append(_draft(case_id, "mine 1"), ["x"])  # caches the head
        fast = _spy_fast(mine)
        other.append(_draft(case_id, "theirs"), ["x"], CaseStatus.MITIGATED)
        e = mine.append(_draft(case_id, "mine 2"), ["x"])
        assert fast == [False] and e.seq == 3  # refused by the guard, then written the careful way
        e = mine.append(_draft(case_id, "mine 3"), ["x"], CaseStatus.RESOLVED)
        assert fast == [False, True] and e.seq == 4  # and the cache is right again
        entries = mine.entries(case_id)
        assert [x.title for x in entries] == ["mine 1", "theirs", "mine 2", "mine 3"]
        assert verify_entries(case_id, entries).ok
        case = other.get_case(case_id)
        assert (case.status, case.resolved_at, case.last_seq) == (CaseStatus.RESOLVED, entries[-1].ts, 4)
        assert sum(mine.outbox_counts()["x"].values()) == 4
    finally:
        other.close()
        mine.close()


def test_appends_after_close_fail_and_nobody_waits(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "journal.db")
    case_id = _case(store)
    store.append(_draft(case_id, "one"), [])
    store.close()
    with pytest.raises(StoreError):
        store.append(_draft(case_id, "after close"), [])


def _catch(call: Callable[[], Entry]) -> Entry | BaseException:
    try:
        return call()
    except BaseException as exc:
        return exc


# -- threads and processes at once ----------------------------------------------------------------
WRITER = """
import json, sys, threading
from sharedctx.model import Author, EntryDraft, EntryKind
from sharedctx.store.sqlite import SQLiteStore
db, tag, cases, threads, per = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
store = SQLiteStore(db)
lock = threading.Lock()
def run(t):
    for i in range(per):
        title = f"{tag}-{t}-{i}"
        e = store.append(EntryDraft(case_id=cases[(t + i) % len(cases)], kind=EntryKind.FINDING, title=title,
                                    author=Author(kind="primary", name=tag)), ["x"])
        with lock:
            print(json.dumps([title, e.id, e.case_id, e.seq, e.title]), flush=True)
ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
[t.start() for t in ts]
[t.join() for t in ts]
store.close()
"""


def _writer(db: Path, tag: str, cases: list[str], threads: int, per: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-c", WRITER, str(db), tag, json.dumps(cases), str(threads), str(per)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _acks(text: str) -> list[list[Any]]:
    """Complete lines only: a line cut by a kill was never acknowledged."""
    return [json.loads(line) for line in text.split("\n")[:-1] if line.strip()]


def test_threads_in_several_processes_keep_every_chain_gap_free(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    cases = [_case(store, f"case {i}") for i in range(3)]
    per = 60
    procs = [_writer(db, f"p{i}", cases, 4, per) for i in range(3)]
    acks: list[list[Any]] = []
    lock = threading.Lock()

    def local(t: int) -> None:
        for i in range(per):
            title = f"local-{t}-{i}"
            e = store.append(_draft(cases[(t + i) % len(cases)], title), ["x"])
            with lock:
                acks.append([title, e.id, e.case_id, e.seq, e.title])

    threads = [threading.Thread(target=local, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        acks.extend(_acks(out))
    for t in threads:
        t.join()
    try:
        assert len(acks) == 4 * 4 * per
        assert all(title == got_title for title, _, _, _, got_title in acks)  # each caller got its own entry
        assert len({a[1] for a in acks}) == len(acks)  # no entry handed to two callers
        stored = {e.id: e for c in cases for e in store.entries(c)}
        assert len(stored) == len(acks)
        for title, entry_id, case_id, seq, _ in acks:
            e = stored[entry_id]
            assert (e.title, e.case_id, e.seq) == (title, case_id, seq)
        for c in cases:
            entries = store.entries(c)
            assert verify_entries(c, entries).ok
            assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
            assert store.get_case(c).last_seq == len(entries)
        assert sum(store.outbox_counts()["x"].values()) == len(acks)
    finally:
        store.close()


@pytest.mark.slow
def test_kill_9_in_the_middle_of_batches_keeps_everything_acknowledged(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    cases = [_case(store, f"case {i}") for i in range(2)]
    store.close()
    acked: list[list[Any]] = []
    for round_no in range(4):
        proc = _writer(db, f"r{round_no}", cases, 6, 100_000)
        assert proc.stdout is not None
        lines: list[str] = []
        target = 50 + 40 * round_no
        while len(lines) < target:  # kill while six threads are appending, i.e. while batches are in flight
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else "writer exited"
            lines.append(line)
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
        acked.extend(_acks("".join(lines) + rest))
    store = SQLiteStore(db)
    try:
        stored = {e.id: e for c in cases for e in store.entries(c)}
        missing = [a for a in acked if a[1] not in stored]
        assert not missing, f"{len(missing)} acknowledged entries are gone: {missing[:3]}"
        for title, entry_id, case_id, seq, _ in acked:
            assert (stored[entry_id].title, stored[entry_id].case_id, stored[entry_id].seq) == (title, case_id, seq)
        for c in cases:
            entries = store.entries(c)
            assert verify_entries(c, entries).ok
            assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
        counts = Counter(e.title for e in stored.values())
        assert all(n == 1 for n in counts.values())
    finally:
        store.close()


# -- the prepared hash ------------------------------------------------------------------------------
_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_finite = st.floats(allow_nan=False, allow_infinity=False)
_json_leaf = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | _finite | _text
_json = st.recursive(_json_leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
                     max_leaves=8)


_trace_ids = st.text("0123456789abcdef", min_size=32, max_size=32).filter(lambda s: s.strip("0") != "")


@settings(max_examples=150, deadline=None)
@given(title=_text.filter(str.strip), body=_text, attrs=st.dictionaries(_text, _json, max_size=4),
       summary=_text, ref=st.none() | st.just("01ARZ3NDEKTSV4RRFFQ69G5FAV"), trace=st.none() | _trace_ids,
       seq=st.integers(1, 10**9), prev=st.text("0123456789abcdef", min_size=64, max_size=64))
def test_the_prepared_hash_is_the_canonical_hash(title: str, body: str, attrs: dict[str, Any], summary: str,
                                                 ref: str | None, trace: str | None, seq: int, prev: str) -> None:
    """`PreparedEntry` assembles the canonical bytes piecewise; `verify` recomputes them with `canonical_bytes`."""
    draft = EntryDraft(case_id="01ARZ3NDEKTSV4RRFFQ69G5FAV", kind=EntryKind.NOTE, title=title, body=body,
                       author=PRIMARY, attrs=attrs, ref=ref, trace_id=trace,
                       evidence=(Evidence(type="log", source="loki", summary=summary, data={"k": attrs}),))
    entry = PreparedEntry(draft).place(seq, prev)
    assert entry.hash == chain_hash(canonical_bytes(entry), prev) == entry.compute_hash()
    # the placed entry is the one pydantic builds from the same values, down to the fields it counts as set
    same = Entry.model_construct(**entry.__dict__)
    assert entry == same and entry.model_fields_set == same.model_fields_set
    assert entry.model_dump() == same.model_dump() and entry.to_json() == same.to_json()
    assert Entry.model_validate(entry.model_dump()) == entry


def test_construct_entry_is_model_construct() -> None:
    """`construct_entry` skips `model_construct`'s bookkeeping; what it builds must not differ in anything."""
    values = {"id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "case_id": "01ARZ3NDEKTSV4RRFFQ69G5FAW", "seq": 3,
              "ts": parse_ts("2026-01-02T03:04:05.123456Z"), "author": PRIMARY, "kind": EntryKind.NOTE, "title": "t",
              "body": "b", "evidence": (), "ref": None, "trace_id": None, "attrs": {"a": [1]}, "prev_hash": "0" * 64,
              "hash": "f" * 64}
    fast, slow = construct_entry(dict(reversed(values.items()))), Entry.model_construct(**values)
    assert fast == slow and list(fast.__dict__) == list(slow.__dict__) == list(Entry.model_fields)
    assert fast.model_fields_set == slow.model_fields_set and fast.model_extra == slow.model_extra is None
    assert fast.__pydantic_private__ == slow.__pydantic_private__
    assert fast.model_dump_json() == slow.model_dump_json()
    with pytest.raises(ValidationError):  # still frozen
        fast.seq = 4  # type: ignore[misc]
    assert fast.model_copy(update={"seq": 4}).seq == 4 and fast.seq == 3


# -- who writes, and how much at a time (issue 13: 4 threads ≥ 1.5× one) ----------------------------------------
def test_a_lone_caller_writes_its_own_batches_and_a_caller_with_company_leaves_it_to_the_thread(tmp_path: Path) -> None:
    """One thread recording pays for no hand-off: its appends are written on its own thread. A caller that is
    not alone never writes for the others: it would stop preparing while SQLite works."""
    store = SQLiteStore(tmp_path / "journal.db")
    try:
        case_id = _case(store)
        writers: set[str] = set()
        real = store._appends._write

        def spy(batch: list[Any]) -> None:
            writers.add(threading.current_thread().name)
            real(batch)

        store._appends._write = spy  # type: ignore[method-assign]
        for i in range(20):
            store.append(_draft(case_id, f"e{i}"), [])
        assert writers == {threading.current_thread().name} and store._appends._thread is None
        other = object()  # another caller, preparing its entry: now the writer thread writes, and we wait
        store._appends._present.add(other)
        writers.clear()
        store.append(_draft(case_id, "with company"), [])
        store._appends._present.discard(other)
        assert writers == {"sharedctx-writer"}
        assert [e.title for e in store.entries(case_id)][-1] == "with company"
    finally:
        store.close()


def test_while_callers_prepare_a_batch_takes_half_of_them_and_with_none_preparing_all(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "journal.db")
    try:
        group = store._appends
        queued: list[Any] = [object() for _ in range(3)]
        group._queue = list(queued)
        group._present = {object() for _ in range(4)}  # three queued, one still preparing
        assert group._take() == queued[:2] and group._queue == queued[2:]
        group._queue = list(queued)
        group._present = {object() for _ in range(3)}  # everyone inside `append` is queued
        assert group._take() == queued and group._queue == []
        group._present = set()
    finally:
        store.close()
