"""How a case went, read from its entries: what worked, what was tried without effect, what people
overrode, rejected, approved, verified or disputed. Conventions: see the package doc."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ..decisions import counts
from ..model import Entry, EntryKind
from .models import Outcome
from .query import FAILED, VERIFIED

# `note` and `finding` are here because a human verdict on a finding (👍 / `/verify`, 👎 / `/dispute`) is a
# note with `attrs.verdict` whose `ref` is the finding: both are needed to say which findings people confirmed.
OUTCOME_KINDS = ("action", "remediation", "verification", "decision", "decision-request", "correction", "resolution",
                 "note", "finding")


GENERIC_TITLES = frozenset({"resolved", "resolution", "fix", "fixed", "remediation", "verified", "done", "mitigated",
                            "action", "finding", "note", "update"})


def say(e: Entry, limit: int = 200) -> str:
    """An entry in a few words: its title, or title and body when the title alone says little; the body
    alone when the title is only a label ("Resolved", "fix")."""
    title, body = e.title.strip(), " ".join(e.body.split())
    if body and title.lower().strip(" .:!") in GENERIC_TITLES:
        text = body
    elif body and (len(title.split()) < 4 or title.lower().rstrip(":") in body.lower()[: len(title) + 2]):
        text = body if title.lower().rstrip(".:") in body.lower() else f"{title}: {body}"
    else:
        text = title or body
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summarize(entries: Sequence[Entry], created_at: datetime, resolved_at: datetime | None) -> Outcome:
    """What was tried, what worked, what humans overrode/rejected/approved, from a case's entries."""
    by_id = {e.id: e for e in entries}
    o = Outcome(resolved=resolved_at is not None, resolved_at=resolved_at)
    if resolved_at is not None:
        o.time_to_resolve_minutes = round((resolved_at - created_at).total_seconds() / 60, 1)
    failed_refs, verified_refs = set(), set()
    for e in entries:
        verdict = str(e.attrs.get("verdict") or e.attrs.get("outcome") or "").lower()
        if e.kind == EntryKind.VERIFICATION and e.ref:
            if verdict in VERIFIED:
                o.verified = True
                verified_refs.add(e.ref)
            elif verdict in FAILED:
                failed_refs.add(e.ref)
    worked_verified: list[str] = []
    for e in entries:
        attrs = e.attrs
        if e.kind == EntryKind.ACTION and str(attrs.get("result", "")).lower() in FAILED:
            o.tried.append(say(e))
        elif e.kind == EntryKind.REMEDIATION:
            if e.id in failed_refs:
                o.tried.append(say(e))
            else:
                (worked_verified if e.id in verified_refs else o.worked).append(say(e))
        elif e.kind == EntryKind.DECISION and counts(e):  # an agent's "decision" is nobody's decision
            outcome = str(attrs.get("outcome", "")).lower()
            req = by_id.get(e.ref or "")
            asked = say(req, 160) if req else e.title
            if outcome == "overridden":
                instead = str(attrs.get("instead") or e.body or e.title)[:200]
                o.overridden.append(f"{asked} → {instead} ({e.author.name}, {e.ts:%Y-%m-%d})")
            elif outcome == "rejected":
                o.rejected.append(f"{asked} ({e.author.name}, {e.ts:%Y-%m-%d}): {e.body[:160]}")
            elif outcome == "approved":
                o.approved.append(f"{asked} ({e.author.name}, {e.ts:%Y-%m-%d})")
        elif e.kind == EntryKind.CORRECTION:
            target = by_id.get(e.ref or "")
            o.overridden.append(f"{say(target, 120) if target else 'an entry'} → {say(e, 160)} ({e.author.name}, "
                                f"{e.ts:%Y-%m-%d})")
        if attrs.get("verdict") in ("verified", "disputed") and e.ref and e.kind != EntryKind.VERIFICATION:
            target = by_id.get(e.ref)
            if target is not None:
                (o.findings_verified if attrs["verdict"] == "verified" else o.findings_disputed).append(say(target))
    o.worked = worked_verified + o.worked
    res = [e for e in entries if e.kind == EntryKind.RESOLUTION]
    if res and (res[-1].body or res[-1].title):
        o.resolution = say(res[-1], 400)
        o.worked.append(o.resolution[:240])
    return o
