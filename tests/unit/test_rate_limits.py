"""Shared rate budgets (issue 13): every process on one store — a SQLite file or PostgreSQL — shares one
budget per key, so the sum over processes respects the limit; a pause seen by one holds all of them; a
process killed mid-acquire neither leaks a slot nor wedges the budget.

The multi-process tests run real processes (tests/unit/rate_child.py), never threads: the promise is about
separate processes with separate connections. The same hammer with the old per-process `Pacer` exceeds the
cap (`test_per_process_pacers_together_exceed_the_cap`), which is what the shared one must never do.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from sharedctx.backends.http import SharedPacer, budget_key
from sharedctx.errors import Retryable
from sharedctx.store.base import Store, open_store

CHILD = str(Path(__file__).with_name("rate_child.py"))
LIMITS = [(8, 1.0), (20, 4.0)]  # a minute and an hour, shrunk: 8 per 1 s and 20 per 4 s


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store that several processes open: a SQLite file, or the session's PostgreSQL database."""
    if request.param == "sqlite":
        url = str(tmp_path / "journal.db")
        open_store(url).close()  # migrated once, before the children race to open it
        yield url
    else:
        yield request.getfixturevalue("pg_url")


def at(t: float) -> Callable[[], float]:
    """A clock stopped at `t`."""
    return lambda: t


def _key() -> str:
    return f"test:{uuid.uuid4().hex[:12]}"


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, CHILD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _hammer(url: str, key: str, procs: int, seconds: float, *, memory: bool = False) -> list[float]:
    extra = ["memory"] if memory else []
    children = [_spawn("hammer", *extra, url, key, json.dumps(LIMITS), str(seconds)) for _ in range(procs)]
    times: list[float] = []
    for p in children:
        out, err = p.communicate(timeout=seconds + 60)
        assert p.returncode == 0, err
        times += [float(x) for x in out.split()[1:]]  # after "ready"
    return sorted(times)


def _worst_window(times: list[float], period: float) -> int:
    """The most admissions in any window of `period` seconds (a slot counts while now - at < period)."""
    j, worst = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - period:
            j += 1
        worst = max(worst, i - j + 1)
    return worst


def test_processes_hammering_one_budget_never_exceed_the_cap_in_any_window(store_url: str) -> None:
    times = _hammer(store_url, _key(), procs=4, seconds=6.0)
    for cap, period in LIMITS:
        assert _worst_window(times, period) <= cap, (cap, period)
    # and the budget is used, not starved: the 4 s cap is reached
    assert _worst_window(times, 4.0) == 20


def test_per_process_pacers_together_exceed_the_cap(tmp_path: Path) -> None:
    """The contrast, and the proof the check above can fail: the old pacer counts per process."""
    url = str(tmp_path / "journal.db")
    open_store(url).close()
    times = _hammer(url, _key(), procs=3, seconds=2.5, memory=True)
    assert _worst_window(times, 1.0) > 8


def test_a_hold_set_by_one_process_is_respected_by_the_others(store_url: str) -> None:
    key = _key()
    store = open_store(store_url)
    try:
        SharedPacer(store, lambda: key, LIMITS).hold(1.5, "429 seen here")
        until = time.time() + 1.5
        child = _spawn("acquire", store_url, key, json.dumps(LIMITS))
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        admitted = float(out.split()[1])
        assert admitted >= until - 0.05  # not before the hold ends (give or take the two clocks' reads)
    finally:
        store.close()


def test_a_process_killed_mid_acquire_leaks_no_slot_and_wedges_nothing(store_url: str) -> None:
    """The child inserts its slot and hangs before committing, holding the budget's lock (SQLite's write
    lock / PostgreSQL's row lock). After kill -9 the budget is free at once and the slot is not counted."""
    key, one = _key(), [(1, 60.0)]  # one slot a minute: a leaked slot would make the next wait a minute
    child = _spawn("stall", store_url, key, json.dumps(one))
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.strip() == "inside", child.stderr.read() if child.stderr else ""
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    store = open_store(store_url)
    try:
        started = time.monotonic()
        assert store.take_slot(key, one, time.time) == 0.0  # admitted: the killed slot never counted
        assert time.monotonic() - started < 10.0
        assert store.budget_state(key, 60.0, time.time())[1] == 1
    finally:
        store.close()


# ---- in one process: the window rule, holds, keys ---------------------------------------------------------
def test_take_slot_is_a_sliding_window_not_a_bucket(store: Store) -> None:
    """A bucket of 80 refilling at 80/min admits 160 in some 60 s window; the log admits 80."""
    key = _key()
    limits = [(80, 60.0)]
    assert all(store.take_slot(key, limits, at(1000.0 + i * 0.1)) == 0.0 for i in range(80))
    assert store.take_slot(key, limits, at(1008.0)) == pytest.approx(52.0)  # the first leaves at 1060
    assert store.take_slot(key, limits, at(1059.9)) > 0  # a full window later, not a refill's worth earlier
    assert store.take_slot(key, limits, at(1060.0)) == 0.0
    assert store.take_slot(key, limits, at(1060.0)) > 0  # one left, one came back


def test_every_limit_counts_the_same_requests(store: Store) -> None:
    key = _key()
    limits = [(3, 1.0), (4, 10.0)]
    assert [store.take_slot(key, limits, at(t)) for t in (0.0, 0.1, 0.2)] == [0.0, 0.0, 0.0]
    assert store.take_slot(key, limits, at(0.3)) == pytest.approx(0.7)
    assert store.take_slot(key, limits, at(1.0)) == 0.0
    assert store.take_slot(key, limits, at(2.0)) == pytest.approx(8.0)  # the hour-like limit: 4 in 10 s


