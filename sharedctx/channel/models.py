"""What travels over the direct channel: the question a primary asks, and the finding a partner answers.

The same pydantic models give the MCP tool schemas (input and structured output), the plain HTTP API's
OpenAPI description, and the client's validation of whatever comes back, so the three cannot drift.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..model import Evidence

__all__ = ["CallContext", "CapabilityInfo", "CapabilityInput", "Finding", "explain"]


class CapabilityInput(BaseModel):
    """The question a primary agent asks a partner: which case, which service, over which time window."""

    model_config = ConfigDict(extra="forbid")
    case_id: str = Field(min_length=1, max_length=200, description="the sharedctx case this call is about")
    service: str = Field("", max_length=200, description="the service under investigation, e.g. 'checkout'")
    start: datetime | None = Field(None, description="start of the time window to look at (ISO 8601)")
    end: datetime | None = Field(None, description="end of the time window to look at (ISO 8601)")
    question: str = Field("", max_length=4000, description="what the primary wants to know, in plain words")
    params: dict[str, Any] = Field(
        default_factory=dict, description="capability-specific options, e.g. {'query': 'rate(errors[5m])'}"
    )

    @model_validator(mode="after")
    def _window_in_order(self) -> CapabilityInput:
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ValueError(f"end ({self.end.isoformat()}) is before start ({self.start.isoformat()})")
        return self


class Finding(BaseModel):
    """What a partner learned: a summary, how sure it is, the evidence, and what to do next."""

    model_config = ConfigDict(extra="forbid")
    summary: str = Field(min_length=1, max_length=4000, description="the finding in one or two sentences")
    confidence: float = Field(ge=0.0, le=1.0, description="0 = a guess, 1 = certain")
    evidence: list[Evidence] = Field(default_factory=list, description="where the finding comes from")
    next_steps: list[str] = Field(default_factory=list, description="suggested next steps for the primary")
    capability: str = Field("", description="the capability that produced it (filled in by the partner)")
    partner: str = Field("", description="the partner that produced it (filled in by the partner)")


class CallContext(BaseModel):
    """Who is asking, as seen by the partner: the case and the W3C trace context of this call.

    A capability receives it by declaring a parameter annotated `CallContext`; the recorder receives
    the same case id and traceparent, so the call and the entries both sides write can be joined.
    """

    model_config = ConfigDict(frozen=True)
    case_id: str | None = None
    traceparent: str | None = None
    capability: str = ""
    partner: str = ""

    @property
    def trace_id(self) -> str | None:
        """The 32-hex trace id inside `traceparent` (what entries store as `trace_id`), if valid."""
        from .trace import parse_traceparent

        parsed = parse_traceparent(self.traceparent)
        return parsed.trace_id if parsed else None


class CapabilityInfo(BaseModel):
    """A capability as a client discovers it: name, description and (over MCP) its JSON schemas."""

    name: str
    description: str = ""
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None


def explain(exc: ValidationError) -> str:
    """A validation error on one line, field by field: short enough for a journal entry title."""
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        got = f" (got {err['input']!r})" if err["type"] != "missing" and not isinstance(err["input"], dict) else ""
        parts.append(f"{where}: {err['msg']}{got}")
    return "; ".join(parts)
