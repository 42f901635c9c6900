"""What a history search returns: cases, their matching entries, their outcome, and why they ranked.

Kept apart from the ranking so the CLI, MCP tools and agents can depend on the shapes without
pulling in retrieval code; fields are only ever added (the MCP tools serialise these models).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from ..store.base import SearchFilters


class Hit(BaseModel):
    """One matching entry of a case: what it says, with the query's words highlighted."""

    entry_id: str
    seq: int
    kind: str
    author: str
    ts: datetime
    title: str
    text: str  # the window of title/body shown
    spans: list[tuple[int, int]] = Field(default_factory=list)  # highlighted [start, end) in `text`
    score: float

    @property
    def snippet(self) -> str:
        """`text` with highlights marked `[like this]`."""
        out, pos = [], 0
        for a, b in self.spans:
            out.append(self.text[pos:a] + "[" + self.text[a:b] + "]")
            pos = b
        return "".join(out) + self.text[pos:]


class Outcome(BaseModel):
    """How a case went: what was tried, what worked, what humans overrode or rejected."""

    resolved: bool = False
    resolved_at: datetime | None = None
    time_to_resolve_minutes: float | None = None
    tried: list[str] = Field(default_factory=list)  # actions/remediations that did not help
    worked: list[str] = Field(default_factory=list)  # remediations (verified ones first) and the resolution
    verified: bool = False  # a remediation was verified
    overridden: list[str] = Field(default_factory=list)  # "proposal → what the human said instead"
    rejected: list[str] = Field(default_factory=list)
    approved: list[str] = Field(default_factory=list)
    findings_verified: list[str] = Field(default_factory=list)
    findings_disputed: list[str] = Field(default_factory=list)
    resolution: str | None = None  # the resolution entry's text (what ended the case), in full up to 400 chars


class CaseResult(BaseModel):
    case_id: str
    title: str
    service: str
    status: str
    created_at: datetime
    score: float
    signals: dict[str, float] = Field(default_factory=dict)  # signal -> its factor (text: the text score)
    reasons: list[str] = Field(default_factory=list)  # the same, in words
    matched: list[str] = Field(default_factory=list)  # query words (or expansions) the case contains
    hits: list[Hit] = Field(default_factory=list)
    outcome: Outcome | None = None

    @property
    def why(self) -> str:
        return "; ".join(self.reasons)

    @property
    def resolution(self) -> str | None:
        """What ended the case (its resolution text), if it was resolved."""
        o = self.outcome
        if not o or not o.resolved:
            return None
        return o.resolution or (o.worked[-1] if o.worked else None)

    @property
    def summary(self) -> str:
        """One line for an agent's triage note: what it was, what worked, what a human overrode."""
        parts = [f"{self.title} ({self.service or 'no service'}, {self.status}"]
        o = self.outcome
        if o and o.time_to_resolve_minutes is not None:
            parts[0] += f" in {o.time_to_resolve_minutes:.0f} min"
        parts[0] += ")"
        if o:
            if o.resolution or o.worked:
                parts.append("what worked: " + (o.resolution or o.worked[0]))
            if o.findings_verified:
                parts.append("confirmed: " + o.findings_verified[0])
            if o.tried:
                parts.append("tried without effect: " + "; ".join(o.tried[:2]))
            if o.rejected:
                parts.append("human rejected: " + o.rejected[0])
            if o.overridden:
                parts.append("human overrode: " + o.overridden[0])
        return " — ".join(parts)


class ParsedQuery(BaseModel):
    text: str
    words: list[str] = Field(default_factory=list)  # free words as typed (after the filters)
    terms: list[str] = Field(default_factory=list)  # searched words (stop/intent words removed)
    negated: list[str] = Field(default_factory=list)  # terms the query negates ("errors without a deploy")
    phrases: list[str] = Field(default_factory=list)
    filters: SearchFilters = Field(default_factory=SearchFilters)
    outcomes: list[str] = Field(default_factory=list)
    fix_intent: bool = False
    notices: list[str] = Field(default_factory=list)
    service_hint: str | None = None  # a `service:` value that matched no service exactly (see engine)


class SearchResult(BaseModel):
    query: ParsedQuery
    cases: list[CaseResult] = Field(default_factory=list)
    strategy: str = ""  # which retrieval plan ran (see the package doc)
    fallback: bool = False  # the input held syntax that was taken literally or ignored
    notice: str | None = None  # what was done about odd input, in words
    corrections: dict[str, str] = Field(default_factory=dict)  # typed word -> the indexed word searched instead
    expansions: list[str] = Field(default_factory=list)  # words added from the best cases (pseudo-relevance)
    candidates: int = 0
    elapsed_ms: float = 0.0

    def __iter__(self) -> Any:  # iterate over the cases, like a list of results
        return iter(self.cases)

    def __len__(self) -> int:
        return len(self.cases)
