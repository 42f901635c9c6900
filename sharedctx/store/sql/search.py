"""The SQL behind history search that both stores share: filters, candidate conditions, rows."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ...model import (
    format_ts,
    parse_ts,
)
from ..base import (
    Candidate,
    CandidateQuery,
    EntryMatch,
    SearchFilters,
)
from .common import _json, stored_entry, trusted


def filter_clauses(f: SearchFilters) -> tuple[list[str], list[Any]]:
    """WHERE conditions (over `e` = entries, `c` = cases) for the structured search filters."""
    where: list[str] = []
    params: list[Any] = []
    for cond, value in (
        ("c.service = ?", f.service),
        ("e.author_kind = ?", f.author_kind),
        ("e.author_name = ?", f.author),
        ("e.case_id = ?", f.case_id),
        ("c.status = ?", f.case_status),
        ("e.ts >= ?", format_ts(f.since) if f.since else None),
        ("e.ts <= ?", format_ts(f.until) if f.until else None),
    ):
        if value is not None:
            where.append(cond)
            params.append(value)
    if f.kinds:
        where.append(f"e.kind IN ({','.join('?' * len(f.kinds))})")
        params.extend(f.kinds)
    if f.services:
        where.append(f"c.service IN ({','.join('?' * len(f.services))})")
        params.extend(f.services)
    return where, params


def json_text(dialect: str, column: str, key: str) -> str:
    """SQL for `column`'s JSON member `key` as text (key already checked to be `\\w+`)."""
    if dialect == "postgres":
        return f"({column}->>'{key}')"
    return f"json_extract({column}, '$.{key}')"


def entry_match_clause(dialect: str, alias: str, matches: Sequence[EntryMatch]) -> tuple[str, list[Any]]:
    """One SQL condition: the entry `alias` matches any of `matches` (an empty list matches nothing)."""
    ors: list[str] = []
    params: list[Any] = []
    for m in matches:
        ands: list[str] = []
        if m.kind:
            ands.append(f"{alias}.kind = ?")
            params.append(m.kind)
        if m.author_kind:
            ands.append(f"{alias}.author_kind = ?")
            params.append(m.author_kind)
        if m.attr and re.fullmatch(r"\w{1,64}", m.attr):
            ands.append(f"{json_text(dialect, alias + '.attrs', m.attr)} IN ({','.join('?' * len(m.values))})"
                        if m.values else f"{json_text(dialect, alias + '.attrs', m.attr)} IS NOT NULL")
            params.extend(m.values)
        ors.append("(" + (" AND ".join(ands) or "1=1") + ")")
    return ("(" + " OR ".join(ors) + ")" if ors else "1=0"), params


def candidate_conditions(dialect: str, q: CandidateQuery) -> tuple[list[str], list[Any]]:
    """WHERE conditions (over `e` and `c`) for a history search, besides the full-text match."""
    where, params = filter_clauses(q.filters)
    if q.entry_is:
        cond, values = entry_match_clause(dialect, "e", q.entry_is)
        where.append(cond)
        params.extend(values)
        kinds = sorted({m.kind for m in q.entry_is if m.kind})
        if kinds and all(m.kind for m in q.entry_is):  # lets the (kind, ts) index narrow the scan
            where.append(f"e.kind IN ({','.join('?' * len(kinds))})")
            params.extend(kinds)
    if q.case_has:
        cond, values = entry_match_clause(dialect, "o", q.case_has)
        where.append(f"e.case_id IN (SELECT o.case_id FROM entries o WHERE {cond})")
        params.extend(values)
    if q.min_rowid is not None:
        where.append("e.rowid >= ?")
        params.append(q.min_rowid)
    return where, params


def title_query(q: CandidateQuery) -> CandidateQuery:
    """`q` with only its case-level conditions: a case found by its title is represented by its first entry."""
    f = q.filters.model_copy(update={"kinds": None, "author": None, "author_kind": None})
    return q.model_copy(update={"entry_is": [], "min_rowid": None, "filters": f})


CANDIDATE_CASE_COLS = "c.service, c.title, c.status, c.fingerprint, c.labels, c.created_at, c.resolved_at"


def row_to_candidate(r: Sequence[Any]) -> Candidate:
    """A row of ENTRY_COLS, rowid, CANDIDATE_CASE_COLS, score."""
    return trusted(Candidate, {
        "entry": stored_entry(r[:15]),
        "rowid": r[15],
        "service": r[16],
        "case_title": r[17],
        "case_status": r[18],
        "fingerprint": r[19],
        "labels": _json(r[20]) or {},
        "case_created_at": parse_ts(r[21]),
        "case_resolved_at": parse_ts(r[22]) if r[22] else None,
        "score": float(r[23] or 0.0),
    })


