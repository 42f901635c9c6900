"""Held-out search evaluation data: histories the search engine was never tuned on.

    from bench.heldout import load, NOW
    cases, queries, similar = load("synthetic")      # or "postmortems"

Two sets, each built by a different method and written without looking at the engine or its tuning set
(`bench/heldout/<set>/README.md` says how). They exist to tell whether ranking generalises, so they are for
measuring only: never fit a synonym, weight or threshold to them. The loader validates the format on the way in,
so a hand edit that breaks an invariant fails loudly instead of skewing a score.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SETS = ("synthetic", "postmortems")
ROOT = Path(__file__).resolve().parent
# The fixed "now" that time phrases in queries ("yesterday", "last month") are relative to, for every set.
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
ENTRY_KINDS = frozenset({"finding", "action", "decision", "resolution", "note", "human"})
OUTCOMES = frozenset({"resolved", "open"})


@dataclass(frozen=True)
class Entry:
    kind: str
    author: str
    text: str


@dataclass(frozen=True)
class Case:
    id: str
    title: str
    service: str
    alert: str
    opened_at: datetime
    entries: tuple[Entry, ...]
    outcome: str

    @property
    def is_open(self) -> bool:
        return self.outcome == "open"


@dataclass(frozen=True)
class Query:
    id: str
    query: str
    relevant: tuple[str, ...]
    style: str


@dataclass(frozen=True)
class Similar:
    case: str  # an open case
    similar: tuple[str, ...]  # cases with the same underlying root cause, decided by the data's author


def _rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path.name}:{no}: not JSON: {exc}") from exc
    return rows


def _case(row: dict[str, Any]) -> Case:
    cid = row["id"]
    if row["outcome"] not in OUTCOMES:
        raise ValueError(f"case {cid}: outcome {row['outcome']!r} is not one of {sorted(OUTCOMES)}")
    entries = []
    for e in row["entries"]:
        if e["kind"] not in ENTRY_KINDS:
            raise ValueError(f"case {cid}: entry kind {e['kind']!r} is not one of {sorted(ENTRY_KINDS)}")
        entries.append(Entry(kind=e["kind"], author=e["author"], text=e["text"]))
    opened = datetime.fromisoformat(row["opened_at"].replace("Z", "+00:00"))
    if opened.tzinfo is None:
        raise ValueError(f"case {cid}: opened_at {row['opened_at']!r} has no time zone (must be UTC)")
    return Case(id=cid, title=row["title"], service=row["service"], alert=row["alert"], opened_at=opened,
                entries=tuple(entries), outcome=row["outcome"])


def load(set_name: str) -> tuple[list[Case], list[Query], list[Similar]]:
    """The cases, queries and similar-case ground truth of one held-out set, in file order."""
    if set_name not in SETS:
        raise ValueError(f"unknown held-out set {set_name!r}; choose one of {', '.join(SETS)}")
    d = ROOT / set_name
    cases = [_case(r) for r in _rows(d / "cases.jsonl")]
    queries = [Query(id=r["id"], query=r["query"], relevant=tuple(r["relevant"]), style=r["style"])
               for r in _rows(d / "queries.jsonl")]
    similar = [Similar(case=r["case"], similar=tuple(r["similar"])) for r in _rows(d / "similar.jsonl")]
    return cases, queries, similar
