"""Slack soak: 90 entries (one split into parts) across 3 cases, delivered by the real outbox worker while the
double injects faults on writes: timeouts after the message was posted, 5xx (half after posting, like a
proxy's 504), and 429 bursts with `Retry-After`. Afterwards each thread holds every entry exactly once, in
journal order as Slack keeps it (by `ts`), and the timeline rebuilt from Slack alone is the journal."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from sharedctx.config import parse_config
from sharedctx.context import SharedContext
from sharedctx.model import Author, EntryKind
from sharedctx.store.base import verify_entries
from sharedctx.store.sqlite import SQLiteStore
from tests.backends import harness

CASES, PER_CASE = 3, 30
WORKER = {"base_delay": 0.01, "max_delay": 0.2, "max_attempts": 60, "poll_interval": 0.02, "concurrency": 4}


@pytest.mark.slow
def test_90_entries_reach_slack_exactly_once_in_order_through_faults(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    svc = harness.slack(monkeypatch)
    svc.double.chaos(rng=random.Random(15), timeout_after_apply=0.10, server_error=0.05,
                     server_error_after_apply=0.5, burst_429=0.05, burst_len=3, retry_after=(0, 1))
    # Tier 3 read pacing (50/min) would stretch the run to minutes; pacing has its own tests in test_slack.py.
    backend = svc.make(max_message_chars=4_000, reads_per_minute=100_000, reactions_per_minute=100_000)
    cfg = parse_config({"store": str(tmp_path / "journal.db"), "worker": WORKER}, base_dir=tmp_path)
    store = SQLiteStore(cfg.store_url)
    ctx = SharedContext(cfg, store, {"slack": backend}, worker=True)
    try:
        cases = [ctx.open_case(f"soak case {c}", service="payments", severity="critical") for c in range(CASES)]
        for i in range(PER_CASE):
            for c, case in enumerate(cases):
                author = Author(kind="partner" if (i + c) % 2 else "primary", name=f"agent-{c}")
                if i == PER_CASE - 1:
                    case.resolve(f"Rolled back deploy {c}", author=author)
                else:
                    body = ("All the spans, none dropped. " * 600) if i == 7 else f"Span **{i}** & <{c}>"
                    case.record(EntryKind.FINDING, f"case {c} step {i}", body, author=author)
        assert ctx.drain(timeout=55), f"outbox did not drain: {store.outbox_counts()}"
        ctx.worker.stop()
        assert store.outbox_counts()["slack"].get("delivered") == CASES * PER_CASE
        injected = svc.double.chaos_cfg.counts
        assert all(injected.get(k, 0) > 0 for k in ("timeout_after_apply", "5xx", "5xx_after_apply", "429")), injected
        for case in cases:
            journal = case.timeline()
            thread = backend.bind(store.get_case(case.id))
            payloads = [svc.double.metadata_of(m)["event_payload"] for m in svc.double.replies(thread.id)
                        if (svc.double.metadata_of(m) or {}).get("event_type") == "sharedctx_entry"]
            markers = [(p["entry"], p["part"]) for p in payloads]
            assert len(markers) == len(set(markers)), "an entry (part) was posted twice"
            seq_of = {e.id: e.seq for e in journal}
            order = [(seq_of[eid], part) for eid, part in markers]
            assert order == sorted(order) and {eid for eid, _ in markers} == set(seq_of)
            assert max(p["of"] for p in payloads) > 1  # the long entry was split
            back = backend.read_back(thread)
            assert back.entries == journal and verify_entries(case.id, back.entries).ok
            assert back.humans == []
    finally:
        ctx.close()
        backend.close()
