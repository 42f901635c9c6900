"""Many cases in a store, quickly, and a meter of what the store reads: for the indexed-lookup tests and
`bench/lookups.py`.

`fill` writes cases straight with SQL (one transaction, `executemany`): the API would take minutes for
100,000. Each case gets the thread shapes the real connectors' `bind` returns (GitHub issue number, PagerDuty
incident id, ServiceNow sys_id + INC number, Jira key, Slack ts + channel, Matrix event + room), labels and
a fingerprint, in `cases.bindings` / `cases.labels` as `set_binding` and `open_case` store them. The index
rows are written only with `index=True`; the migration test fills a store from before migration 0016
with `index=False` and lets the migration's backfill write them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sharedctx.model import GENESIS_HASH, format_ts, new_id, utcnow
from sharedctx.store.sql.bindings import INDEX_BINDING, INDEX_LABEL, binding_rows

BACKENDS = ("github", "pagerduty", "servicenow", "jira", "slack", "matrix")
# case i is bound to a backend when i % EVERY[backend] == 0
EVERY = {"github": 1, "pagerduty": 2, "servicenow": 3, "jira": 5, "slack": 7, "matrix": 11}
SHARED_LABEL = "payments"  # every case has team=payments: a label value that names them all
FLAPPY = "fp:flappy"  # the fingerprint of every 100th resolved case (a flapping alert)


def thread(backend: str, i: int) -> dict[str, Any]:
    """The thread dict `bind` returns on `backend` for the case filled as number `i` (0-based)."""
    n = i + 1
    if backend == "github":
        return {"backend": backend, "id": str(n), "url": f"https://github.com/acme/payments/issues/{n}",
                "repo": "acme/payments"}
    if backend == "pagerduty":
        pid = f"Q{n:07d}PD"
        return {"backend": backend, "id": pid, "url": f"https://acme.pagerduty.com/incidents/{pid}"}
    if backend == "servicenow":
        sid = f"{n:032x}"
        return {"backend": backend, "id": sid, "number": f"INC{n:07d}",
                "url": f"https://acme.service-now.com/nav_to.do?uri=incident.do?sys_id={sid}"}
    if backend == "jira":
        return {"backend": backend, "id": f"OPS-{n}", "url": f"https://acme.atlassian.net/browse/OPS-{n}"}
    if backend == "slack":
        ts = f"{1764000000 + n}.{n % 1_000_000:06d}"
        return {"backend": backend, "id": ts, "channel": "C0PAYMENTS",
                "url": f"https://acme.slack.com/archives/C0PAYMENTS/p{ts.replace('.', '')}"}
    if backend == "matrix":
        event = f"$ev{n:010d}-ops"
        return {"backend": backend, "id": event, "room": "!ops:example.org",
                "url": f"https://matrix.to/#/!ops:example.org/{event}"}
    raise ValueError(backend)


@dataclass
class Filled:
    """What `fill` wrote: ids in order (`ids[14_999]` is case #15,000) and which are live how."""

    ids: list[str]
    status: dict[str, str] = field(default_factory=dict)
    recently_resolved: set[str] = field(default_factory=set)
    bound: dict[str, set[str]] = field(default_factory=dict)  # backend -> case ids

    def live_on(self, backend: str) -> set[str]:
        """Cases a poll round must read on `backend`: bound there, and open, mitigated or resolved recently."""
        return {c for c in self.bound[backend] if self.status[c] != "resolved" or c in self.recently_resolved}


def fill(store: Any, n: int, *, everywhere: tuple[int, ...] = (), index: bool = True, chunk: int = 5_000) -> Filled:
    """Write `n` cases: every 500th open, every 777th (from 1) mitigated, every 1000th (from 3) resolved a
    minute ago, the rest resolved in January. Case `i` is bound to a backend when `i % EVERY[backend] == 0`,
    and to all six when `i` is in `everywhere`."""
    out = Filled(ids=[], bound={b: set() for b in BACKENDS})
    january = datetime(2026, 1, 1, tzinfo=UTC)
    recent = format_ts(utcnow() - timedelta(seconds=60))
    for start in range(0, n, chunk):
        cases: list[tuple[Any, ...]] = []
        index_rows: list[dict[str, Any]] = []
        label_rows: list[dict[str, Any]] = []
        for i in range(start, min(n, start + chunk)):
            case_id = new_id()
            out.ids.append(case_id)
            created = format_ts(january + timedelta(minutes=i))
            status, resolved_at = "resolved", format_ts(january + timedelta(minutes=i + 30))
            resolved: str | None = resolved_at
            if i % 500 == 0:
                status, resolved = "open", None
            elif i % 777 == 1:
                status, resolved = "mitigated", None
            elif i % 1000 == 3:
                resolved = recent
                out.recently_resolved.add(case_id)
            out.status[case_id] = status
            fingerprint = FLAPPY if status == "resolved" and i % 100 == 7 else f"fp:{i:06d}"
            labels = {"alert": f"am-{i:06d}", "team": SHARED_LABEL}
            bindings = {b: thread(b, i) for b in BACKENDS if i % EVERY[b] == 0 or i in everywhere}
            for b in bindings:
                out.bound[b].add(case_id)
            cases.append((case_id, f"bulk case {i}", "payments", "warning", status, fingerprint, created, created,
                           resolved, GENESIS_HASH, json.dumps(bindings), json.dumps(labels)))
            for b, t in bindings.items():
                index_rows += binding_rows(case_id, b, t)
            label_rows += [{"case_id": case_id, "name": k, "value": v} for k, v in labels.items()]
        with store._tx() as c:
            c.executemany(
                "INSERT INTO cases (id, title, service, severity, status, fingerprint, created_at, updated_at, "
                "resolved_at, last_seq, last_hash, bindings, labels) VALUES (?,?,?,?,?,?,?,?,?,0,?,?,?)", cases)
            if index:
                c.executemany(INDEX_BINDING, index_rows)
                c.executemany(INDEX_LABEL, label_rows)
    return out


@dataclass
class Meter:
    """Statements a store ran and rows it fetched, through both `_q` and `_tx` (see `metered`)."""

    statements: int = 0
    rows: int = 0
    sql: list[str] = field(default_factory=list)


class _Cursor:
    def __init__(self, cur: Any, meter: Meter) -> None:
        self._cur, self._meter = cur, meter

    def fetchone(self) -> Any:
        row = self._cur.fetchone()
        self._meter.rows += row is not None
        return row

    def fetchall(self) -> list[Any]:
        rows = self._cur.fetchall()
        self._meter.rows += len(rows)
        return list(rows)

    def __iter__(self) -> Iterator[Any]:
        for row in self._cur:
            self._meter.rows += 1
            yield row

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cur, name)


