"""The outbox worker: order, retries, Retry-After, reconciliation, auth stops, dead letters, isolation."""

from __future__ import annotations

import threading
import time

import pytest

from sharedctx.config import WorkerSettings
from sharedctx.delivery import Worker, backoff_delay
from sharedctx.errors import Ambiguous, AuthFailed, Paced, Rejected, Retryable
from sharedctx.model import Author, EntryDraft, EntryKind
from sharedctx.store.base import Store
from sharedctx.testing import FakeBackend

FAST = WorkerSettings(base_delay=0.001, max_delay=0.01, max_attempts=4, poll_interval=0.01, concurrency=2)


def record(store: Store, case_id: str, n: int, backends: list[str], kind: EntryKind = EntryKind.NOTE) -> list:
    return [
        store.append(
            EntryDraft(case_id=case_id, kind=kind, title=f"entry {i}", author=Author(kind="primary", name="p")),
            backends,
        )
        for i in range(n)
    ]


def new_case(store: Store) -> str:
    return store.open_case(title="c", service="s", severity="warning", fingerprint=None, labels={})[0].id


def wait_for(cond, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return False


def test_entries_arrive_in_per_case_order_with_many_cases_in_flight(store: Store) -> None:
    fake = FakeBackend("fake", latency=0.001)
    cases = [new_case(store) for _ in range(6)]
    written = {c: record(store, c, 8, ["fake"]) for c in cases}
    w = Worker(store, {"fake": fake}, FAST.model_copy(update={"concurrency": 4})).start()
    try:
        assert wait_for(lambda: all(len(fake.entries(c)) == 8 for c in cases))
    finally:
        w.stop()
    for c in cases:
        assert fake.entries(c) == written[c]
    assert fake.binds == 6  # one thread per case, never two


def test_a_retryable_failure_is_retried_with_backoff(store: Store) -> None:
    fake = FakeBackend()
    case = new_case(store)
    [e] = record(store, case, 1, ["fake"])
    fake.fail_next(Retryable("503 Service Unavailable"), Retryable("503 Service Unavailable"))
    w = Worker(store, {"fake": fake}, FAST)
    assert wait_for(lambda: w.run_once() >= 0 and len(fake.entries(case)) == 1)
    assert fake.entries(case) == [e]
    [d] = store.list_deliveries(state="delivered")
    assert d.attempts == 3


def test_retry_after_is_honoured_exactly_and_pauses_the_backend(store: Store) -> None:
    fake = FakeBackend()
    case = new_case(store)
    record(store, case, 1, ["fake"])
    fake.fail_next(Retryable("429", retry_after=30))
    w = Worker(store, {"fake": fake}, FAST)
    w.run_once()
    [d] = store.list_deliveries(state="pending")
    wait = d.next_attempt_at.timestamp() - time.time()
    assert 28 < wait <= 30
    assert not w.step("fake")  # the whole backend waits, not just this delivery


def test_after_an_ambiguous_failure_the_worker_looks_before_resending(store: Store) -> None:
    fake = FakeBackend()
    case = new_case(store)
    [e] = record(store, case, 1, ["fake"])
    fake.fail_next(Ambiguous("read timeout after sending"), applied=True)
    w = Worker(store, {"fake": fake}, FAST)
    assert wait_for(lambda: w.run_once() >= 0 and not store.list_deliveries(state="pending"))
    assert fake.entries(case) == [e]  # exactly once, although the first attempt landed
    assert ("lookup", e.id) in fake.calls


def test_an_auth_failure_stops_that_backend_only_and_says_why(store: Store) -> None:
    bad, good = FakeBackend("bad"), FakeBackend("good")
    case = new_case(store)
    record(store, case, 3, ["bad", "good"])
    bad.fail_next(AuthFailed("github: 401 Bad credentials — check GITHUB_TOKEN"))
    w = Worker(store, {"bad": bad, "good": good}, FAST)
    w.run_once()
    assert len(good.entries(case)) == 3
    st = store.get_backend_state("bad")
    assert st.state == "stopped" and "401 Bad credentials" in (st.reason or "")
    calls = len(bad.calls)
    w.run_once()
    assert len(bad.calls) == calls  # no retry storm while stopped
    [first] = [d for d in store.list_deliveries(state="pending", backend="bad") if d.seq == 1]
    assert first.attempts == 0  # the refused attempt was not counted
    store.set_backend_state("bad", "running", None)  # what `outbox retry --backend bad` does
    w.run_once()
    assert len(bad.entries(case)) == 3


def test_a_rejected_entry_goes_to_dead_letters_and_the_case_moves_on(store: Store) -> None:
    fake = FakeBackend()
    case = new_case(store)
    entries = record(store, case, 3, ["fake"])
    fake.fail_next(Rejected("422: body is too long (maximum is 65536 characters)"))
    w = Worker(store, {"fake": fake}, FAST)
    w.run_once()
    [dead] = store.list_deliveries(state="dead")
    assert dead.seq == 1 and "65536" in (dead.last_error or "")
    assert fake.entries(case) == entries[1:]
    assert store.requeue_dead() == 1
    w.run_once()
    assert sorted(e.seq for e in fake.entries(case)) == [1, 2, 3]


def test_after_max_attempts_a_delivery_is_buried_with_the_last_reason(store: Store) -> None:
    fake = FakeBackend()
    case = new_case(store)
    record(store, case, 1, ["fake"])
    fake.fail_next(*[Retryable("502 Bad Gateway")] * 10)
    w = Worker(store, {"fake": fake}, FAST)
    assert wait_for(lambda: w.run_once() >= 0 and bool(store.list_deliveries(state="dead")))
    [dead] = store.list_deliveries(state="dead")
    assert dead.attempts == FAST.max_attempts and "502 Bad Gateway" in (dead.last_error or "")


def test_waiting_for_our_own_rate_budget_is_not_an_attempt(store: Store) -> None:
    """A saturated shared budget must not walk a delivery into dead letters: nothing was sent."""
    fake = FakeBackend()
    case = new_case(store)
    [e] = record(store, case, 1, ["fake"])
    fake.fail_next(*[Paced("pacing: next slot in 0.0s", retry_after=0.0)] * (FAST.max_attempts * 3))
    w = Worker(store, {"fake": fake}, FAST)
    assert wait_for(lambda: w.run_once() >= 0 and len(fake.entries(case)) == 1)
    assert fake.entries(case) == [e] and not store.list_deliveries(state="dead")
    [d] = store.list_deliveries(state="delivered")
    assert d.attempts == 1  # twelve waits for a slot, one real send

def test_an_unexpected_exception_is_retried_not_fatal(store: Store) -> None:
    fake = FakeBackend()
    case = new_case(store)
    record(store, case, 1, ["fake"])
    fake.fail_next(KeyError("boom"))
    w = Worker(store, {"fake": fake}, FAST)
    assert wait_for(lambda: w.run_once() >= 0 and len(fake.entries(case)) == 1)


def test_resolution_closes_the_thread(store: Store) -> None:
    fake = FakeBackend()
    case = new_case(store)
    record(store, case, 1, ["fake"], kind=EntryKind.RESOLUTION)
    Worker(store, {"fake": fake}, FAST).run_once()
    assert case in fake.resolved


def test_a_stalled_backend_does_not_delay_another(store: Store) -> None:
    gate = threading.Event()
    slow, fast = FakeBackend("slow"), FakeBackend("fast")
    slow.faults = [lambda e: gate.wait(10) and None for _ in range(100)]
    cases = [new_case(store) for _ in range(4)]
    for c in cases:
        record(store, c, 5, ["slow", "fast"])
    w = Worker(store, {"slow": slow, "fast": fast}, FAST).start()
    try:
        assert wait_for(lambda: all(len(fast.entries(c)) == 5 for c in cases), timeout=5)
        assert all(len(slow.entries(c)) == 0 for c in cases)
    finally:
        gate.set()
        w.stop()


@pytest.mark.parametrize("attempt", [1, 2, 5, 20])
def test_backoff_grows_is_capped_and_jittered(attempt: int) -> None:
    s = WorkerSettings(base_delay=1.0, max_delay=60.0)
    delays = [backoff_delay(attempt, s) for _ in range(50)]
    cap = min(60.0, 2 ** (attempt - 1))
    assert all(cap * 0.5 <= d <= cap for d in delays)
    assert len(set(delays)) > 1
