"""What the primary agent thinks with: the `Reasoner` protocol and its deterministic, rule-based default.

The state machine in `primary/` owns *when* things happen and *what is recorded*; a reasoner only
decides. Every method is async and takes plain data, so an LLM-backed reasoner can implement the
same protocol (prompt with the alert and findings, parse the answer into these models) and drop in
with `PrimaryAgent(reasoner=...)`. The rule-based one needs no network and gives the same answer
every time, which is what the demo and the tests want.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from ..channel import CapabilityInfo, Finding
from ..intake import Alert

__all__ = [
    "Correlation",
    "PartnerAnswer",
    "Question",
    "Reasoner",
    "RemediationPlan",
    "RuleBasedReasoner",
    "Triage",
    "Verdict",
]


class Triage(BaseModel):
    """The first read of an alert with the primary's own tools: how bad, what it is about, what to ask."""

    severity: str
    service: str
    summary: str
    hypotheses: list[str] = Field(default_factory=list)
    similar: list[str] = Field(default_factory=list, description="what earlier cases say, one line each")


class Question(BaseModel):
    """One capability call the primary wants to make to a partner."""

    capability: str
    question: str
    params: dict[str, Any] = Field(default_factory=dict)


class PartnerAnswer(BaseModel):
    """What came back from one call: a finding, or a sentence saying why there is none."""

    partner: str
    capability: str
    finding: Finding | None = None
    error: str | None = None
    error_kind: str | None = Field(None, description="timeout | unavailable | bad_output | error")
    trace_id: str | None = None


class Correlation(BaseModel):
    """The primary's conclusion from its own data and the partners' findings."""

    summary: str
    headline: str = Field("", max_length=120, description="the cause in a few words, for titles")
    confidence: float = Field(ge=0, le=1)
    cause: Literal["bad_deploy", "dependency_degraded", "unknown"] = "unknown"
    service: str | None = Field(None, description="the service the cause is in")
    details: dict[str, Any] = Field(default_factory=dict)
    supporting: list[str] = Field(default_factory=list, description="which findings support it")


class RemediationPlan(BaseModel):
    """Which runbook to run, with what arguments, and why."""

    runbook: str
    args: dict[str, Any] = Field(default_factory=dict)
    rationale: str


class Verdict(BaseModel):
    verified: bool
    summary: str


class Reasoner(Protocol):
    """The decisions of the seven-step flow. Implement this to put an LLM behind the primary agent."""

    async def triage(self, alert: Alert, similar: list[str]) -> Triage: ...

    async def plan(self, alert: Alert, triage: Triage, partner: str, offered: list[CapabilityInfo]) -> list[Question]:
        """Which of this partner's capabilities to call, and with what question."""
        ...

    async def correlate(self, alert: Alert, triage: Triage, answers: list[PartnerAnswer]) -> Correlation: ...

    async def remediate(self, correlation: Correlation, runbooks: list[str]) -> RemediationPlan | None: ...

    async def verify(self, alert: Alert, alert_resolved: bool, checks: list[PartnerAnswer]) -> Verdict: ...


# -- the default -------------------------------------------------------------------------------------

_ASK = {
    "query_metrics": "How did the error ratio and related metrics move around the alert, and what rose first?",
    "search_logs": "Which errors appear in the logs, from when, and what was deployed just before?",
    "analyze_spans": "Where do the failing traces spend their time, and what error do they end with?",
}


def _evidence_data(answers: list[PartnerAnswer]) -> list[tuple[PartnerAnswer, dict[str, Any]]]:
    return [(a, ev.data) for a in answers if a.finding for ev in a.finding.evidence]


