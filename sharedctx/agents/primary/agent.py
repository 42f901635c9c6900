"""`PrimaryAgent`: drives an investigation's state machine, one step handler per `Step`, and commits each step.

See the package docstring for the seven steps; the state it persists is in `state`, the partner
calls of (3)+(4) in `consult`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from ...channel import CapabilityInfo, PartnerClient
from ...channel.trace import child_traceparent, new_traceparent
from ...config import PartnerSettings
from ...context import Case
from ...intake import Alert
from ...model import Author, CaseStatus, EntryKind, Evidence
from ..reasoning import Question, Reasoner, RemediationPlan, RuleBasedReasoner
from ..runbooks import CHANGES_NOTHING, DEFAULT_RUNBOOKS, Runbook, RunbookResult
from .consult import PartnerConsultation
from .state import _STOPS, Investigation, LeaseLost, PendingEntry, Step

__all__ = ["PrimaryAgent"]

log = logging.getLogger("sharedctx.agents.primary")

OnEvent = Callable[[str, str], None]
"""`on_event(step, message)`: progress for a terminal or a log; must not block."""


# What the handoff adds when the runbook did not report done. A runbook started for real (`acting`) that did not
# report done may have acted anyway (resumed after its server stopped, or failed half way through a rollback):
# telling the person "Nothing was changed." there would send them to act on a system already changed.
_UNCHANGED = {False: " Nothing was changed.", True: " It was started for real: check what it changed before acting."}


def _pct(x: float) -> str:
    return f"{x:.0%}"


class PrimaryAgent(PartnerConsultation):
    """Runs investigations for cases, talking to the partners named in `[[partners]]`."""

    def __init__(
        self,
        partners: Sequence[PartnerSettings] = (),
        *,
        name: str = "primary",
        reasoner: Reasoner | None = None,
        runbooks: Mapping[str, Runbook] | None = None,
        dry_run: bool = True,
        on_event: OnEvent | None = None,
        client_factory: Callable[[PartnerSettings], PartnerClient] = PartnerClient,
        window: timedelta = timedelta(minutes=30),
    ) -> None:
        self.partners = list(partners)
        self.author = Author(kind="primary", name=name)
        self.reasoner: Reasoner = reasoner or RuleBasedReasoner()
        self.runbooks = dict(DEFAULT_RUNBOOKS if runbooks is None else runbooks)
        self.dry_run = dry_run
        self.on_event = on_event
        self.client_factory = client_factory
        self.window = window
        self._handlers: dict[Step, Callable[[Investigation], Awaitable[Step]]] = {
            Step.TRIAGE: self._triage,
            Step.CONSULT: self._consult_partners,
            Step.CORRELATE: self._correlate,
            Step.REMEDIATE: self._remediate,
            Step.HANDOFF: self._handoff,
            Step.VERIFY: self._verify,
        }

    # -- the public flow ---------------------------------------------------------------------------

    async def investigate(self, case: Case, alert: Alert, *, traceparent: str | None = None) -> Investigation:
        """Steps 2-6 for a freshly opened case; returns waiting for the alert to resolve."""
        inv = Investigation(case=case, alert=alert, traceparent=traceparent or new_traceparent())
        return await self.run(inv)

    async def verify_and_close(
        self, case: Case, resolved: Alert, *, investigation: Investigation | None = None
    ) -> Investigation:
        """Step 7: the alert resolved; check with the partners, record the verification, close if verified."""
        inv = investigation or Investigation(case=case, alert=resolved, traceparent=self._trace_of(case))
        inv.resolved_alert = resolved
        inv.step = Step.VERIFY
        return await self.run(inv)

    async def run(self, inv: Investigation) -> Investigation:
        """Drive the state machine from `inv.step` until it has to wait for the world (or is done).

        Stops early, at a checkpoint, when `inv.should_stop()` says so (a draining server). Raises
        `LeaseLost` if another replica took the investigation over: the step in hand is not recorded."""
        while inv.step not in _STOPS:
            if inv.should_stop is not None and inv.should_stop():
                self._emit("drain", f"case {inv.case.id}: stopping before {inv.step.value}; another server resumes it")
                return inv
            handler = self._handlers[inv.step]
            inv.history.append(inv.step)
            await self._commit(inv, await handler(inv))
        self._emit(inv.step.value, f"case {inv.case.id} is {inv.case.status.value}")
        return inv

    async def _commit(self, inv: Investigation, next_step: Step) -> None:
        """Record the entries the step queued and move to `next_step`: one fenced transaction under
        `serve` (all or nothing, only while the lease is ours), plain appends without a checkpoint."""
        finished, entries = inv.step, inv.pending
        inv.pending = []
        if inv.checkpoint is None:
            for p in entries:
                await inv.case.arecord(p.kind, p.title, p.body, **p.kwargs)
            inv.step = next_step
            return
        inv.step = next_step
        if not await inv.checkpoint(inv, finished, entries):
            inv.step = finished
            raise LeaseLost(f"case {inv.case.id}: lost the investigation's lease during {finished.value}; "
                            "its entries were not recorded and another server resumes it")  # fmt: skip

    # -- helpers -----------------------------------------------------------------------------------

    def _emit(self, step: str, message: str) -> None:
        if self.on_event is not None:
            try:
                self.on_event(step, message)
            except Exception:  # a broken progress display must not stop an investigation
                log.exception("on_event failed")

    async def _record(self, inv: Investigation, kind: EntryKind, title: str, body: str = "", **kw: Any) -> None:
        """Queue an entry of the current step; `_commit` records it when the step is done."""
        attrs = {"step": inv.step.value, **kw.pop("attrs", {})}
        kw = {"author": self.author, "trace_id": inv.trace_id, "attrs": attrs, **kw}
        inv.pending.append(PendingEntry(kind, title[:300], body, kw))

    def _trace_of(self, case: Case) -> str:
        """Continue the trace the investigation started, so verification joins the same trace."""
        for e in reversed(case.timeline()):
            if e.author.kind == "primary" and e.trace_id:
                return child_traceparent(f"00-{e.trace_id}-{'1' * 16}-01")
        return new_traceparent()

    # -- (2) triage ----------------------------------------------------------------------------------

    async def _similar(self, case: Case) -> list[str]:
        """Earlier cases like this one, if the similar-cases feature is present (it is optional)."""
        ctx = case.ctx
        if not hasattr(ctx, "similar_cases"):
            return []
        try:
            found = await asyncio.to_thread(ctx.similar_cases, case.id)
        except Exception as exc:
            log.warning("similar_cases failed for %s: %s", case.id, exc)
            return [f"(looking up similar cases failed: {exc})"]
        lines = []
        for item in list(found or [])[:3]:
            text = getattr(item, "summary", None) or getattr(item, "title", None) or str(item)
            cid = getattr(item, "case_id", None) or getattr(item, "id", None)
            if cid != case.id:
                lines.append(f"{cid}: {text}" if cid else str(text))
        return lines

    async def _triage(self, inv: Investigation) -> Step:
        self._emit("triage", f"triaging {inv.alert.name!r} on {inv.alert.service or '?'}")
        similar = await self._similar(inv.case)
        inv.triage = t = await self.reasoner.triage(inv.alert, similar)
        body = [t.summary, "", "Hypotheses to check:", *[f"- {h}" for h in t.hypotheses]]
        if hasattr(inv.case.ctx, "similar_cases"):
            body += ["", "Similar earlier cases:", *([f"- {s}" for s in t.similar] or ["- none found"])]
        body += ["", f"Partners to consult: {', '.join(p.name for p in self.partners) or 'none configured'}."]
        seen = f"; {len(t.similar)} similar earlier case(s)" if t.similar else ""
        await self._record(inv, EntryKind.TRIAGE, f"Triage: {t.severity} on {t.service or 'unknown service'}{seen}",
                           "\n".join(body), attrs={"hypotheses": t.hypotheses, "similar": t.similar})  # fmt: skip
        return Step.CONSULT

    # -- (3)+(4) consult the partners (connecting and asking them: `consult.PartnerConsultation`) ----

    async def _consult_partners(self, inv: Investigation) -> Step:
        if not self.partners:
            self._emit("consult", "no partners configured")
            return Step.CORRELATE
        assert inv.triage is not None
        triage = inv.triage

        async def plan(partner: str, offered: list[CapabilityInfo]) -> list[Question]:
            return await self.reasoner.plan(inv.alert, triage, partner, offered)

        await self._invite_partners(inv)
        inv.answers = await self._ask_all(inv, plan)
        await self._record_failures(inv, inv.answers)
        got = [a for a in inv.answers if a.finding]
        if got:
            lines = [f"- **{a.partner}/{a.capability}** ({_pct(a.finding.confidence)}): {a.finding.summary}"
                     for a in got if a.finding]  # fmt: skip
            failed = len(inv.answers) - len(got)
            title = f"Partner findings: {len(got)} answered" + (f", {failed} failed" if failed else "")
            await self._record(
                inv, EntryKind.FINDING, title,
                "\n".join(lines), evidence=[ev for a in got if a.finding for ev in a.finding.evidence[:3]][:20],
                attrs={"answers": [a.model_dump(mode="json", exclude={"finding"}) for a in inv.answers]},
            )  # fmt: skip
        return Step.CORRELATE

    # -- (5) correlate and remediate ---------------------------------------------------------------

    async def _correlate(self, inv: Investigation) -> Step:
        assert inv.triage is not None
        inv.correlation = c = await self.reasoner.correlate(inv.alert, inv.triage, inv.answers)
        self._emit("correlate", f"{c.summary} ({_pct(c.confidence)})")
        evidence: list[Evidence] = [
            ev for a in inv.answers if a.finding and f"{a.partner}/{a.capability}" in c.supporting
            for ev in a.finding.evidence[:2]
        ]  # fmt: skip
        own = Evidence(type="link" if inv.alert.generator_url else "query", source=inv.alert.source,
                       summary=f"the alert: {inv.alert.title}", url=inv.alert.generator_url,
                       query=inv.alert.query, start=inv.alert.starts_at)  # fmt: skip
        body = [c.summary, "", f"Confidence: {_pct(c.confidence)} · cause: {c.cause}"]
        if c.supporting:
            body.append(f"Supported by: {', '.join(c.supporting)} and the alert itself.")
        title = f"Correlated: {c.headline or c.summary} ({_pct(c.confidence)})"
        await self._record(inv, EntryKind.FINDING, title, "\n".join(body),
                           evidence=[own, *evidence], attrs={"correlation": c.model_dump(mode="json")})  # fmt: skip
        return Step.REMEDIATE

    async def _remediate(self, inv: Investigation) -> Step:
        """Choose a runbook and run it. A runbook that acts for real is at most once per investigation: under
        `serve` its start (the plan, and an entry saying so) is committed before it runs, so a replica that
        resumes this step after a crash or a lost lease finds it started and asks a person instead of running
        it again (a second `kubectl rollout undo` would undo the first: the bad deploy back)."""
        assert inv.correlation is not None
        plan = inv.plan
        if inv.acting:  # with or without its plan (a state that lost it): choosing afresh could run it twice
            which = f"Runbook {plan.runbook}" if plan is not None else "A runbook (its plan was not kept)"
            inv.result = RunbookResult(done=False, needs_human=True, summary=(
                f"{which} was started by a server that did not record its outcome (it stopped, or lost this "
                "investigation and may still be running it), so it may or may not have run. It is not started "
                "again: check its effect, then act by hand."))  # fmt: skip
        else:
            inv.plan = plan = await self.reasoner.remediate(inv.correlation, sorted(self.runbooks))
            if plan is None or plan.runbook not in self.runbooks:
                reason = "the reasoner chose no action" if plan is None else f"no runbook named {plan.runbook!r}"
                inv.result = RunbookResult(done=False, needs_human=True, summary=f"No remediation: {reason}.")
            else:
                inv.result = await self._run_runbook(inv, plan)
        r = inv.result
        body = [r.summary]
        if plan is not None:
            body += ["", f"Why: {plan.rationale}"]
        if r.commands:
            body += ["", "Commands" + (" (not run: dry run)" if not r.done else "") + ":", "```",
                     *r.commands, "```"]  # fmt: skip
        attrs = {"runbook": plan.runbook if plan else None, "args": plan.args if plan else {},
                 "dry_run": self.dry_run, "done": r.done}  # fmt: skip
        if r.needs_human:
            await self._record(inv, EntryKind.DECISION_REQUEST, f"Needs a human: {r.summary}", "\n".join(body),
                               attrs=attrs)  # fmt: skip
        else:
            await self._record(inv, EntryKind.REMEDIATION, r.summary, "\n".join(body), attrs=attrs,
                               status=CaseStatus.MITIGATED if r.done else None)  # fmt: skip
        self._emit("remediate", r.summary)
        return Step.HANDOFF

    async def _run_runbook(self, inv: Investigation, plan: RemediationPlan) -> RunbookResult:
        runbook = self.runbooks[plan.runbook]
        if not self.dry_run and inv.checkpoint is not None and runbook not in CHANGES_NOTHING:
            inv.acting = True
            await self._record(inv, EntryKind.ACTION, f"Starting runbook {plan.runbook}",
                               f"Running `{plan.runbook}` with {plan.args} for real (not a dry run).\n\n"
                               f"Why: {plan.rationale}", attrs={"runbook": plan.runbook, "args": plan.args})
            await self._commit(inv, Step.REMEDIATE)  # durable before it acts (see `_remediate`)
        self._emit("remediate", f"{plan.runbook}({plan.args}) dry_run={self.dry_run}")
        try:
            return await runbook(plan.args, dry_run=self.dry_run)
        except Exception as exc:
            why = f"Runbook {plan.runbook} failed: {type(exc).__name__}: {exc}"
            return RunbookResult(done=False, needs_human=True, summary=why)

    # -- (6) the handoff summary ------------------------------------------------------------------

    async def _handoff(self, inv: Investigation) -> Step:
        a, c, r = inv.alert, inv.correlation, inv.result
        assert c is not None and r is not None
        answered = sorted({f"{x.partner}/{x.capability}" for x in inv.answers if x.finding})
        failed = [f"{x.partner}/{x.capability} ({x.error_kind})" for x in inv.answers if x.error]
        since = a.starts_at.strftime("%Y-%m-%d %H:%M UTC") if a.starts_at else "unknown"
        lines = [
            f"**What fired:** {a.title} — service {a.service or '?'}, severity {a.severity}, since {since}.",
            f"**What we think:** {c.summary} (confidence {_pct(c.confidence)}).",
            f"**What was done:** {r.summary}" + ("" if r.done else _UNCHANGED[inv.acting]),
            f"**Partners:** answered: {', '.join(answered) or 'none'}"
            + (f"; failed: {', '.join(failed)}." if failed else "."),
            "**Next:** "
            + ("wait for the alert to resolve; verification then closes the case."
               if not r.needs_human else "a human decides (see the decision request); the case stays open.")
            + (f" To act for real: {'; '.join(r.commands)}." if r.commands and not r.done else ""),
            f"**Trace:** `{inv.trace_id}` (on every entry of this investigation, both agents').",
        ]
        state = "a human decides" if r.needs_human else "done" if r.done else "dry run" if inv.plan else "no action"
        waiting = "awaiting a decision" if r.needs_human else "awaiting recovery"
        runbook = inv.plan.runbook if inv.plan else "no runbook"
        title = f"Handoff: {c.headline or 'cause unknown'}; {runbook} ({state}); {waiting}"
        await self._record(inv, EntryKind.HANDOFF, title, "\n\n".join(lines))
        self._emit("handoff", "handoff summary recorded")
        return Step.AWAITING_RECOVERY

    # -- (7) verify and close -------------------------------------------------------------------------

    async def _verify(self, inv: Investigation) -> Step:
        resolved = inv.resolved_alert
        self._emit("verify", "alert resolved; asking partners to confirm recovery")

        async def plan(partner: str, offered: list[CapabilityInfo]) -> list[Question]:
            names = {c.name for c in offered}
            if "query_metrics" not in names:
                return []
            params: dict[str, Any] = {"check": "recovery"}
            if inv.alert.query:
                params["query"] = inv.alert.query
            return [Question(capability="query_metrics", question="Is the error ratio back to normal now?",
                             params=params)]  # fmt: skip

        inv.checks = await self._ask_all(inv, plan, recovery=True) if self.partners else []
        await self._record_failures(inv, [x for x in inv.checks if x.capability != "(none)"])
        inv.verdict = v = await self.reasoner.verify(inv.alert, resolved is not None and resolved.status == "resolved",
                                                     inv.checks)  # fmt: skip
        ev = [e for x in inv.checks if x.finding for e in x.finding.evidence[:2]]
        title = ("Verified: " if v.verified else "Not verified: ") + v.summary
        await self._record(inv, EntryKind.VERIFICATION, title, v.summary, evidence=ev,
                           attrs={"verified": v.verified})  # fmt: skip
        self._emit("verify", title)
        if not v.verified:
            return Step.AWAITING_RECOVERY
        cause = inv.correlation.summary if inv.correlation else self._last_correlation(inv.case)
        summary = f"{v.summary}\n\nCause: {cause}" if cause else v.summary
        # the resolution is this step's last entry: it commits with the step (`Case.resolve`'s entry)
        kw = {"author": self.author, "trace_id": inv.trace_id, "attrs": {"step": inv.step.value},
              "status": CaseStatus.RESOLVED}
        inv.pending.append(PendingEntry(EntryKind.RESOLUTION, "Resolved: alert cleared and recovery verified",
                                        summary, kw))
        self._emit("close", "case resolved")
        return Step.CLOSED

    @staticmethod
    def _last_correlation(case: Case) -> str | None:
        for e in reversed(case.timeline(kinds=["finding"])):
            if e.author.kind == "primary" and e.title.startswith("Correlated: "):
                return e.body.split("\n")[0]
        return None