def test_a_hold_pauses_a_key_and_only_that_key(store: Store) -> None:
    key, other = _key(), _key()
    store.hold_budget(key, 100.0, "secondary rate limit")
    store.hold_budget(key, 50.0)  # a shorter hold never shortens it
    assert store.take_slot(key, [(10, 1.0)], at(40.0)) == pytest.approx(60.0)
    assert store.take_slot(other, [(10, 1.0)], at(40.0)) == 0.0
    assert store.budget_state(key, 1.0, 40.0) == (100.0, 0)


def test_a_long_wait_is_retryable_in_real_seconds_and_a_short_one_blocks(store: Store) -> None:
    key, now, slept = _key(), [0.0], []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = SharedPacer(store, lambda: key, [(1, 30.0)], max_block=2.0, clock=lambda: now[0], sleep=sleep,
                        scale=10.0)
    pacer.acquire()
    now[0] = 10.0  # 20 s (scaled) to wait = 2 real seconds: blocks
    pacer.acquire()
    assert slept == [pytest.approx(20.0)]
    with pytest.raises(Retryable) as err:  # 30 s scaled = 3 real seconds > max_block
        pacer.acquire()
    assert err.value.retry_after == pytest.approx(3.0)


def test_the_budget_key_names_the_target_and_never_holds_the_secret() -> None:
    a = budget_key("github", "content", "https://api.github.com", "ghp_secret_token_value")
    assert a.startswith("github:content:") and "ghp_secret" not in a
    assert a == budget_key("github", "content", "https://api.github.com", "ghp_secret_token_value")
    assert a != budget_key("github", "content", "https://api.github.com", "another_token")
    assert a != budget_key("github", "content", "https://ghe.example/api/v3", "ghp_secret_token_value")


# ---- wired into the connectors ------------------------------------------------------------------------
def test_a_secondary_limit_seen_by_one_github_backend_holds_every_backend_on_the_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes' backends (two store connections, two connector objects, one token): the 403 one
    of them gets pauses the other before it sends anything. Another token's budget is untouched."""
    from sharedctx.backends import make_backend
    from sharedctx.config import BackendSettings
    from tests.backends.conftest import make_case, make_chain
    from tests.doubles.github import GitHubDouble

    monkeypatch.setenv("GITHUB_TOKEN", "gh-test-token")
    monkeypatch.setenv("OTHER_TOKEN", "gh-other-token")
    double = GitHubDouble()
    url = str(tmp_path / "journal.db")
    stores = [open_store(url), open_store(url)]
    def settings(token: str) -> BackendSettings:
        return BackendSettings.model_validate({"type": "github", "repo": "acme/payments", "token": token,
                                               "max_block": 0.0})

    client = httpx.Client(transport=httpx.MockTransport(double.handle))
    a, b = (make_backend(settings("env:GITHUB_TOKEN"), client=client, limits=s) for s in stores)
    other = make_backend(settings("env:OTHER_TOKEN"), client=client, limits=stores[1])
    try:
        thread = a.bind(case := make_case())
        double.enforce_secondary, double.limits = True, [(0, 60.0)]
        with pytest.raises(Retryable):
            a.append(thread, make_chain(case.id, 1)[0])
        sent = len(double.requests)
        with pytest.raises(Retryable, match="pacing"):
            b.append(thread, make_chain(case.id, 2)[1])
        assert len(double.requests) == sent  # b never sent
        other.pacer.acquire()  # another account's budget is not held
    finally:
        for s in stores:
            s.close()


def test_pagerduty_paces_every_request_per_key_and_a_429_holds_the_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sharedctx.backends.pagerduty import PagerDutyBackend, PagerDutyOptions
    from tests.backends.conftest import make_case
    from tests.doubles.pagerduty import PagerDutyDouble

    monkeypatch.setenv("PD_TOKEN", "pd-test-token")
    double = PagerDutyDouble()
    store = open_store(str(tmp_path / "journal.db"))
    opts = PagerDutyOptions(token="env:PD_TOKEN", from_email="bot@acme.io", service_id="PSVC001", per_minute=2,
                            max_block=0.0)
    pd = PagerDutyBackend("pagerduty", opts, client=httpx.Client(transport=httpx.MockTransport(double.handle)),
                          limits=store)
    try:
        pd.bind(make_case())  # GET by incident_key + POST: two requests, the whole minute's budget
        with pytest.raises(Retryable, match="pacing"):
            pd.bind(make_case())
        key = pd._budget_key()
        assert key.startswith("pagerduty:rest:") and "pd-test-token" not in key
        assert store.budget_state(key, 60.0, time.time())[1] == 2
        pd2 = PagerDutyBackend("pagerduty", opts.model_copy(update={"per_minute": 100}),
                               client=httpx.Client(transport=httpx.MockTransport(double.handle)), limits=store)
        store.hold_budget(key, 0.0)  # (no-op: holds only extend)
        double.inject("429", retry_after=30)
        with pytest.raises(Retryable) as err:
            pd2.bind(make_case())
        assert err.value.retry_after == 30
        assert store.budget_state(key, 60.0, time.time())[0] > time.time() + 25  # every process waits now
    finally:
        store.close()
