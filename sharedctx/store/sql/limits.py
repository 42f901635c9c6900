"""Rate budgets shared by every process on one store: a sliding-window log per key, and a shared pause.

Why in the store: every `sharedctx worker` / `serve` process delivers, so a budget counted in each
process's memory lets N processes send N times a service's limit (GitHub's secondary limit trips at 80
content-creating requests a minute). The store is the one thing they all share, and its transactions
make check-and-take atomic:

- SQLite: the store's `_tx` is `BEGIN IMMEDIATE`, so one process at a time reads the log and appends.
- PostgreSQL: `SELECT … FOR UPDATE` on the key's `rate_budgets` row queues takers of the *same* key
  (other keys and the outbox are not blocked).

Either way two processes can never both take the last slot. The transaction only decides; nobody
sleeps inside it (the caller, `SharedPacer`, waits outside and asks again). A process killed in the
middle loses its transaction: SQLite's lock dies with the process, PostgreSQL aborts the transaction of
a dropped connection, and a slot is only ever recorded by a commit — so nothing leaks and nothing wedges.

Times are epoch seconds from the caller's clock (all processes must agree on the time, as they do
for leases); the window rule is the in-memory `Pacer`'s: a slot taken at `at` counts while
`now - at < period`. The clock is read *inside* the transaction, and never earlier than the newest slot:
a process that read the time and then waited for the lock would otherwise decide in the past, after a
later one had already forgotten slots that were still inside the stale window (a test caught 22 of 20).
So admissions are in time order per key, as in one process, whatever the waits and the clocks' skew.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .common import SQLBase

# Every statement this module runs, by name.
ENSURE_BUDGET = "INSERT INTO rate_budgets (key) VALUES (?) ON CONFLICT (key) DO NOTHING"
LOCK_BUDGET = "SELECT held_until FROM rate_budgets WHERE key=?"  # + FOR UPDATE on PostgreSQL
NEWEST_SLOT = "SELECT max(at) FROM rate_slots WHERE key=?"
FORGET_OLD = "DELETE FROM rate_slots WHERE key=? AND at <= ?"
COUNT_IN_WINDOW = "SELECT count(*) FROM rate_slots WHERE key=? AND at > ?"
NTH_IN_WINDOW = "SELECT at FROM rate_slots WHERE key=? AND at > ? ORDER BY at LIMIT 1 OFFSET ?"
TAKE_SLOT = "INSERT INTO rate_slots (key, at) VALUES (?, ?)"
EXTEND_HOLD = "UPDATE rate_budgets SET held_until=?, hold_reason=? WHERE key=? AND held_until < ?"


class RateLimitsSQL(SQLBase):
    def take_slot(self, key: str, limits: Sequence[tuple[int, float]], clock: Callable[[], float]) -> float:
        """Take one slot of `key`'s budget now and return 0.0, or take nothing and return how many
        seconds until one could be free (a hold, or the window that is full). `clock` gives epoch seconds.

        `limits` is `(cap, period)` pairs over one log: GitHub's `[(80, 60), (500, 3600)]` counts every
        admitted request against both. Processes sharing a key must use the same limits (they do: the
        key names what is limited).
        """
        horizon = max(period for _, period in limits)
        with self._tx() as c:
            c.execute(ENSURE_BUDGET, (key,))
            held_until = float(c.execute(LOCK_BUDGET + self.FOR_UPDATE, (key,)).fetchone()[0])
            newest = c.execute(NEWEST_SLOT, (key,)).fetchone()[0]
            now = max(clock(), float(newest) if newest is not None else 0.0)  # under the lock: see above
            c.execute(FORGET_OLD, (key, now - horizon))
            wait = held_until - now
            for cap, period in limits:
                start = now - period
                n = int(c.execute(COUNT_IN_WINDOW, (key, start)).fetchone()[0])
                if n >= cap:  # the slot frees when the (n - cap + 1)-th oldest in the window leaves it
                    at = float(c.execute(NTH_IN_WINDOW, (key, start, n - cap)).fetchone()[0])
                    wait = max(wait, at + period - now)
            if wait > 0:
                return wait
            c.execute(TAKE_SLOT, (key, now))
            return 0.0

    def hold_budget(self, key: str, until: float, reason: str | None = None) -> None:
        """Nobody takes a slot of `key` before `until` (a 429 / secondary limit seen by one process
        pauses all of them). Only ever extends a hold."""
        with self._tx() as c:
            c.execute(ENSURE_BUDGET, (key,))
            c.execute(EXTEND_HOLD, (until, self._clean(reason), key, until))

    def budget_state(self, key: str, period: float, now: float) -> tuple[float, int]:
        """`(held_until, slots taken in the last `period` seconds)` for `key`: for status output and tests."""
        held = self._q("SELECT held_until FROM rate_budgets WHERE key=?", (key,))
        n = self._q(COUNT_IN_WINDOW, (key, now - period))
        return (float(held[0][0]) if held else 0.0), int(n[0][0])