def _parse(ts: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
    except ValueError:
        return None


class RuleBasedReasoner:
    """Deterministic rules a careful on-call engineer would follow with the same evidence.

    Correlation: a deploy that landed shortly before the errors began, in the service the failing
    traces point at, is a bad deploy (high confidence); either signal alone is weaker; nothing is
    "unknown" and goes to a human. Remediation: roll a bad deploy back; otherwise escalate.
    """

    deploy_lead = timedelta(minutes=30)

    async def triage(self, alert: Alert, similar: list[str]) -> Triage:
        hypotheses = ["a recent change in the service or one of its dependencies"]
        if alert.service:
            hypotheses.append(f"a dependency of {alert.service} is failing")
        summary = f"{alert.severity} alert {alert.name!r} on {alert.service or 'an unnamed service'}: {alert.title}."
        if alert.description:
            summary += f" {alert.description}"
        if similar:
            summary += f" {len(similar)} similar earlier case(s)."
        return Triage(severity=alert.severity, service=alert.service, summary=summary, hypotheses=hypotheses,
                      similar=similar)  # fmt: skip

    async def plan(self, alert: Alert, triage: Triage, partner: str, offered: list[CapabilityInfo]) -> list[Question]:
        out = []
        for cap in offered:
            if cap.name in _ASK:
                params: dict[str, Any] = {"query": alert.query} if cap.name == "query_metrics" and alert.query else {}
                out.append(Question(capability=cap.name, question=_ASK[cap.name], params=params))
        return out

    async def correlate(self, alert: Alert, triage: Triage, answers: list[PartnerAnswer]) -> Correlation:
        data = _evidence_data(answers)
        suspects = [(a, d["suspect"]) for a, d in data if isinstance(d.get("suspect"), dict)]
        culprits = [(a, d) for a, d in data if d.get("culprit_service")]
        deploy = next(((a, s) for a, s in suspects if s.get("kind") == "deploy"), None)
        culprit = max(culprits, key=lambda c: float(c[1].get("share", 0)), default=None)
        answered = [a for a in answers if a.finding]
        if deploy and culprit and deploy[1].get("service") == culprit[1]["culprit_service"]:
            s = deploy[1]
            return Correlation(
                summary=(f"Bad deploy of {s.get('service')} {s.get('version')}: the failing traces spend "
                         f"{float(culprit[1].get('share', 0)):.0%} of their time in {s.get('service')}, and the "
                         f"errors began shortly after it was rolled out (was {s.get('previous')})."),
                headline=f"bad deploy of {s.get('service')} {s.get('version')}",
                confidence=0.9,
                cause="bad_deploy",
                service=s.get("service"),
                details={k: s.get(k) for k in ("version", "previous", "at")},
                supporting=[f"{a.partner}/{a.capability}" for a in (deploy[0], culprit[0])],
            )
        if deploy:
            s = deploy[1]
            return Correlation(
                summary=f"Probably the deploy of {s.get('service')} {s.get('version')} just before the errors began.",
                headline=f"probably the deploy of {s.get('service')} {s.get('version')}",
                confidence=0.6, cause="bad_deploy", service=s.get("service"),
                details={k: s.get(k) for k in ("version", "previous", "at")},
                supporting=[f"{deploy[0].partner}/{deploy[0].capability}"],
            )  # fmt: skip
        if culprit:
            svc = culprit[1]["culprit_service"]
            return Correlation(
                summary=f"{alert.service or 'The service'} fails because its dependency {svc} is degraded; "
                "no change explains it yet.",
                headline=f"dependency {svc} degraded", confidence=0.5, cause="dependency_degraded", service=svc,
                supporting=[f"{culprit[0].partner}/{culprit[0].capability}"],
            )  # fmt: skip
        if answered:
            best = max(answered, key=lambda a: a.finding.confidence if a.finding else 0)
            assert best.finding is not None
            return Correlation(summary=f"No clear cause yet. Strongest partner finding: {best.finding.summary}",
                               headline="no clear cause yet", confidence=min(0.4, best.finding.confidence))  # fmt: skip
        return Correlation(summary="No partner findings: only the alert itself is known.",
                           headline="no findings", confidence=0.1)

    async def remediate(self, correlation: Correlation, runbooks: list[str]) -> RemediationPlan | None:
        if correlation.cause == "bad_deploy" and correlation.confidence >= 0.6 and "rollback_deploy" in runbooks:
            return RemediationPlan(
                runbook="rollback_deploy",
                args={"service": correlation.service, "to_version": correlation.details.get("previous"),
                      "from_version": correlation.details.get("version")},
                rationale=correlation.summary,
            )
        if "escalate" in runbooks:
            return RemediationPlan(runbook="escalate", args={"service": correlation.service},
                                   rationale=f"No safe automatic action at confidence {correlation.confidence:.0%}: "
                                   f"{correlation.summary}")  # fmt: skip
        return None

    async def verify(self, alert: Alert, alert_resolved: bool, checks: list[PartnerAnswer]) -> Verdict:
        still = [ev.summary for a in checks if a.finding for ev in a.finding.evidence if ev.data.get("elevated")]
        seen = [a.finding.summary for a in checks if a.finding]
        if not alert_resolved:
            return Verdict(verified=False, summary="The alert is still firing.")
        if still:
            return Verdict(verified=False, summary="The alert resolved, but a partner still sees the error ratio "
                           f"elevated: {still[0]}")  # fmt: skip
        if seen:
            return Verdict(verified=True, summary=f"The alert resolved and the partner confirms: {seen[0]}")
        return Verdict(verified=True, summary="The alert resolved (no partner could confirm independently).")
