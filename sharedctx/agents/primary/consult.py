"""Steps (3)+(4), the partner side: connect to each partner, ask it what the reasoner planned, invite it in.

Every failure (cannot connect, slow, dead, malformed output, anything unexpected) becomes a `PartnerAnswer`
with an `error_kind`, recorded as a note; the investigation goes on with what it has. `PrimaryAgent` mixes
this in; its `_consult_partners` and `_verify` handlers (in `agent`) call it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio

from ...access import INVITE_ATTR, Access
from ...channel import CapabilityInfo, CapabilityInput, Finding, PartnerClient
from ...channel.trace import child_traceparent
from ...config import PartnerSettings
from ...errors import PartnerBadOutput, PartnerTimeout, PartnerUnavailable
from ...model import Author, EntryKind, utcnow
from ..reasoning import PartnerAnswer, Question
from .state import Investigation, PendingEntry, Step


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, PartnerTimeout | TimeoutError):
        return "timeout"
    if isinstance(exc, PartnerUnavailable):
        return "unavailable"
    if isinstance(exc, PartnerBadOutput):
        return "bad_output"
    return "error"


class PartnerConsultation:
    """Talking to the partners named in `[[partners]]`; a mixin of `PrimaryAgent`, which sets these attributes."""

    partners: list[PartnerSettings]
    author: Author
    client_factory: Callable[[PartnerSettings], PartnerClient]
    window: timedelta

    if TYPE_CHECKING:  # defined by PrimaryAgent

        def _emit(self, step: str, message: str) -> None: ...
        async def _record(self, inv: Investigation, kind: EntryKind, title: str, body: str = "", **kw: Any) -> None: ...
        async def _commit(self, inv: Investigation, next_step: Step) -> None: ...

    def _input(self, inv: Investigation, q: Question, *, recovery: bool = False) -> CapabilityInput:
        now = utcnow()
        start = now - timedelta(minutes=5) if recovery else (inv.alert.starts_at or now) - self.window
        return CapabilityInput(case_id=inv.case.id, service=inv.alert.service, start=min(start, now), end=now,
                               question=q.question, params=q.params)  # fmt: skip

    async def _ask_partner(
        self,
        inv: Investigation,
        settings: PartnerSettings,
        plan: Callable[[str, list[CapabilityInfo]], Awaitable[list[Question]]],
        recovery: bool,
    ) -> list[PartnerAnswer]:
        """Connect to one partner, ask what `plan` says, and turn every failure into an answer."""
        name = settings.name
        answers: list[PartnerAnswer] = []

        async def ask(client: PartnerClient, q: Question) -> None:
            tp = child_traceparent(inv.traceparent)
            self._emit("consult", f"asking {name}: {q.capability}")

            def progress(done: float, total: float | None, message: str | None) -> None:
                self._emit("progress", f"{name}/{q.capability}: {message or f'{done:g}/{total or 0:g}'}")

            try:
                finding: Finding = await client.call(q.capability, self._input(inv, q, recovery=recovery),
                                                     traceparent=tp, on_progress=progress)  # fmt: skip
                answers.append(PartnerAnswer(partner=name, capability=q.capability, finding=finding,
                                             trace_id=inv.trace_id))  # fmt: skip
                self._emit("finding", f"{name}/{q.capability}: {finding.summary}")
            except Exception as exc:  # PartnerError and anything unexpected: record it, carry on
                answers.append(PartnerAnswer(partner=name, capability=q.capability, error=str(exc) or repr(exc),
                                             error_kind=_error_kind(exc), trace_id=inv.trace_id))  # fmt: skip
                self._emit("partner-failed", f"{name}/{q.capability}: {exc}")

        try:
            async with self.client_factory(settings) as client:
                offered = await client.capabilities()
                questions = await plan(name, offered)
                if not questions:
                    answers.append(PartnerAnswer(partner=name, capability="(none)", error_kind="error",
                                                 error=f"offers nothing relevant ({', '.join(c.name for c in offered)})"))  # noqa: E501
                async with anyio.create_task_group() as tg:
                    for q in questions:
                        tg.start_soon(ask, client, q)
        except Exception as exc:  # could not connect, or the capability list failed
            what = "could not connect or list capabilities" if not answers else "the connection failed"
            answers.append(PartnerAnswer(partner=name, capability="(connect)", error=f"{what}: {exc}",
                                         error_kind=_error_kind(exc), trace_id=inv.trace_id))  # fmt: skip
            self._emit("partner-failed", f"{name}: {exc}")
        return answers

    async def _ask_all(
        self,
        inv: Investigation,
        plan: Callable[[str, list[CapabilityInfo]], Awaitable[list[Question]]],
        *,
        recovery: bool = False,
    ) -> list[PartnerAnswer]:
        results: list[list[PartnerAnswer]] = [[] for _ in self.partners]

        async def one(i: int, s: PartnerSettings) -> None:
            results[i] = await self._ask_partner(inv, s, plan, recovery)

        async with anyio.create_task_group() as tg:
            for i, s in enumerate(self.partners):
                tg.start_soon(one, i, s)
        return [a for r in results for a in r]

    async def _invite_partners(self, inv: Investigation) -> None:
        """Passing the case id to a partner is the invitation: record it, so the partner may read and
        write this case (and only this one) through the shared-context MCP server.

        Committed before any partner is called (a checkpoint inside CONSULT, `inv.invited`), so a partner
        that writes at once is already allowed to, and a resumed CONSULT does not invite again."""
        if inv.invited:
            return
        if inv.checkpoint is None:  # no checkpoint: Access.invite, idempotent by reading the case
            ctx = inv.case.ctx
            access = Access(ctx.config, ctx.store)
            for s in self.partners:
                await anyio.to_thread.run_sync(
                    functools.partial(access.invite, ctx, inv.case.id, s.name, by=self.author, trace_id=inv.trace_id)
                )
            inv.invited = True
            return
        notes = await asyncio.to_thread(inv.case.timeline, kinds=[EntryKind.NOTE.value])
        done = {e.attrs.get(INVITE_ATTR) for e in notes if e.author.kind != "partner"}
        for s in self.partners:
            if s.name not in done:
                inv.pending.append(PendingEntry(EntryKind.NOTE, f"Invited partner {s.name} into this case",
                                                f"{self.author} invited the partner agent `{s.name}` to read and "
                                                "write this case.",
                                                {"author": self.author, "trace_id": inv.trace_id,
                                                 "attrs": {INVITE_ATTR: s.name}}))  # fmt: skip
        inv.invited = True
        await self._commit(inv, Step.CONSULT)

    async def _record_failures(self, inv: Investigation, answers: list[PartnerAnswer]) -> None:
        for a in answers:
            if a.error is not None:
                what = {"timeout": "did not answer in time", "unavailable": "is unavailable",
                        "bad_output": "answered with malformed output"}.get(a.error_kind or "", "failed")  # fmt: skip
                where = "" if a.capability.startswith("(") else f" ({a.capability})"
                await self._record(
                    inv, EntryKind.NOTE, f"Partner {a.partner} {what}{where}",
                    f"{a.error}\n\nThe investigation continues without this answer.",
                    attrs={"partner": a.partner, "capability": a.capability, "error_kind": a.error_kind},
                )  # fmt: skip
