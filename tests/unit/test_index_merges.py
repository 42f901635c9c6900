"""The full-text index is merged between writes, not inside them (migration 0020, `SQLiteStore._merge_index`).

What must hold: every entry stays findable and the index stays sound through the merges; a merge never keeps this
process's writers waiting behind another process's write lock; and a journal that is no longer ours is not
touched.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from sharedctx.store.sqlite import SQLiteStore
from tests.group_commit_kit import _case, _draft, _filled, _segments


def test_writes_leave_the_merging_to_the_background_and_every_entry_stays_findable(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "journal.db")
    try:
        with store._lock:
            assert store._conn.execute("SELECT v FROM entries_fts_config WHERE k = 'automerge'").fetchone() == (0,)
        case_id = _case(store)
        words = [f"zq{i:04d}x" for i in range(600)]
        for w in words:
            store.append(_draft(case_id, f"finding {w}"), [], None)
        before = _segments(store)
        for _ in range(20):
            store._merge_index()
        assert _segments(store) < before, "the merges merged nothing"
        with store._lock:
            store._conn.execute("INSERT INTO entries_fts (entries_fts) VALUES ('integrity-check')")
        missing = [w for w in words[::7] if not any(w in r.entry.title for r in store.search(w, limit=5))]
        assert not missing, f"not found after the merges: {missing[:5]}"
        store.append(_draft(case_id, "after the merges zq9999x"), [], None)
        assert [r.entry.title for r in store.search("zq9999x", limit=5)] == ["after the merges zq9999x"]
    finally:
        store.close()


def test_a_merge_does_not_wait_behind_another_process_write_lock(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    try:
        case_id = _filled(store, 40)
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        merged = threading.Event()
        t = threading.Thread(target=lambda: (store._merge_index(), merged.set()), daemon=True)
        t.start()
        returned_while_held = merged.wait(10)  # the default busy wait would be 30 s
        other.execute("ROLLBACK")
        other.close()
        t.join(40)
        assert returned_while_held, "the merge waited for the other writer, holding this store's lock meanwhile"
        with store._lock:
            assert store._conn.execute("PRAGMA busy_timeout").fetchone() == (int(store.BUSY_WAIT * 1000),)
        assert store.append(_draft(case_id, "after"), [], None).seq == 41
    finally:
        store.close()


def test_a_journal_deleted_under_the_store_is_not_merged(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    try:
        _filled(store, 200)
        before = _segments(store)
        os.unlink(db)
        for _ in range(5):
            store._merge_index()
        assert _segments(store) == before  # read through the old file, which nothing wrote to
    finally:
        store.close()
