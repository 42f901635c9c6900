"""W3C Trace Context (`traceparent`) for partner calls, small enough to read in one screen.

A call carries `traceparent` (MCP `_meta` or HTTP header) so that the primary's call and the entries
both sides record share one trace id. If the caller runs inside an OpenTelemetry span, that span's
context is used; otherwise a fresh trace is started. Only the API package is needed: no exporter.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

__all__ = ["TraceParent", "child_traceparent", "current_or_new_traceparent", "new_traceparent", "parse_traceparent"]

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


@dataclass(frozen=True)
class TraceParent:
    """A parsed `traceparent`: `version-trace_id-parent_id-flags`."""

    trace_id: str
    parent_id: str
    flags: str = "01"
    version: str = "00"

    def __str__(self) -> str:
        return f"{self.version}-{self.trace_id}-{self.parent_id}-{self.flags}"

    def child(self) -> TraceParent:
        """Same trace, new span id: what each outgoing call of one investigation step gets."""
        return TraceParent(self.trace_id, secrets.token_hex(8), self.flags, "00")


def parse_traceparent(value: str | None) -> TraceParent | None:
    """Parse a header value; None for anything the W3C spec says to ignore (bad shape, zero ids, ff)."""
    if not value:
        return None
    m = _TRACEPARENT.match(value.strip().lower())
    if m is None:
        return None
    version, trace_id, parent_id, flags, rest = m.groups()
    if version == "ff" or trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    if version == "00" and rest:
        return None  # version 00 has exactly four fields
    return TraceParent(trace_id, parent_id, flags, version)


def new_traceparent() -> str:
    """A fresh, sampled root context."""
    return str(TraceParent(secrets.token_hex(16), secrets.token_hex(8)))


def child_traceparent(value: str | None) -> str:
    """A child of `value` if it is valid, else a fresh root: never fails, never returns garbage."""
    parsed = parse_traceparent(value)
    return str(parsed.child()) if parsed else new_traceparent()


def current_or_new_traceparent() -> str:
    """The active OpenTelemetry span's context if there is one (the caller traces), else a new root."""
    try:
        from opentelemetry import propagate
    except ImportError:  # pragma: no cover - opentelemetry-api is a declared dependency
        return new_traceparent()
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    parsed = parse_traceparent(carrier.get("traceparent"))
    return str(parsed) if parsed else new_traceparent()
