"""Fixtures shared by the connector tests: a hash-chained journal to deliver, and spec checking.

Every test here fails if a request or a non-fault response broke the service's OpenAPI description.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from sharedctx.model import GENESIS_HASH, Author, CaseRecord, Entry, EntryKind, Evidence, new_id
from tests.doubles import base

if not base.specs_available():
    pytest.skip(f"OpenAPI descriptions not found at {base.SPECS} (put shared/ beside the project or set "
                "SHAREDCTX_SPECS)", allow_module_level=True)


def make_case(case_id: str | None = None, **labels: str) -> CaseRecord:
    now = datetime.now(UTC)
    return CaseRecord(id=case_id or new_id(), title="checkout latency p99 > 2s", service="payments",
                      severity="critical", created_at=now, updated_at=now, labels=labels)


def make_chain(case_id: str, n: int, *, body: str = "", start: int = 1, prev: str = GENESIS_HASH) -> list[Entry]:
    """n entries of one case, hash-chained like the store makes them."""
    out: list[Entry] = []
    t0 = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
    kinds = list(EntryKind)
    for i in range(start, start + n):
        e = Entry(
            id=new_id(), case_id=case_id, seq=i, ts=t0 + timedelta(seconds=i), kind=kinds[i % len(kinds)],
            author=Author(kind="partner" if i % 2 else "primary", name="telemetry" if i % 2 else "triage"),
            title=f"step {i}: p99 latency on checkout",
            body=body or f"Found **{i}** slow spans in `checkout`; see [dashboard](https://grafana.example/d/{i}).\n\n"
                         "```promql\nhistogram_quantile(0.99, rate(http_seconds_bucket[5m]))\n```\n- one\n- two",
            evidence=(Evidence(type="metric", source="prometheus", summary="p99 2.4s",
                               url="https://prom.example/graph?g0", query="histogram_quantile(0.99, ...)",
                               start=t0, end=t0 + timedelta(minutes=5)),),
            attrs={"confidence": 0.8, "ünïcode": "✓"}, trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
            prev_hash=prev,
        )
        e = e.model_copy(update={"hash": e.compute_hash()})
        prev = e.hash
        out.append(e)
    return out


@pytest.fixture(autouse=True)
def spec_clean() -> Iterator[None]:
    before = len(base.SPEC_LOG)
    yield
    bad = [c for c in base.SPEC_LOG[before:] if c.error]
    assert not bad, "spec violations:\n" + "\n".join(f"{c.service} {c.method} {c.path} {c.what}: {c.error}"
                                                     for c in bad[:5])
