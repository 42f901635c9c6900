"""`Case`, the handle an agent holds on one incident, and `NewEntry`, the entry a case is opened with.

Why a module: a handle keeps no state of its own beyond the case id (every read goes to the store, every
write to `SharedContext._record`), so it depends on the journal only through the context it was given.
Apart from `SharedContext`, what an agent may do with one case reads in one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..decisions import Decision, get_decision
from ..errors import InvalidEntry
from ..model import (
    Author,
    CaseRecord,
    CaseStatus,
    Entry,
    EntryKind,
    Evidence,
    VerifyReport,
)

if TYPE_CHECKING:
    from ..handoff import Handoff
    from .core import SharedContext


@dataclass(frozen=True)
class NewEntry:
    """An entry to record together with a new case: `ctx.open_case(..., first=NewEntry(...))`."""

    kind: str | EntryKind
    title: str
    body: str | bytes = ""
    evidence: Sequence[Evidence | Mapping[str, Any]] = ()
    author: Author | str | None = None
    trace_id: str | None = None
    attrs: Mapping[str, Any] | None = None


class Case:
    """A handle on one case. Cheap to create; every read goes to the store, so it is never stale."""

    def __init__(self, ctx: SharedContext, record: CaseRecord, *, created: bool = False) -> None:
        self.ctx = ctx
        self.id = record.id
        self._record = record
        self.created = created  # False when `open_case` found an open case with the same fingerprint

    def __repr__(self) -> str:
        return f"<Case {self.id} {self._record.title!r} {self._record.status.value}>"

    @property
    def info(self) -> CaseRecord:
        """The case as stored now (status, bindings, last sequence number)."""
        self._record = self.ctx.store.get_case(self.id)
        return self._record

    @property
    def title(self) -> str:
        return self._record.title

    @property
    def status(self) -> CaseStatus:
        return self.info.status

    def record(
        self,
        kind: str | EntryKind,
        title: str,
        body: str | bytes = "",
        *,
        evidence: Iterable[Evidence | Mapping[str, Any]] = (),
        author: Author | str | None = None,
        ref: str | None = None,
        trace_id: str | None = None,
        attrs: Mapping[str, Any] | None = None,
        status: CaseStatus | str | None = None,
    ) -> Entry:
        """Append one entry; durable when this returns. Raises `InvalidEntry` and records nothing if bad."""
        return self.ctx._record(
            self.id, kind, title, body, evidence=evidence, author=author, ref=ref,
            trace_id=trace_id, attrs=attrs, status=status,
        )  # fmt: skip

    async def arecord(self, *args: Any, **kwargs: Any) -> Entry:
        """`record()` for asyncio code: the same call, off the event loop."""
        import asyncio  # here, not at the top: a CLI command that never awaits should not import asyncio

        return await asyncio.to_thread(self.record, *args, **kwargs)

    async def request_decision(
        self,
        question: str,
        options: Sequence[str] = ("approve", "reject"),
        *,
        timeout: float | None = None,
        on_timeout: str | None = None,
        default: str | None = None,
        body: str = "",
        author: Author | str | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> Any:
        """Ask the people on every backend of this case, then wait (asyncio) for the first authorised
        answer or the timeout policy. Returns a `sharedctx.decisions.Decision`. See docs/humans.md."""
        from ..decisions import request_decision

        return await request_decision(
            self, question, options, timeout=timeout, on_timeout=on_timeout, default=default,
            body=body, author=author, attrs=attrs,
        )  # fmt: skip

    def timeline(
        self, *, since: int = 0, kinds: Sequence[str] | None = None, limit: int | None = None
    ) -> list[Entry]:
        """Entries in sequence order, after sequence number `since`."""
        return self.ctx.store.entries(self.id, since_seq=since, kinds=kinds, limit=limit)

    def resolve(
        self,
        summary: str,
        *,
        title: str = "Resolved",
        author: Author | str | None = None,
        evidence: Iterable[Evidence | Mapping[str, Any]] = (),
        trace_id: str | None = None,
    ) -> Entry:
        """Record the resolution; the case becomes `resolved` and each backend closes its thread."""
        return self.record(
            EntryKind.RESOLUTION, title, summary, author=author, evidence=evidence,
            trace_id=trace_id, status=CaseStatus.RESOLVED,
        )  # fmt: skip

    def handoff(self) -> Handoff:
        """One screen for whoever picks the case up next: state, findings, actions, pending decisions."""
        from ..handoff import handoff

        return handoff(self.info, self.timeline())

    def decision(self, request_id: str) -> Decision:
        """Where a decision request of this case stands (`sharedctx.decisions.get_decision`)."""
        if self.ctx.store.get_entry(request_id).case_id != self.id:
            raise InvalidEntry(f"decision request {request_id} belongs to another case")
        return get_decision(self.ctx.store, request_id)

    def verify(self) -> VerifyReport:
        """Recompute the hash chain and check it against the case's recorded head and the checkpoints;
        the report names the entry where it breaks (see `sharedctx.verify`)."""
        from ..verify import verify_journal

        return verify_journal(self.ctx.store, self.id)[0]
