"""The claim reads the outbox in claim order and stops at LIMIT, however long the backlog (issue 13).

With the head-of-line check written as NOT EXISTS, PostgreSQL built the anti-join over every pending row,
sorted the result and only then took LIMIT: 31 ms per claim at 480 pending rows, quadratic in the backlog,
paid by every worker on every claim. These pin the plan's shape and the rows it touches, not a timing.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sharedctx.model import Author, EntryDraft, EntryKind
from sharedctx.store.postgres import PostgresStore, translate
from sharedctx.store.sql.outbox import CLAIMABLE


def _backlog(store: PostgresStore, cases: int, entries: int) -> None:
    ids = [store.open_case(title=f"c{c}", service="s", severity="warning", fingerprint=None, labels={})[0].id
           for c in range(cases)]
    for e in range(entries):
        for case_id in ids:
            store.append(EntryDraft(case_id=case_id, kind=EntryKind.NOTE, title=f"n{e}",
                                    author=Author(kind="primary", name="p")), ["fake"])


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    out = [plan]
    for child in plan.get("Plans", []):
        out.extend(_nodes(child))
    return out


def test_a_claim_on_a_long_backlog_reads_a_few_rows_in_index_order_without_sorting(_pg_store: PostgresStore) -> None:
    store = _pg_store
    with store._pool.connection() as conn:
        conn.execute("TRUNCATE cases, entries, outbox, backend_state, cursors, checkpoints, checkpoint_heads CASCADE")
    _backlog(store, cases=40, entries=15)  # 600 pending rows
    assert len(store.claim("fake", "w1", 16, 60)) == 16  # 16 heads in flight: the next claim must pass them
    now = time.time()
    with store._pool.connection() as conn:
        row = conn.execute(translate(
            f"EXPLAIN (ANALYZE, FORMAT JSON) SELECT o.id FROM outbox o WHERE {CLAIMABLE} "
            "ORDER BY o.next_attempt_at, o.id LIMIT 1 FOR UPDATE SKIP LOCKED"),
            {"backend": "fake", "now": now}).fetchone()
        conn.rollback()
    assert row is not None
    plan = row[0] if isinstance(row[0], list) else json.loads(row[0])
    nodes = _nodes(plan[0]["Plan"])
    assert not [n for n in nodes if n["Node Type"] in ("Sort", "Incremental Sort", "Hash Join")], nodes
    scans = [n for n in nodes if n.get("Relation Name") == "outbox" and n.get("Alias") == "o"]
    assert scans and scans[0].get("Index Name") == "outbox_claim", scans
    # it stopped early: the 16 leased heads, the later entries of their cases it passed, and the row it took
    assert scans[0]["Actual Rows"] + scans[0].get("Rows Removed by Filter", 0) < 100, scans[0]
