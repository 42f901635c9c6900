"""Leases with fencing tokens, a heartbeat, and reconcile-before-resend after any interrupted attempt.

These pin the promise "every entry reaches each backend exactly once" against the ways a delivery can be
interrupted that carry no error at all: a lease that ran out, a worker that vanished after sending.
"""

from __future__ import annotations

import threading
import time

from sharedctx.config import WorkerSettings
from sharedctx.delivery import Worker
from sharedctx.model import Author, EntryDraft, EntryKind
from sharedctx.store.base import Store
from sharedctx.testing import FakeBackend

FAST = WorkerSettings(base_delay=0.001, max_delay=0.01, max_attempts=4, poll_interval=0.01, concurrency=1)


def one_entry(store: Store, backends: tuple[str, ...] = ("fake",)) -> str:
    case_id = store.open_case(title="c", service="s", severity="warning", fingerprint=None, labels={})[0].id
    store.append(EntryDraft(case_id=case_id, kind=EntryKind.NOTE, title="n", author=Author(kind="primary", name="p")),
                 list(backends))
    return case_id


def test_a_claim_whose_lease_was_taken_over_cannot_change_the_row(store: Store) -> None:
    one_entry(store)
    [first] = store.claim("fake", "w1", 1, lease_seconds=0.05)
    time.sleep(0.08)  # the lease runs out with no error recorded anywhere
    [second] = store.claim("fake", "w2", 1, lease_seconds=60)
    assert second.id == first.id and second.lease_token == first.lease_token + 1

    stale = first.lease_token
    assert not store.mark_attempted(first.id, stale)
    assert not store.renew_lease(first.id, stale, 60)
    assert not store.mark_delivered(first.id, {"id": "x"}, token=stale)
    assert not store.reschedule(first.id, error="e", kind="retryable", delay=0, token=stale)
    assert not store.mark_dead(first.id, error="e", kind="rejected", token=stale)
    assert not store.release(first.id, error="e", kind="auth", token=stale)
    [row] = store.list_deliveries(state="pending")
    assert row.lease_token == second.lease_token and not row.sent_possibly and row.last_error is None

    assert store.mark_delivered(second.id, {"id": "x"}, token=second.lease_token)
    assert store.list_deliveries(state="delivered")[0].external == {"id": "x"}


def test_a_worker_that_lost_its_lease_mid_send_drops_its_result_and_the_next_claim_adopts_the_copy(
    store: Store,
) -> None:
    fake = FakeBackend()
    case_id = one_entry(store)
    thief: list[int] = []

    def steal(entry: object) -> None:  # while worker 1 is inside append(): its lease expires, worker 2 claims
        time.sleep(0.08)
        thief.extend(d.lease_token for d in store.claim("fake", "w2", 1, lease_seconds=60))

    fake.faults.append(steal)
    # a heartbeat that stalled: nothing renews worker 1's lease while it sends
    w1 = Worker(_NoRenew(store), {"fake": fake}, FAST.model_copy(update={"lease_seconds": 0.05}))  # type: ignore[arg-type]
    w1.run_once()
    assert thief, "the second claim did not happen: the test did not test anything"
    assert w1.lost_leases == 1
    [row] = store.list_deliveries(state="pending")  # worker 1 did not mark it delivered
    assert row.sent_possibly and row.lease_token == thief[0]

    # The lease holder's attempt ends without a trace (e.g. kill -9); the next claim reconciles first.
    store.release(row.id, error="holder vanished", kind="test", token=thief[0])
    w3 = Worker(store, {"fake": fake}, FAST)
    w3.run_once()
    assert len(fake.entries(case_id)) == 1, "sent twice"
    assert ("lookup", fake.entries(case_id)[0].id) in fake.calls
    assert store.outbox_counts()["fake"]["delivered"] == 1


def test_an_attempt_that_vanished_after_sending_is_reconciled_not_resent(store: Store) -> None:
    """kill -9 between the send and the mark leaves no error: only `sent_possibly` says to look first."""
    fake = FakeBackend()
    case_id = one_entry(store)
    [d] = store.claim("fake", "dead-worker", 1, lease_seconds=0.05)
    assert store.mark_attempted(d.id, d.lease_token)
    entry = store.entries(case_id)[0]
    fake._store(entry)  # the request landed; then the process died before marking anything
    time.sleep(0.08)
    Worker(store, {"fake": fake}, FAST).run_once()
    assert fake.entries(case_id) == [entry]
    assert fake.calls.count(("append", entry.id)) == 0
    [done] = store.list_deliveries(state="delivered")
    assert done.attempts == 2


def test_a_first_attempt_does_not_look_before_sending(store: Store) -> None:
    fake = FakeBackend()
    case_id = one_entry(store)
    Worker(store, {"fake": fake}, FAST).run_once()
    entry = store.entries(case_id)[0]
    assert ("lookup", entry.id) not in fake.calls and ("append", entry.id) in fake.calls


def test_the_heartbeat_keeps_a_slow_delivery_leased(store: Store) -> None:
    """A delivery three times longer than the lease: no other worker may claim it meanwhile."""
    fake = FakeBackend(latency=1.5)  # lease 0.5 s, renewed every ~0.17 s: a CI stall of 0.3 s is not a failure
    case_id = one_entry(store)
    settings = FAST.model_copy(update={"lease_seconds": 0.5})
    w = Worker(store, {"fake": fake}, settings)
    t = threading.Thread(target=w.run_once)
    t.start()
    while not fake.calls:  # the worker has claimed and is sending
        time.sleep(0.005)
    stolen = []
    deadline = time.monotonic() + 1.2  # more than two leases long
    while time.monotonic() < deadline:
        stolen += store.claim("fake", "other", 1, lease_seconds=60)
        time.sleep(0.02)
    t.join()
    assert stolen == []
    assert len(fake.entries(case_id)) == 1 and w.lost_leases == 0
    assert store.outbox_counts()["fake"]["delivered"] == 1


class _NoRenew:
    """A store whose lease renewals silently do nothing (a heartbeat that stalled)."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner

    def renew_lease(self, delivery_id: int, token: int, lease_seconds: float) -> bool:
        return True

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)
