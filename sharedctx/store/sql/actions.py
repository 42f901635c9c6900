"""Human actions already taken in (dedupe across webhook and polling, replay protection): shared SQL."""

from __future__ import annotations

from ...model import (
    format_ts,
    utcnow,
)
from .common import SQLBase


class HumanActionsSQL(SQLBase):
    # -- human actions taken in (dedupe across webhook and polling, replay protection) -------------
    def claim_action(self, scope: str, key: str, case_id: str | None = None) -> bool:
        """Claim `(scope, key)`; True only for the first caller, in any process (primary key)."""
        key = self._clean(key) or key
        with self._tx() as c:
            cur = c.execute(
                "INSERT INTO human_actions (scope, key, case_id, seen_at) VALUES (?,?,?,?) "
                "ON CONFLICT(scope, key) DO NOTHING",
                (scope, key, case_id, format_ts(utcnow())),
            )
            return bool(cur.rowcount == 1)

    def link_action(self, scope: str, key: str, entry_id: str) -> None:
        self._update("UPDATE human_actions SET entry_id=? WHERE scope=? AND key=?", (entry_id, scope, self._clean(key)))

    def action_entry(self, scope: str, key: str) -> str | None:
        rows = self._q("SELECT entry_id FROM human_actions WHERE scope=? AND key=?", (scope, self._clean(key)))
        return rows[0][0] if rows else None

    def release_action(self, scope: str, key: str) -> None:
        """Forget a claim whose recording failed, so the next delivery or poll can take it again."""
        self._update("DELETE FROM human_actions WHERE scope=? AND key=?", (scope, self._clean(key)))

