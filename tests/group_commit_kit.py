"""Helpers shared by the SQLite group-commit attack tests (`tests/unit/test_group_commit_attack*.py`)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sharedctx.model import Author, Entry, EntryDraft, EntryKind
from sharedctx.store.base import verify_entries
from sharedctx.store.sqlite import SQLiteStore

PRIMARY = Author(kind="primary", name="attacker")
WAIT = 10.0  # seconds a caller may take (its work takes milliseconds) before it counts as left waiting forever


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


def _others_join_the_leads_batch(store: SQLiteStore, case_id: str, n: int) -> list[_Call]:
    """Make the next append's caller (the lead) take `n` other callers' appends into its first batch: they queue
    between its queueing and its `_lead` (a thread switch there). Returns the others' calls (started lazily)."""
    appends = store._appends
    real_lead = appends._lead
    others: list[_Call] = []

    def lead(me: Any) -> None:
        appends._lead = real_lead  # type: ignore[method-assign]
        others.extend(_Call(lambda i=i: store.append(_draft(case_id, f"other {i}"), ["x"])) for i in range(n))
        _until(lambda: len(appends._queue) == n + 1, "the others to queue behind the lead")
        real_lead(me)

    appends._lead = lead  # type: ignore[method-assign]
    return others


def _release_stuck(store: SQLiteStore) -> None:
    """Cleanup after a bug left callers parked: wake every pending we can still reach, free the writer role."""
    appends = store._appends
    for p in appends._queue:
        p.finish()
    appends._queue.clear()
    appends._writer = None


def _journal(db: Path, case_id: str) -> dict[str, Entry]:
    """The entries committed to the journal at `db`, by title, read through a fresh store."""
    other = SQLiteStore(db)
    try:
        entries = other.entries(case_id)
        assert verify_entries(case_id, entries).ok
        assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
        return {e.title: e for e in entries}
    finally:
        other.close()


def _assert_told_the_truth(db: Path, case_id: str, calls: dict[str, _Call]) -> None:
    """Every call returned; an Entry exactly when that entry is committed at the path, AS committed."""
    deadline = time.monotonic() + WAIT
    stuck = [t for t, c in calls.items() if not c.done.wait(max(0.0, deadline - time.monotonic()))]
    assert not stuck, f"callers left waiting forever: {stuck}"
    stored = _journal(db, case_id)
    for title, c in calls.items():
        if isinstance(c.outcome, Entry):
            e = stored.get(title)
            assert e is not None, f"{title} acknowledged but not in the journal at {db}"
            assert (c.outcome.id, c.outcome.seq, c.outcome.hash) == (e.id, e.seq, e.hash), (
                f"{title} acknowledged as seq {c.outcome.seq} but committed as seq {e.seq}")
        else:
            assert title not in stored, f"{title} failed ({c.outcome!r}) but is in the journal"


def _make_cache_stale(db: Path, case_id: str) -> None:
    """Another process appends to the case: every cached placement of `case_id` is now on an old head."""
    other = SQLiteStore(db)
    try:
        other.append(_draft(case_id, "foreign"), [])
    finally:
        other.close()


# -- an interrupt between taking a batch and settling it --------------------------------------------------------


class _BeforeStatement:
    """The store's connection, except that `before()` runs just before a batch statement is handed to SQLite
    (after `_still_ours()` said the files are ours), and `entering` is set then."""

    def __init__(self, conn: Any, before: Callable[[], None] = lambda: None) -> None:
        self.conn = conn
        self.before = before
        self.entering = threading.Event()

    def execute(self, sql: str, params: Any = ()) -> Any:
        if sql.startswith("INSERT INTO entry_appends"):
            self.entering.set()
            self.before()
        return self.conn.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def _journal_swap(db: Path) -> Callable[[], None]:
    """An operator swapping the journal for another one (a restored backup): made ready now, done (in
    microseconds: two renames) when the returned function is called."""
    fresh = db.parent / "fresh.db"
    SQLiteStore(fresh).close()

    def swap() -> None:
        os.replace(db, db.parent / "moved.db")
        os.replace(fresh, db)

    return swap


class _StatFailsAfterStatement:
    """`os` as store.py sees it, except that stat() of the journal fails with EACCES once `armed` (an operator's
    chmod on the folder, an NFS hiccup): the file is still the one we have open, we just cannot tell."""

    def __init__(self, db: Path) -> None:
        self.db = str(db)
        self.armed = False

    def stat(self, path: Any, *args: Any, **kwargs: Any) -> Any:
        if self.armed and str(path) == self.db:
            raise PermissionError(13, "Permission denied", self.db)
        return os.stat(path, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


def _leave_a_transaction_open(store: SQLiteStore, case_id: str) -> None:
    """A write interrupted as BEGIN IMMEDIATE returned (the signal lands there): the connection is left inside
    a transaction that nobody will commit or roll back."""
    real_begin = store._begin

    def begin_then_interrupt() -> None:
        real_begin()
        raise KeyboardInterrupt

    store._begin = begin_then_interrupt  # type: ignore[method-assign]
    try:
        with pytest.raises(KeyboardInterrupt):
            store.set_binding(case_id, "slack", {"channel": "C1"})
    finally:
        store._begin = real_begin  # type: ignore[method-assign]


# What the look before a write says when the journal's files changed under a running store, by kind of change.
REFUSALS = {
    "delete": "was deleted while this process had it open",
    "replace": "was replaced by another file while this process had it open",
    "delete-wal": "write-ahead log .* was deleted or replaced while this process had it open",
}


def _fault(kind: str, db: Path) -> None:
    """One of `REFUSALS`' changes, made to the journal at `db`: deleted, replaced by another journal, or its
    write-ahead log deleted."""
    if kind == "delete":
        db.unlink()
    elif kind == "replace":
        other = db.parent / "other"
        other.mkdir()
        SQLiteStore(other / "journal.db").close()
        os.replace(other / "journal.db", db)
    else:
        Path(f"{db}-wal").unlink()


def _filled(store: SQLiteStore, n: int) -> str:
    """A new case of `store` with `n` entries, each with a word of its own (`zq<i>`): a full-text index to merge."""
    case_id = _case(store)
    for i in range(n):
        store.append(_draft(case_id, f"entry {i} zq{i}"), [], None)
    return case_id


def _segments(store: SQLiteStore) -> int:
    """Rows of the full-text index's segment data: fewer after a merge that merged something."""
    with store._lock:
        return int(store._conn.execute("SELECT count(*) FROM entries_fts_data").fetchone()[0])


def _written(store: SQLiteStore, title: str) -> int:
    """Entries titled `title` as the store's own connection reads them: it still has a deleted or replaced
    journal's files open, so this counts what went into them."""
    with store._lock:
        return int(store._conn.execute("SELECT count(*) FROM entries WHERE title = ?", (title,)).fetchone()[0])