class _Conn:
    def __init__(self, conn: Any, meter: Meter) -> None:
        self._conn, self._meter = conn, meter

    def execute(self, sql: Any, params: Any = ()) -> _Cursor:
        self._meter.statements += 1
        self._meter.sql.append(str(sql))
        return _Cursor(self._conn.execute(sql, params), self._meter)

    def executemany(self, sql: str, params: Any) -> Any:
        self._meter.statements += 1
        self._meter.sql.append(sql)
        return self._conn.executemany(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@contextmanager
def metered(store: Any) -> Iterator[Meter]:
    """Count what `store` runs inside the block: every statement (reads through `_q`, and everything in a
    write transaction) and every row fetched. The store object itself is patched, so this sees all its
    callers (webhook receiver, poller, find_case) and nothing else."""
    meter = Meter()
    real_q, real_tx = store._q, store._tx

    def q(sql: str, params: Any = ()) -> list[Any]:
        rows = real_q(sql, params)
        meter.statements += 1
        meter.rows += len(rows)
        meter.sql.append(sql)
        return rows

    @contextmanager
    def tx() -> Iterator[_Conn]:
        with real_tx() as c:
            yield _Conn(c, meter)

    store._q, store._tx = q, tx
    try:
        yield meter
    finally:
        del store._q, store._tx
