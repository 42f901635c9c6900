"""A replica's hold on one investigation: the fenced checkpoint, the heartbeat, the release.

`sharedctx serve` replicas share the store; each open investigation is owned by exactly one of them
at a time through a lease in the store (`sharedctx.store.sql.investigations`). This module is what
the owner does with it:

- `checkpoint` is the agent's `Investigation.checkpoint`: it validates the step's queued entries the
  way `Case.record` does and hands them, with the investigation's state, to the store's
  `advance_investigation`, which records them only if the lease is still ours;
- `heartbeat` renews the lease while the agent works, and cancels the work if the lease was lost;
- `release` gives the lease back at once (a drain, or the investigation reached a wait), so another
  replica takes over without waiting for the lease to expire.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import SharedCtxError
from ..model import CaseStatus, EntryDraft
from ..store.base import InvestigationLease
from .primary.state import Investigation, PendingEntry, Step

if TYPE_CHECKING:
    from ..context import SharedContext

__all__ = ["HeldInvestigation", "replica_name"]

log = logging.getLogger("sharedctx.agents.lease")


def replica_name() -> str:
    """Who holds a lease: host and pid for people reading the table, plus a random part so a restarted
    process that got the same pid is not mistaken for its predecessor."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class HeldInvestigation:
    """One investigation this replica holds (`lease`), and what it does while it holds it."""

    ctx: SharedContext
    lease: InvestigationLease
    seconds: float  # lease length; renewed every third of it

    @property
    def owner(self) -> str:
        assert self.lease.owner is not None
        return self.lease.owner

    async def checkpoint(self, inv: Investigation, finished: Step, entries: list[PendingEntry]) -> bool:
        """Record `entries` and persist `inv` at its next step, in one fenced transaction."""
        return await self.advance(inv.step, inv.to_state(), entries, clear_resolved=finished == Step.VERIFY)

    async def advance(self, step: Step, state: Mapping[str, Any], entries: list[PendingEntry], *,
                      clear_resolved: bool = False) -> bool:
        """`checkpoint` for a state given as it is stored (also what parks a state this code cannot read)."""
        ctx = self.ctx
        case_id = self.lease.case_id
        drafts: list[tuple[EntryDraft, list[str], CaseStatus | None]] = []
        for p in entries:
            kw = p.kwargs
            draft, status = ctx._draft(case_id, p.kind, p.title, p.body, evidence=kw.get("evidence", ()),
                                       author=kw.get("author"), ref=kw.get("ref"), trace_id=kw.get("trace_id"),
                                       attrs=kw.get("attrs"), status=kw.get("status"))  # fmt: skip
            drafts.append((draft, ctx.deliver_to(draft), status))
        recorded = await asyncio.to_thread(
            ctx.store.advance_investigation, case_id, self.owner, self.lease.token, step=step.value,
            state=dict(state), entries=drafts, clear_resolved=clear_resolved, lease_seconds=self.seconds,
        )  # fmt: skip
        if recorded is None:
            return False
        if recorded and ctx.worker.running:
            ctx.worker.wake()
        return True

    async def heartbeat(self, work: asyncio.Task[object]) -> None:
        """Renew the lease every third of its length until cancelled; cancel `work` if it was lost.

        A store that does not answer is retried: if it stays away past the lease, the fence in
        `checkpoint` keeps this replica from recording anything once another one took over."""
        while True:
            await asyncio.sleep(self.seconds / 3)
            try:
                held = await asyncio.to_thread(
                    self.ctx.store.renew_investigation, self.lease.case_id, self.owner, self.lease.token, self.seconds
                )
            except SharedCtxError as exc:
                log.warning("case %s: could not renew the investigation lease: %s", self.lease.case_id, exc)
                continue
            if not held:
                log.warning("case %s: the investigation lease was taken over; stopping here", self.lease.case_id)
                work.cancel()
                return

    def release(self) -> bool:
        """Give the lease back now; False if it was no longer ours (or the store did not answer: then it
        simply expires)."""
        try:
            return self.ctx.store.release_investigation(self.lease.case_id, self.owner, self.lease.token)
        except SharedCtxError as exc:
            log.warning("case %s: could not release the investigation lease: %s", self.lease.case_id, exc)
            return False
