"""The primary agent's persisted state: what one investigation has learned, and what a restart resumes from.

Between steps `run()` commits the step's queued entries (`PendingEntry`) with `Investigation.to_state()` at
the next `Step` (one `Checkpoint` call, fenced by the lease under `sharedctx serve`); another replica rebuilds
the investigation with `Investigation.from_state()` and carries on from that step. `LeaseLost` is what the
agent raises when the checkpoint says this replica no longer owns it. The handlers are in `agent`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ...channel.trace import new_traceparent, parse_traceparent
from ...context import Case
from ...intake import Alert
from ...model import EntryKind
from ..reasoning import Correlation, PartnerAnswer, RemediationPlan, Triage, Verdict
from ..runbooks import RunbookResult

__all__ = ["Checkpoint", "Investigation", "LeaseLost", "PendingEntry", "Step"]


class Step(StrEnum):
    TRIAGE = "triage"
    CONSULT = "consult"
    CORRELATE = "correlate"
    REMEDIATE = "remediate"
    HANDOFF = "handoff"
    AWAITING_RECOVERY = "awaiting-recovery"
    VERIFY = "verify"
    CLOSED = "closed"
    FAILED = "failed"  # a step raised; the case is left for a human (the failure is recorded)


_STOPS = {Step.AWAITING_RECOVERY, Step.CLOSED, Step.FAILED}


class LeaseLost(Exception):
    """This replica no longer owns the investigation: its step was not recorded, another replica resumes it."""


@dataclass(frozen=True)
class PendingEntry:
    """An entry a step has queued; recorded when the step commits (`PrimaryAgent._commit`)."""

    kind: EntryKind
    title: str
    body: str
    kwargs: dict[str, Any]  # evidence, attrs, status: what `Case.record` takes besides the above


Checkpoint = Callable[["Investigation", Step, list[PendingEntry]], Awaitable[bool]]
"""`checkpoint(inv, finished, entries)`: record `entries` and persist `inv` (at its next step) as one
transaction; False if this replica lost the investigation's lease (then nothing was recorded)."""


@dataclass
class Investigation:
    """Everything the agent has learned about one case so far; the state machine's memory.

    `to_state()`/`from_state()` are what is persisted between steps: enough to run any later step."""

    case: Case
    alert: Alert
    traceparent: str
    step: Step = Step.TRIAGE
    triage: Triage | None = None
    answers: list[PartnerAnswer] = field(default_factory=list)
    correlation: Correlation | None = None
    plan: RemediationPlan | None = None
    result: RunbookResult | None = None
    resolved_alert: Alert | None = None
    checks: list[PartnerAnswer] = field(default_factory=list)
    verdict: Verdict | None = None
    history: list[Step] = field(default_factory=list)
    invited: bool = False  # the partners' invitations are recorded (a checkpoint inside CONSULT)
    acting: bool = False  # `plan` was started for real (a checkpoint inside REMEDIATE): never started again
    pending: list[PendingEntry] = field(default_factory=list)
    checkpoint: Checkpoint | None = None  # None: entries are recorded as they are committed, nothing persisted
    should_stop: Callable[[], bool] | None = None  # checked between steps: True stops (drain) at a checkpoint

    @property
    def trace_id(self) -> str | None:
        parsed = parse_traceparent(self.traceparent)
        return parsed.trace_id if parsed else None

    def to_state(self) -> dict[str, Any]:
        """What the finished steps learned, as JSON: with the step, all a replica needs to resume."""

        def dump(m: Any) -> Any:
            return m.model_dump(mode="json") if m is not None else None

        return {"alert": dump(self.alert), "traceparent": self.traceparent, "triage": dump(self.triage),
                "answers": [dump(a) for a in self.answers], "correlation": dump(self.correlation),
                "plan": dump(self.plan), "result": dump(self.result), "checks": [dump(a) for a in self.checks],
                "verdict": dump(self.verdict), "history": [h.value for h in self.history],
                "invited": self.invited, "acting": self.acting}  # fmt: skip

    @classmethod
    def from_state(
        cls, case: Case, step: str, state: Mapping[str, Any], resolved: Mapping[str, Any] | None = None
    ) -> Investigation:
        """The investigation as a checkpoint left it (`to_state`), at `step`, with a waiting resolved alert."""

        def load(model: Any, value: Any) -> Any:
            return model.model_validate(value) if value is not None else None

        alert = Alert.model_validate(state["alert"])
        return cls(
            case=case, alert=alert, traceparent=state.get("traceparent") or new_traceparent(), step=Step(step),
            triage=load(Triage, state.get("triage")),
            answers=[PartnerAnswer.model_validate(a) for a in state.get("answers") or []],
            correlation=load(Correlation, state.get("correlation")), plan=load(RemediationPlan, state.get("plan")),
            result=load(RunbookResult, state.get("result")),
            resolved_alert=Alert.model_validate(resolved) if resolved else None,
            checks=[PartnerAnswer.model_validate(a) for a in state.get("checks") or []],
            verdict=load(Verdict, state.get("verdict")), history=[Step(h) for h in state.get("history") or []],
            invited=bool(state.get("invited")), acting=bool(state.get("acting")),
        )  # fmt: skip
