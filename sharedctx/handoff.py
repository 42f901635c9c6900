"""The handoff summary: one screen for whoever picks a case up next (an agent joining, a person paged in).

Core, not MCP: `Case.handoff()` is what the Python API, the MCP `handoff_summary` tool and anything else
show, so they cannot disagree about what is pending. What is pending or held is `sharedctx.decisions`'
answer; text from people, partners and alert payloads is fenced (`access.shown`), because the reader is
often an LLM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .access import provenance, shown
from .decisions import HOLD_ATTR, hold_state, pending_requests
from .model import CaseRecord, Entry, format_ts

MAX_LINES = 40


@dataclass(frozen=True)
class Handoff:
    """The summary (Markdown, at most about 40 lines) and the ids of the unanswered decision requests."""

    case_id: str
    status: str
    last_seq: int
    text: str
    pending_decisions: list[str] = field(default_factory=list)


def _line(e: Entry, width: int = 160) -> str:
    title = e.title if len(e.title) <= width else e.title[: width - 1] + "…"
    return f"- #{e.seq} {e.kind.value} by {e.author} ({provenance(e.author)}): {shown(title, e.author)}"


def handoff(rec: CaseRecord, entries: Sequence[Entry]) -> Handoff:
    """Summarise one case from its record and its whole timeline."""
    by_kind: dict[str, list[Entry]] = {}
    for e in entries:
        by_kind.setdefault(e.kind.value, []).append(e)
    pending = pending_requests(entries)
    held = [e for e in entries if e.attrs.get(HOLD_ATTR) and hold_state(entries, e) is not None]
    authors = sorted({str(e.author) for e in entries})
    lines = [
        f"# {rec.title}",
        f"case {rec.id} · {rec.status.value} · severity {rec.severity} · service {rec.service or '-'} · "
        f"{len(entries)} entries (last #{rec.last_seq}) · opened {format_ts(rec.created_at)}",
        f"participants: {', '.join(authors) or '-'}",
    ]

    def section(name: str, items: Sequence[Entry], n: int) -> None:
        if items:
            lines.append(f"\n## {name}")
            lines.extend(_line(e) for e in list(items)[-n:])

    section("Alerts", by_kind.get("alert", []), 2)
    section("Triage", by_kind.get("triage", []), 2)
    section("Findings (latest)", by_kind.get("finding", []), 6)
    section("Actions and remediations", by_kind.get("action", []) + by_kind.get("remediation", []), 5)
    section("Verification", by_kind.get("verification", []), 2)
    section("Corrections", by_kind.get("correction", []), 3)
    if pending:
        lines.append("\n## Waiting for a human decision")
        lines.extend(f"- {e.id}: {shown(str(e.attrs.get('question') or e.title), e.author)}" for e in pending[-3:])
    if held:
        lines.append("\n## Held (recorded, not delivered until approved)")
        lines.extend(_line(e) for e in held[-3:])
    section("Resolution", by_kind.get("resolution", []), 1)
    section("Latest handoff", by_kind.get("handoff", []), 1)
    lines.append(f"\nMore: get_timeline(case_id={rec.id!r}, since=0) for every entry.")
    return Handoff(case_id=rec.id, status=rec.status.value, last_seq=rec.last_seq, text="\n".join(lines),
                   pending_decisions=[e.id for e in pending])  # fmt: skip
