"""The outbox (fenced claims and state changes), backend state and read-back cursors: shared SQL."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from ...model import (
    BackendState,
    Delivery,
    format_ts,
    parse_ts,
    utcnow,
)
from ..base import (
    OutboxHealth,
)
from .common import DELIVERY_COLS, OUTBOX_HEALTH_SQL, PING_SQL, SQLBase, _dt, _json, equal_to

# A delivery is claimable when its backend is not stopped, it is due, not leased, and the head of its
# (case, backend) line: no earlier pending row of the line that is not held (held rows wait for a human
# decision and do not block the line).
#
# The head check is a scalar subquery on purpose. Written as NOT EXISTS, PostgreSQL plans it as an
# anti-join over every pending row, then sorts, then takes LIMIT: each claim cost O(pending²) (31 ms at
# 480 pending rows, growing fast), paid by every worker on every claim. A scalar subquery stays a probe
# per row (index `outbox_head`); with index `outbox_claim` on (backend, next_attempt_at, id) the claim
# reads rows in claim order and stops at LIMIT, whatever the table's statistics say (migration 0018).
CLAIMABLE = """o.state = 'pending' AND o.backend = :backend AND o.next_attempt_at <= :now
      AND (o.lease_until IS NULL OR o.lease_until < :now)
      AND COALESCE((SELECT min(p.seq) FROM outbox p WHERE p.case_id = o.case_id AND p.backend = o.backend
          AND p.state = 'pending' AND COALESCE(p.last_error_kind, '') <> 'held'), o.seq) >= o.seq
      AND NOT EXISTS (SELECT 1 FROM backend_state s WHERE s.name = :backend AND s.state = 'stopped')"""


class OutboxSQL(SQLBase):
    # -- outbox -----------------------------------------------------------------------------------
    def _delivery(self, r: Sequence[Any]) -> Delivery:
        return Delivery(
            id=r[0],
            entry_id=r[1],
            case_id=r[2],
            seq=r[3],
            backend=r[4],
            state=r[5],
            attempts=r[6],
            next_attempt_at=_dt(r[7]),
            last_error=r[8],
            last_error_kind=r[9],
            external=_json(r[10]) if r[10] else None,
            created_at=_dt(r[11]),
            delivered_at=_dt(r[12]) if r[12] else None,
            lease_token=int(r[13] or 0),
            sent_possibly=bool(r[14]),
        )

    def claim(self, backend: str, owner: str, limit: int, lease_seconds: float) -> list[Delivery]:
        """Lease up to `limit` deliveries that are each the head of their (case, backend) line.

        Every claim bumps the row's `lease_token` (the fencing token): whoever held an expired lease
        on it before can no longer change its state (see `_fenced`)."""
        now = time.time()
        rows = self._one(
            f"""UPDATE outbox SET lease_until = :lease, lease_owner = :owner, attempts = attempts + 1,
                lease_token = lease_token + 1
            WHERE id IN (
                SELECT o.id FROM outbox o WHERE {CLAIMABLE}
                ORDER BY o.next_attempt_at, o.id LIMIT :limit{self.SKIP_LOCKED})
            RETURNING {DELIVERY_COLS}""",
            {"lease": now + lease_seconds, "owner": owner, "backend": backend, "now": now, "limit": limit},
        )
        return sorted((self._delivery(r) for r in rows), key=lambda d: d.id)

    def has_due(self, backend: str) -> bool:
        """Would `claim` find anything? A read, so idle lanes never take the write lock to find out."""
        rows = self._q(
            f"SELECT 1 FROM outbox o WHERE {CLAIMABLE} LIMIT 1", {"backend": backend, "now": time.time()}
        )
        return bool(rows)

    def _fenced(self, sql: str, params: Sequence[Any], delivery_id: int, token: int | None, *,
                durable: bool = True) -> bool:
        """Run a state change on one delivery, only while `token` is still its lease token.

        The one choke point for outbox state changes: True if the row changed, False if the lease was
        lost (another worker claimed the row since) or the row is no longer pending. `token=None` is for
        operators' tools acting outside any lease."""
        where = " WHERE id=? AND state='pending'"
        args = [*params, delivery_id]
        if token is not None:
            where += " AND lease_token=?"
            args.append(token)
        return self._update(sql + where, args, durable=durable) == 1

    def mark_attempted(self, delivery_id: int, token: int) -> bool:
        """Commit "this delivery may have been sent" before any network I/O for it (see migration 0004)."""
        return self._fenced("UPDATE outbox SET sent_possibly=1", (), delivery_id, token)

    def renew_lease(self, delivery_id: int, token: int, lease_seconds: float) -> bool:
        """Heartbeat: push the lease out while the delivery is in flight; False if it was lost."""
        return self._fenced("UPDATE outbox SET lease_until=?", (time.time() + lease_seconds,), delivery_id, token,
                            durable=False)  # a renewal lost in a crash only shortens a lease

    def mark_delivered(self, delivery_id: int, external: dict[str, Any], *, token: int | None = None) -> bool:
        """Record a delivery as done. Not waited for on disk (PostgreSQL: no fsync on the delivery's path):
        a database crash that loses this commit leaves the row pending with `sent_possibly` already durable,
        so the next attempt finds the copy by `lookup` and adopts it. No later entry of the case can have
        been sent meanwhile: its claim saw this commit, so its own durable commits flush this one first."""
        return self._fenced(
            "UPDATE outbox SET state='delivered', delivered_at=?, external=?, lease_until=NULL, last_error=NULL",
            (time.time(), json.dumps(self.redactor.sanitize(external))), delivery_id, token, durable=False,
        )  # fmt: skip

    def reschedule(
        self, delivery_id: int, *, error: str, kind: str, delay: float, token: int | None = None
    ) -> bool:
        return self._fenced(
            "UPDATE outbox SET next_attempt_at=?, last_error=?, last_error_kind=?, lease_until=NULL",
            (time.time() + delay, self._clean(error), kind), delivery_id, token,
        )  # fmt: skip

    def mark_dead(self, delivery_id: int, *, error: str, kind: str, token: int | None = None) -> bool:
        return self._fenced(
            "UPDATE outbox SET state='dead', last_error=?, last_error_kind=?, lease_until=NULL",
            (self._clean(error), kind), delivery_id, token,
        )  # fmt: skip

    def release(self, delivery_id: int, *, error: str, kind: str, token: int | None = None) -> bool:
        """Give a claimed delivery back without counting the attempt (e.g. its backend was stopped)."""
        return self._fenced(
            "UPDATE outbox SET attempts=CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, "
            "lease_until=NULL, last_error=?, last_error_kind=?",
            (self._clean(error), kind), delivery_id, token,
        )  # fmt: skip

    def outbox_counts(self) -> dict[str, dict[str, int]]:
        """Per backend: pending, held (pending until a human decides), delivered, dead; and `declined`, the
        dead letters a human declined on purpose (a subset of dead)."""
        out: dict[str, dict[str, int]] = {}
        rows = self._q(
            "SELECT backend, CASE WHEN state = 'pending' AND last_error_kind = 'held' THEN 'held' "
            "ELSE state END AS st, count(*), "
            "sum(CASE WHEN last_error_kind = 'declined' THEN 1 ELSE 0 END) FROM outbox GROUP BY 1, 2"
        )
        for backend, state, n, declined in rows:
            c = out.setdefault(backend, {"pending": 0, "held": 0, "delivered": 0, "dead": 0, "declined": 0})
            c[state] = n
            if state == "dead":
                c["declined"] = int(declined or 0)
        return out

    def outbox_health(self) -> dict[str, OutboxHealth]:
        """Per backend with live rows: pending / held / dead / declined counts and the oldest pending time."""
        return {
            b: OutboxHealth(backend=b, pending=int(p or 0), held=int(h or 0), dead=int(d or 0),
                            declined=int(x or 0), oldest_pending_at=float(o) if o is not None else None)
            for b, p, h, d, x, o in self._q(OUTBOX_HEALTH_SQL)
        }  # fmt: skip

    def ping(self) -> None:
        """Raise if the store cannot answer a query (for `/readyz`)."""
        self._q(PING_SQL)

    def list_deliveries(
        self, *, state: str | None = None, backend: str | None = None, limit: int = 100
    ) -> list[Delivery]:
        where, params = equal_to(state=state, backend=backend)
        rows = self._q(f"SELECT {DELIVERY_COLS} FROM outbox WHERE {where} ORDER BY id LIMIT ?", [*params, limit])
        return [self._delivery(r) for r in rows]

    def requeue_dead(self, *, backend: str | None = None, ids: Sequence[int] | None = None) -> int:
        sql = "UPDATE outbox SET state='pending', attempts=0, next_attempt_at=?, lease_until=NULL WHERE state='dead'"
        params: list[Any] = [time.time()]
        if backend:
            sql += " AND backend=?"
            params.append(backend)
        if ids:
            sql += f" AND id IN ({','.join('?' * len(ids))})"
            params.extend(ids)
        with self._tx() as c:
            return c.execute(sql, params).rowcount

    def next_due(self, backend: str) -> float | None:
        r = self._q("SELECT min(next_attempt_at) FROM outbox WHERE state='pending' AND backend=?", (backend,))
        return float(r[0][0]) if r and r[0][0] is not None else None

    # -- backend state, cursors -------------------------------------------------------------------
    def get_backend_state(self, name: str) -> BackendState:
        rows = self._q("SELECT state, reason, since FROM backend_state WHERE name=?", (name,))
        if not rows:
            return BackendState(name=name)
        st, reason, since = rows[0]
        return BackendState(name=name, state=st, reason=reason, since=parse_ts(since) if since else None)

    def backend_states(self) -> list[BackendState]:
        """Every backend with a recorded state (running or stopped)."""
        return [
            BackendState(name=n, state=st, reason=reason, since=parse_ts(since) if since else None)
            for n, st, reason, since in self._q("SELECT name, state, reason, since FROM backend_state ORDER BY name")
        ]

    def set_backend_state(self, name: str, state: str, reason: str | None) -> None:
        self._update(
            "INSERT INTO backend_state (name, state, reason, since) VALUES (?,?,?,?) "
            "ON CONFLICT(name) DO UPDATE SET state=excluded.state, reason=excluded.reason, since=excluded.since",
            (name, state, self._clean(reason), format_ts(utcnow())),
        )

    def get_cursor(self, backend: str, case_id: str) -> str | None:
        rows = self._q("SELECT cursor FROM cursors WHERE backend=? AND case_id=?", (backend, case_id))
        return rows[0][0] if rows else None

    def set_cursor(self, backend: str, case_id: str, cursor: str | None) -> None:
        self._update(
            "INSERT INTO cursors (backend, case_id, cursor, updated_at) VALUES (?,?,?,?) "
            "ON CONFLICT(backend, case_id) DO UPDATE SET cursor=excluded.cursor, updated_at=excluded.updated_at",
            (backend, case_id, self._clean(cursor), format_ts(utcnow())),
        )

