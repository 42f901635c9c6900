"""Running sharedctx as a fleet on one PostgreSQL (issue 13), one section per module.

Each section module exposes `run(pg_url: str, quick: bool) -> Section` and is printed by `bench/fleet.py`
side by side with the others in one run.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Section:
    """One part of the fleet bench: a titled table and the verdict lines against the issue's targets."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)  # e.g. "scaling at 4 workers ≥ 3×: PASS (3.4×)"
    notes: list[str] = field(default_factory=list)
