"""SIGTERM on a real `sharedctx worker` process: it drains and gives every lease back; a second signal exits at once.

A worker being stopped by its service manager (systemd, Kubernetes) must not leave rows leased for a whole
lease (60 s by default) nor cut a request off half-way. Counted on the double's storage and the outbox.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from sharedctx.config import load_config
from sharedctx.context import SharedContext
from sharedctx.model import EntryKind
from sharedctx.render import parse_github
from tests.acceptance.soak import TOKEN, Soak, _config, _Worker
from tests.doubles.github import GitHubDouble
from tests.doubles.server import PortServer


def _wait_for(what: str, cond: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _check_copies(ctx: SharedContext, double: GitHubDouble, cases: list) -> None:
    """Every journal entry exactly once in the service, in seq order per case."""
    copies: Counter[str] = Counter()
    order: dict[str, list[int]] = {}
    seq = {e.id: (c.id, e.seq) for c in cases for e in c.timeline()}
    for cid in sorted(double.comments):
        p = parse_github(double.comments[cid]["body"])
        if p and p[0] in seq:
            copies[p[0]] += 1
            order.setdefault(seq[p[0]][0], []).append(seq[p[0]][1])
    assert not [e for e, n in copies.items() if n > 1], "duplicated"
    assert set(copies) == set(seq), "lost"
    assert all(s == sorted(s) for s in order.values()), "out of order"


@pytest.fixture
def world(tmp_path: Path, acceptance_pg_url: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SOAK_GITHUB_TOKEN", TOKEN)
    ctx_box: list[SharedContext] = []

    def make(latency: float, lease: float, timeout: float) -> tuple[SharedContext, GitHubDouble, PortServer, Path]:
        double = GitHubDouble(token=TOKEN, validate=False)
        server = PortServer(double, latency=(latency, latency), drop_writes=0.0, seed=1).start()
        config = tmp_path / "sharedctx.toml"
        config.write_text(_config(Soak(store=acceptance_pg_url, lease=lease, timeout=timeout), server.url))
        ctx = SharedContext.open(load_config(config), worker=False)
        ctx_box.append(ctx)
        with ctx.store._autocommit() as conn:  # type: ignore[attr-defined]  # the module's DB is shared
            conn.execute("TRUNCATE outbox, entries, cases CASCADE")
        return ctx, double, server, config

    yield make
    for ctx in ctx_box:
        ctx.close()


def test_sigterm_finishes_what_is_in_flight_gives_every_lease_back_and_exits_0(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ctx, double, server, config = world(latency=0.3, lease=60.0, timeout=10.0)
    cases = [ctx.open_case(f"sigterm case {c}", service="checkout", severity="critical", fingerprint=f"sig-{c}")
             for c in range(4)]
    for i in range(32):
        cases[i % 4].record(EntryKind.FINDING, f"finding {i}", "x" * 50, author="primary:test")
    worker = _Worker(config, tmp_path, tmp_path / "worker.log")
    worker.wait_ready()
    _wait_for("a few deliveries, then a write held at the double",
              lambda: len(double.comments) >= 6 and server.writes_in_flight > 0)

    at_signal = len(double.comments)
    sent = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)
    code = worker.proc.wait(30)
    took = time.monotonic() - sent
    log = worker.log.read_text()
    assert code == 0, log
    assert took < 10, f"took {took:.1f} s to stop"
    assert "no lease held" in log

    # What was in flight at the signal (a write the double held for 0.3 s) was finished ...
    assert len(double.comments) > at_signal, "nothing was in flight at SIGTERM: the test tested nothing"
    delivered = ctx.store.list_deliveries(backend="github", state="delivered", limit=1000)
    assert len(double.comments) == len(delivered), "a request landed but its row was not marked"
    pending = ctx.store.list_deliveries(backend="github", state="pending", limit=1000)
    assert pending, "the worker finished everything before the signal: the test tested nothing"
    assert not any(d.sent_possibly for d in pending), "a delivery was cut off mid-send"

    # ... and no lease is left: another worker claims the head of every case's line at once (lease: 60 s).
    heads = ctx.store.claim("github", "another-worker", 100, 60)
    assert {d.case_id for d in heads} == {d.case_id for d in pending}
    for d in heads:
        assert ctx.store.release(d.id, error="probe", kind="test", token=d.lease_token)

    started = time.monotonic()
    assert ctx.drain(timeout=60), ctx.store.outbox_counts()
    assert time.monotonic() - started < 30, "the rest waited for a lease to run out"
    _check_copies(ctx, double, cases)
    server.stop()


def test_a_second_signal_exits_at_once_and_the_next_worker_reconciles(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ctx, double, server, config = world(latency=2.0, lease=3.0, timeout=3.0)
    cases = [ctx.open_case(f"second signal {c}", service="checkout", severity="critical", fingerprint=f"sec-{c}")
             for c in range(2)]
    for i in range(4):
        cases[i % 2].record(EntryKind.FINDING, f"finding {i}", "y" * 50, author="primary:test")
    worker = _Worker(config, tmp_path, tmp_path / "worker.log")
    worker.wait_ready()
    # Signalled while the double holds a write for 2 s (not after a fixed sleep, which on a loaded machine
    # could land before the first request or after it was answered): the drain then has something to wait for.
    _wait_for("a write held at the double", lambda: server.writes_in_flight > 0)
    worker.proc.send_signal(signal.SIGTERM)
    _wait_for("the worker to start draining", lambda: b"stopping: letting" in worker.log.read_bytes())
    second = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)
    code = worker.proc.wait(30)
    log = worker.log.read_text()
    assert code == 128 + signal.SIGTERM, log
    assert "second signal: exiting now" in log and "stopped: no delivery in flight" not in log, log
    assert time.monotonic() - second < 1.5, "the second signal waited for the drain"

    # The rest is about exactly-once, not about a slow service: the double answers quickly from now on (the
    # write it still holds for the dead worker lands anyway, unanswered, and must be found, not sent again).
    server.latency = (0.05, 0.05)
    time.sleep(3.5)  # what was cut off keeps its lease (3 s) until it runs out, as after kill -9
    assert ctx.drain(timeout=60), ctx.store.outbox_counts()
    delivered = ctx.store.list_deliveries(backend="github", state="delivered", limit=1000)
    assert any(d.attempts > 1 for d in delivered), "no delivery was cut off by the exit: the test tested nothing"
    _check_copies(ctx, double, cases)
    server.stop()
