"""The look at the journal's files before a batch is skipped when a look taken after every one of the batch's
appends was queued found them ours (`GroupCommit._looked_upto`): with several callers, the look after each batch
serves the next one. What that must not weaken, with other threads keeping the writer thread busy the whole time:

- a `record()` begun after the journal file was deleted or replaced, or after its write-ahead log was deleted, is
  refused before anything is written (the refusal of the look before a write, not the one after it);
- nothing of it reaches the old files, as the store's own connection (which still has them open) reads them.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from sharedctx.errors import StoreError
from sharedctx.store.sqlite import SQLiteStore
from tests.group_commit_kit import REFUSALS, _Call, _case, _draft, _fault, _until, _written

ROUNDS = 6
def _one_round(db: Path, kind: str) -> None:
    db.parent.mkdir()
    store = SQLiteStore(db)
    busy_cases = [_case(store, f"busy {i}") for i in range(3)]
    mine = _case(store, "mine")
    stop = threading.Event()
    acknowledged = [0]

    def busy(case_id: str) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                store.append(_draft(case_id, f"busy {i}"), [], None)
                acknowledged[0] += 1
            except StoreError:
                pass

    threads = [threading.Thread(target=busy, args=(c,), daemon=True) for c in busy_cases]
    for t in threads:
        t.start()
    try:
        _until(lambda: acknowledged[0] >= 30, "the busy callers to get going")
        _fault(kind, db)
        with pytest.raises(StoreError, match=REFUSALS[kind]):
            store.append(_draft(mine, "begun after the change"), [], None)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    written = _written(store, "begun after the change")  # what went into the old files
    store.close()
    assert written == 0, f"{db}: the refused entry was written into the old {kind} files"


@pytest.mark.parametrize("kind", sorted(REFUSALS))
def test_a_record_begun_after_the_files_changed_is_refused_before_it_writes(tmp_path: Path, kind: str) -> None:
    for round_ in range(ROUNDS):
        _one_round(tmp_path / f"round{round_}" / "journal.db", kind)

def test_an_append_queued_during_the_look_after_a_batch_is_not_covered_by_it(tmp_path: Path) -> None:
    """The look after a batch covers only the appends queued before it began. Here the journal is deleted right
    after that look, and then another caller queues: its append must be looked at again (and refused), not
    written into the deleted file on the strength of a look that came before the deletion."""
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    first, second = _case(store, "first"), _case(store, "second")
    store.append(_draft(first, "cache the head"), [], None)
    store.append(_draft(second, "cache the head"), [], None)
    group, real_after_write = store._appends, store._after_write
    late: list[_Call] = []

    def after_write(ids: Sequence[str] = ()) -> bool:
        found = real_after_write(ids)  # the look itself: both files ours
        if not late:
            db.unlink()
            queued = group._queued
            late.append(_Call(lambda: store.append(_draft(second, "queued after the look"), [], None)))
            _until(lambda: group._queued > queued, "the second caller to queue")
        return found

    store._after_write = after_write  # type: ignore[method-assign]
    try:
        store.append(_draft(first, "its batch's look comes before the deletion"), [], None)
        assert late[0].done.wait(10), "the late append was never settled"
        outcome = late[0].outcome
        assert isinstance(outcome, StoreError) and REFUSALS["delete"] in str(outcome), outcome
        assert _written(store, "queued after the look") == 0
    finally:
        store.close()
