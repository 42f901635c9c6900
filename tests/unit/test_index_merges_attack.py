"""Attacks on the index merges between writes (migration 0020, `SQLiteStore._merge_index`)."""

from __future__ import annotations

import os
import sqlite3
import struct
import threading
import time
from pathlib import Path

from sharedctx.store.sqlite import SQLiteStore
from tests.group_commit_kit import _case, _draft, _filled, _segments


def _wal_progress(db: Path) -> tuple[int, int]:
    """(mxFrame, nBackfill) read straight from the -shm (no connection: looking must not checkpoint)."""
    raw = (db.parent / (db.name + "-shm")).read_bytes()[:104]
    return struct.unpack_from("=I", raw, 16)[0], struct.unpack_from("=I", raw, 96)[0]


def test_checkpoints_go_on_while_a_writer_of_ours_waits_for_another_process(tmp_path: Path) -> None:
    """Another process commits again and again (each write held ~50 ms: a busy peer). A record() of ours waits
    for SQLite's write lock for up to 30 s, inside `store._lock`. Before 0020 the checkpoint thread never took
    that lock and kept copying the peer's commits into the journal; now each round starts with `_merge_index`,
    which waits for `store._lock`, so no checkpoint runs for as long as our writer waits: the WAL grows."""
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    store.CHECKPOINT_EVERY = 0.05
    try:
        case_id = _case(store)
        store.append(_draft(case_id, "warm"), [], None)
        peer = sqlite3.connect(db, isolation_level=None, timeout=30)
        peer.execute("PRAGMA wal_autocheckpoint=0")  # as our own stores: checkpoints are the checkpoint thread's
        peer.execute("CREATE TABLE IF NOT EXISTS peer (v BLOB)")
        peer.execute("BEGIN IMMEDIATE")  # the peer is writing when our record() comes
        ours_done = threading.Event()
        t = threading.Thread(target=lambda: (store.append(_draft(case_id, "ours"), [], None), ours_done.set()),
                             daemon=True)
        t.start()
        time.sleep(0.3)  # our writer is now waiting for the write lock, inside store._lock
        frames0, backfill0 = _wal_progress(db)
        progressed = False
        deadline = time.monotonic() + 8.0  # generous: the checkpoint thread runs every 50 ms
        while time.monotonic() < deadline and not ours_done.is_set():
            peer.execute("INSERT INTO peer VALUES (randomblob(8000))")
            peer.execute("COMMIT")
            peer.execute("BEGIN IMMEDIATE")  # straight back in, as a busy peer does
            time.sleep(0.05)
            frames, backfill = _wal_progress(db)
            if backfill > backfill0 or frames < frames0:  # copied, or copied all and the log started over
                progressed = True
                break
            frames0 = frames
        frames, backfill = _wal_progress(db)
        peer.execute("COMMIT")
        waited = not ours_done.is_set()
        t.join(40)
        peer.close()
        assert ours_done.is_set()
        assert progressed or not waited, (
            f"no checkpoint for 8 s while our writer waited for the peer: WAL at {frames} frames, "
            f"{backfill} copied (it was {backfill0})")
    finally:
        store.close()



def test_a_journal_deleted_while_the_merge_waits_for_the_write_lock_is_not_merged(tmp_path: Path) -> None:
    """The merge waits (busy timeout, widened here so that nothing depends on the scheduler) for another process's
    write lock; the journal is deleted meanwhile; the other process lets go. Found by the attack: the merge looked
    at the files before that wait and then wrote into the deleted journal. Now it looks with the write lock held."""
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    store.CHECKPOINT_EVERY = 3600  # only our own merge call
    try:
        _filled(store, 200)
        before = _segments(store)
        store.MERGE_BUSY_MS = 10_000
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process is writing
        t = threading.Thread(target=store._merge_index, daemon=True)
        t.start()

        def merge_holds_our_lock() -> bool:
            if store._lock.acquire(blocking=False):
                store._lock.release()
                return False
            return True

        deadline = time.monotonic() + 10
        while not merge_holds_our_lock():
            assert time.monotonic() < deadline, "the merge never started"
            time.sleep(0.001)
        time.sleep(0.1)  # in SQLite's busy wait by now (the test holds either way: the look follows the wait)
        os.unlink(db)  # the journal is deleted meanwhile
        other.execute("ROLLBACK")
        other.close()
        t.join(30)
        assert not t.is_alive()
        assert _segments(store) == before, "the merge wrote into the journal deleted while it waited"
    finally:
        store.close()


def test_control_the_same_merge_without_the_delete_does_merge(tmp_path: Path) -> None:
    """Control for the test above: with the journal left in place, the same single merge changes the index."""
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    store.CHECKPOINT_EVERY = 3600
    try:
        _filled(store, 200)
        before = _segments(store)
        store._merge_index()
        assert _segments(store) != before
    finally:
        store.close()
