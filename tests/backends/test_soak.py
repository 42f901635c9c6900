"""Soak: 200 entries across 5 cases, delivered by the real outbox worker to all four connectors at once,
while every double injects faults on writes (10% timeouts after the write was applied; 5% 5xx, half of
them answered after the write was applied, like a proxy's 504; 5% starts of 429 bursts with `Retry-After`
0 or 1 s).

Afterwards every service holds every entry exactly once, in per-case order (checked on the double's own
storage, in the order the service keeps it), and the timeline rebuilt from each backend alone equals the
local journal and verifies. Spec checking stays on (the autouse `spec_clean` fixture).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import httpx
import pytest

from sharedctx.backends.base import Backend
from sharedctx.backends.http import check
from sharedctx.config import parse_config
from sharedctx.context import SharedContext
from sharedctx.errors import Retryable
from sharedctx.model import Author, EntryKind
from sharedctx.render import parse_adf, parse_github, parse_plain
from sharedctx.store.base import verify_entries
from sharedctx.store.sqlite import SQLiteStore
from tests.backends import harness
from tests.backends.harness import Harness

CASES = 5
PER_CASE = 40  # 5 x 40 = 200 entries; the last one of each case is its resolution
SERVICES = ("github", "pagerduty", "servicenow", "jira")
WORKER = {"base_delay": 0.01, "max_delay": 0.2, "max_attempts": 60, "poll_interval": 0.02,
          "lease_seconds": 30.0, "concurrency": 4}


def fleet(monkeypatch: pytest.MonkeyPatch, seed: int) -> dict[str, tuple[Harness, Backend]]:
    """The four services, each with its double in chaos mode and one connector instance."""
    out: dict[str, tuple[Harness, Backend]] = {}
    for i, name in enumerate(SERVICES):
        svc: Harness = getattr(harness, name)(monkeypatch)
        svc.double.chaos(rng=random.Random(seed + i), timeout_after_apply=0.10, server_error=0.05,
                         server_error_after_apply=0.5, burst_429=0.05, burst_len=3, retry_after=(0, 1))
        # GitHub's pacer (80 content-creating requests/min) would stretch this run to minutes; pacing has
        # its own tests (test_github.py) and bench (bench/delivery.py).
        extra: dict[str, Any] = {"per_minute": 1_000_000, "per_hour": 1_000_000} if name == "github" else {}
        extra = {"per_minute": 1_000_000} if name == "pagerduty" else extra  # likewise PagerDuty's 900/min
        out[name] = (svc, svc.make(**extra))
    return out


def stored_markers(name: str, double: Any, thread_id: str) -> list[tuple[str, int, int]]:
    """(entry id, part, total) of every entry copy in the thread, in the order the service keeps them."""
    if name == "github":
        texts: list[Any] = [c["body"] for c in sorted(double.comments_of(int(thread_id)), key=lambda c: c["id"])]
        parse: Any = parse_github
    elif name == "pagerduty":
        texts, parse = [n["content"] for n in double.notes[thread_id]], parse_plain
    elif name == "servicenow":
        rows = [r for r in double.tables["sys_journal_field"] if r["element_id"] == thread_id]
        texts, parse = [r["value"] for r in rows], parse_plain
    else:
        texts, parse = [c["body"] for c in double.comments[thread_id]], parse_adf
    found = [parse(t) for t in texts]
    return [(p[0], p[1], p[2]) for p in found if p]


@pytest.mark.slow
def test_200_entries_reach_all_four_services_exactly_once_in_order_through_faults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    services = fleet(monkeypatch, seed=5)
    cfg = parse_config({"store": str(tmp_path / "journal.db"), "worker": WORKER}, base_dir=tmp_path)
    store = SQLiteStore(cfg.store_url)
    ctx = SharedContext(cfg, store, {n: b for n, (_, b) in services.items()}, worker=True)
    try:
        cases = [ctx.open_case(f"soak case {c}: checkout p99", service="payments", severity="critical")
                 for c in range(CASES)]
        for i in range(PER_CASE):  # interleaved across cases, recorded while the worker delivers
            for c, case in enumerate(cases):
                author = Author(kind="partner" if (i + c) % 2 else "primary", name=f"agent-{c}")
                if i == PER_CASE - 1:
                    case.resolve(f"Rolled back deploy {c}; p99 back to baseline", author=author)
                else:
                    case.record(EntryKind.FINDING if i % 3 else EntryKind.ACTION, f"case {c} step {i}",
                                f"Span **{i}** of `checkout` took {i * 10} ms.\n\n- region eu-{c}\n- try {i}",
                                author=author, evidence=[{"type": "metric", "source": "prometheus",
                                                          "summary": f"p99 {i} ms",
                                                          "url": f"https://prom.example/g?case={c}&i={i}"}])
        assert ctx.drain(timeout=55), f"outbox did not drain: {store.outbox_counts()}"
        ctx.worker.stop()

        counts = store.outbox_counts()
        for name in SERVICES:
            assert store.get_backend_state(name).state == "running"
            assert counts[name].get("delivered") == CASES * PER_CASE and not counts[name].get("dead"), counts[name]

        for name, (svc, backend) in services.items():
            injected = svc.double.chaos_cfg.counts
            kinds = ("timeout_after_apply", "5xx", "5xx_after_apply", "429")
            assert all(injected.get(k, 0) > 0 for k in kinds), (name, injected)
            for case in cases:
                journal = case.timeline()
                assert len(journal) == PER_CASE
                thread = backend.bind(store.get_case(case.id))
                # exactly once and in order, as the service itself stores them
                markers = stored_markers(name, svc.double, thread.id)
                assert len(markers) == len(set(markers)), f"{name}: an entry (part) was stored twice"
                seq_of = {e.id: e.seq for e in journal}
                order = [(seq_of[eid], part) for eid, part, _ in markers]
                assert order == sorted(order), f"{name}: entries of case {case.id} arrived out of order"
                assert {eid for eid, _, _ in markers} == set(seq_of)
                # the timeline rebuilt from this backend alone is the journal, and its chain verifies
                back = backend.read_back(thread)
                assert back.entries == journal, f"{name}: read-back differs from the journal"
                report = verify_entries(case.id, back.entries)
                assert report.ok and report.entries == PER_CASE, report
                assert back.humans == []  # our own resolution notes are not mistaken for people
    finally:
        ctx.close()
        for _, backend in services.values():
            backend.close()


def test_retry_after_zero_means_retry_now_not_the_default_wait() -> None:
    """The soak's bursts send `Retry-After: 0`; it must not turn into the 30 s default for a missing header."""
    req = httpx.Request("POST", "https://api.pagerduty.com/incidents/P1/notes")
    for header, expected in (("0", 0.0), ("1", 1.0)):
        with pytest.raises(Retryable) as err:
            check(httpx.Response(429, request=req, headers={"retry-after": header}), service="x", auth_hint="")
        assert err.value.retry_after == expected
    with pytest.raises(Retryable) as err:
        check(httpx.Response(429, request=req), service="x", auth_hint="")
    assert err.value.retry_after == 30.0
