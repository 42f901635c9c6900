"""The primary agent's investigations: one owner per case at a time, fenced steps (shared SQL).

Any number of `sharedctx serve` replicas share one store. Each open investigation is a row
(migration 0015) holding the state machine's next step and what the finished steps learned. A
replica works on a case only while it holds the row's lease; every take-over bumps `lease_token`.

The choke point is `advance_investigation`: a step's entries and the step's checkpoint are ONE
transaction, and that transaction first checks that the lease token (and owner) are still the
caller's. So a step is either recorded and checkpointed together, or not at all; a replica that lost
its lease (paused, partitioned, or taken over after expiry) can finish its partner calls but records
nothing. Resuming from the checkpoint therefore never repeats a recorded step (docs/decisions.md
"failover: one owner per investigation, fenced steps").

Times are epoch seconds from the caller's clock, as in the outbox's leases: replicas on different
machines need clocks within a small fraction of the lease.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from ...model import CaseStatus, Entry, EntryDraft, format_ts, utcnow
from ..base import InvestigationLease
from .common import PreparedAppend, SQLBase, _json

# An investigation has work for a replica when it is not closed, its case is not resolved, and it is
# at a step the agent runs now (`awaiting-recovery` counts only once a resolved alert is waiting).
# Written on the table itself, never through a subquery over it: in `take_investigation` PostgreSQL
# re-checks these conditions on the row as a concurrent taker left it (after waiting for its lock),
# while a subquery would still read the old row, and several replicas would each take the lease.
HAS_WORK = """investigations.step NOT IN ('closed', 'failed')
      AND (investigations.step <> 'awaiting-recovery' OR investigations.resolved IS NOT NULL)
      AND EXISTS (SELECT 1 FROM cases c WHERE c.id = investigations.case_id AND c.status <> 'resolved')"""

# Free: never leased, released, or the holder stopped renewing it.
LEASE_FREE = "(investigations.lease_until IS NULL OR investigations.lease_until < :now)"

LEASE_COLS = "case_id, lease_token, owner, step, state, resolved"


class InvestigationsSQL(SQLBase):
    def _lease(self, r: Sequence[Any]) -> InvestigationLease:
        return InvestigationLease(case_id=r[0], token=int(r[1]), owner=r[2], step=r[3], state=_json(r[4]) or {},
                                  resolved=_json(r[5]) if r[5] else None)  # fmt: skip

    def _dump(self, value: Any) -> str:
        """JSON as it may be persisted: every string redacted, like every other value the store writes."""
        return json.dumps(self.redactor.sanitize(value), ensure_ascii=False, sort_keys=True)

    def begin_investigation(
        self,
        case_id: str,
        owner: str,
        lease_seconds: float,
        *,
        step: str,
        state: dict[str, Any],
        resolved: dict[str, Any] | None = None,
    ) -> InvestigationLease | None:
        """Create the case's investigation, leased to `owner`; None if the case already has one.

        The primary key makes this the one way an investigation starts: two replicas that both saw the
        case opened (or re-fired) cannot both begin it."""
        now = time.time()
        ts = format_ts(utcnow())
        with self._tx() as c:
            cur = c.execute(
                "INSERT INTO investigations (case_id, step, state, resolved, owner, lease_until, lease_token, "
                "created_at, updated_at) VALUES (?,?,?,?,?,?,1,?,?) ON CONFLICT(case_id) DO NOTHING",
                (case_id, step, self._dump(state), self._dump(resolved) if resolved else None, owner,
                 now + lease_seconds, ts, ts),
            )  # fmt: skip
            if cur.rowcount != 1:
                return None
        return InvestigationLease(case_id=case_id, token=1, owner=owner, step=step, state=self.redactor.sanitize(state),
                                  resolved=self.redactor.sanitize(resolved) if resolved else None)  # fmt: skip

    def take_investigation(self, case_id: str, owner: str, lease_seconds: float) -> InvestigationLease | None:
        """Lease the case's investigation to `owner` if it has work and its lease is free or expired.

        Bumps the fencing token, so whoever held it before can record nothing more. A waiting resolved
        alert turns `awaiting-recovery` into `verify` in the same statement."""
        now = time.time()
        with self._tx() as c:
            r = c.execute(
                f"""UPDATE investigations SET owner = :owner, lease_until = :until,
                        lease_token = lease_token + 1, updated_at = :ts,
                        step = CASE WHEN step = 'awaiting-recovery' THEN 'verify' ELSE step END
                    WHERE case_id = :case_id AND {HAS_WORK} AND {LEASE_FREE}
                    RETURNING {LEASE_COLS}""",
                {"owner": owner, "until": now + lease_seconds, "ts": format_ts(utcnow()), "case_id": case_id,
                 "now": now},
            ).fetchone()  # fmt: skip
        return self._lease(r) if r else None

    def orphaned_investigations(self, limit: int = 50) -> list[str]:
        """Case ids of investigations with work whose lease is free or expired: what a survivor takes."""
        rows = self._q(
            f"SELECT case_id FROM investigations WHERE {HAS_WORK} AND {LEASE_FREE} ORDER BY updated_at LIMIT :limit",
            {"now": time.time(), "limit": limit},
        )
        return [r[0] for r in rows]

    def renew_investigation(self, case_id: str, owner: str, token: int, lease_seconds: float) -> bool:
        """Heartbeat: push the lease out; False if it was lost (taken over or released)."""
        return self._update(
            "UPDATE investigations SET lease_until=? WHERE case_id=? AND owner=? AND lease_token=?",
            (time.time() + lease_seconds, case_id, owner, token),
        ) == 1  # fmt: skip

    def advance_investigation(
        self,
        case_id: str,
        owner: str,
        token: int,
        *,
        step: str,
        state: dict[str, Any],
        entries: Sequence[tuple[EntryDraft, Sequence[str], CaseStatus | None]],
        clear_resolved: bool = False,
        lease_seconds: float,
    ) -> list[Entry] | None:
        """Record a finished step's entries and checkpoint the next step, in ONE transaction, fenced.

        Returns the entries, or None (and nothing is written) if `owner` no longer holds the lease with
        `token`. `clear_resolved` consumes the waiting resolved alert (after a verification)."""
        prepared = [self._prepare_append(d, b, st) for d, b, st in entries]  # outside the tx, as `append` does
        with self._tx() as c:
            changed = c.execute(
                "UPDATE investigations SET step=?, state=?, updated_at=?, lease_until=?, "
                "resolved = CASE WHEN ? = 1 THEN NULL ELSE resolved END "
                "WHERE case_id=? AND owner=? AND lease_token=?",
                (step, self._dump(state), format_ts(utcnow()), time.time() + lease_seconds, int(clear_resolved),
                 case_id, owner, token),
            ).rowcount  # fmt: skip
            if changed != 1:
                return None
            return [self._write_append(c, p) for p in prepared]

    def release_investigation(self, case_id: str, owner: str, token: int) -> bool:
        """Give the lease back now (drain, or the step reached a wait), so another replica need not wait
        for it to expire; False if it was no longer ours."""
        return self._update(
            "UPDATE investigations SET owner=NULL, lease_until=NULL WHERE case_id=? AND owner=? AND lease_token=?",
            (case_id, owner, token),
        ) == 1  # fmt: skip

    def note_resolved(self, case_id: str, alert: dict[str, Any]) -> bool:
        """Leave a resolved alert for whoever owns (or next takes) the investigation; False if it has none."""
        return self._update(
            "UPDATE investigations SET resolved=?, updated_at=? WHERE case_id=? AND step NOT IN ('closed', 'failed')",
            (self._dump(alert), format_ts(utcnow()), case_id),
        ) == 1  # fmt: skip

    def get_investigation(self, case_id: str) -> InvestigationLease | None:
        """The investigation as stored (owner None when no replica holds it), for status and tests."""
        rows = self._q(f"SELECT {LEASE_COLS} FROM investigations WHERE case_id=?", (case_id,))
        return self._lease(rows[0]) if rows else None

    # JournalSQL's, through the MRO of SQLStore
    def _prepare_append(self, draft: EntryDraft, backends: Sequence[str], status: CaseStatus | None) -> PreparedAppend:
        raise NotImplementedError

    def _write_append(self, c: Any, p: PreparedAppend) -> Entry:
        raise NotImplementedError
