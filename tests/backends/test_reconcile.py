"""Interrupted deliveries are reconciled, not repeated, on every connector.

Two interruptions that leave no error behind (the worker was killed): right after `bind` created the
case's thread, before the binding was stored; and right after `append` landed, before the row was marked.
The next worker must adopt the thread and the copy it finds: one thread, one copy of each entry.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from sharedctx.config import WorkerSettings
from sharedctx.delivery import Worker
from sharedctx.model import Author, EntryDraft, EntryKind
from sharedctx.store.sqlite import SQLiteStore
from tests.backends import harness
from tests.backends.test_soak import stored_markers

THREAD_CREATE = {"github": r"/issues$", "pagerduty": r"/incidents$", "servicenow": r"/table/incident$",
                 "jira": r"/issue$"}
FAST = WorkerSettings(base_delay=0.001, max_delay=0.01, max_attempts=4, poll_interval=0.01, concurrency=1)


def _killed_mid_delivery(store: SQLiteStore, name: str) -> tuple[int, int]:
    """Claim the next delivery with a lease that runs out at once, and mark it attempted, as `_send` does."""
    [d] = store.claim(name, "killed-worker", 1, lease_seconds=0.01)
    assert store.mark_attempted(d.id, d.lease_token)
    return d.id, d.lease_token


@pytest.mark.parametrize("name", list(THREAD_CREATE))
def test_a_worker_killed_after_bind_or_after_append_leaves_one_thread_and_one_copy(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    svc = getattr(harness, name)(monkeypatch)
    backend = svc.make()
    store = SQLiteStore(tmp_path / "journal.db")
    try:
        case, _ = store.open_case(title="checkout p99", service="payments", severity="critical", fingerprint=None,
                                  labels={})
        author = Author(kind="primary", name="triage")
        first = store.append(EntryDraft(case_id=case.id, kind=EntryKind.FINDING, title="one", author=author), [name])

        _killed_mid_delivery(store, name)
        backend.bind(store.get_case(case.id))  # the thread exists now; the binding was never stored
        time.sleep(0.02)
        Worker(store, {name: backend}, FAST).run_once()

        second = store.append(EntryDraft(case_id=case.id, kind=EntryKind.NOTE, title="two", author=author), [name])
        _killed_mid_delivery(store, name)
        thread = backend.bind(store.get_case(case.id))
        backend.append(thread, second)  # landed; the worker died before marking it
        time.sleep(0.02)
        Worker(store, {name: backend}, FAST).run_once()

        creates = [r for r in svc.double.requests
                   if r.method == "POST" and re.search(THREAD_CREATE[name], r.url.path)]
        assert len(creates) == 1, f"{name}: {len(creates)} threads opened for one case"
        markers = stored_markers(name, svc.double, thread.id)
        assert [m[0] for m in markers] == [first.id, second.id], f"{name}: {markers}"
        assert store.outbox_counts()[name]["delivered"] == 2
    finally:
        store.close()
        backend.close()
