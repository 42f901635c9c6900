"""Small helpers shared by the bench scripts: percentiles, latency summaries, and tables.

    from bench._stats import Latency, print_table, fmt_ms
    lat = Latency.of(samples_in_seconds, wall=elapsed)
    print_table("record()", ["what", "p50", "p99", "per s"], [["sqlite", fmt_ms(lat.p50), ...]])

Tables use `rich` when it is installed (it is a sharedctx dependency) and plain aligned text otherwise
or when `plain=True` (e.g. output piped into a file for a README).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def percentiles(values: Sequence[float], qs: Sequence[float] = (50, 99)) -> dict[float, float]:
    return {q: percentile(values, q) for q in qs}


@dataclass(frozen=True)
class Latency:
    """A latency distribution in seconds, plus throughput when the wall time of the run is known."""

    n: int
    p50: float
    p90: float
    p99: float
    max: float
    mean: float
    per_second: float  # n / wall (all threads together); n / sum(samples) when wall is not given

    @classmethod
    def of(cls, samples: Sequence[float], *, wall: float | None = None) -> Latency:
        total = wall if wall is not None else sum(samples)
        return cls(
            n=len(samples),
            p50=percentile(samples, 50),
            p90=percentile(samples, 90),
            p99=percentile(samples, 99),
            max=max(samples) if samples else math.nan,
            mean=statistics.fmean(samples) if samples else math.nan,
            per_second=len(samples) / total if total > 0 else math.nan,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fmt_ms(seconds: float) -> str:
    """Seconds -> a short human latency: µs below 1 ms, ms above."""
    if math.isnan(seconds):
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def fmt_rate(per_second: float) -> str:
    return "-" if math.isnan(per_second) else f"{per_second:,.0f}/s"


def fmt_ratio(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.2f}×"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def plain_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Aligned plain text: first column left-aligned, the others right-aligned."""
    cells = [[str(c) for c in columns]] + [[str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]

    def line(r: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True)))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([title, line(cells[0]), rule, *(line(r) for r in cells[1:])])


def print_table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    plain: bool = False,
    caption: str | None = None,
) -> None:
    """Print one table (rich if available and not `plain`). PASS/MISS cells are coloured under rich."""
    if not plain:
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            plain = True
    if plain:
        print(plain_table(title, columns, rows))
        if caption:
            print(caption)
        print()
        return
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right", overflow="fold")
    for r in rows:
        table.add_row(*(_colour(str(v)) for v in r))
    Console(width=max(100, Console().width)).print(table)


def _colour(cell: str) -> str:
    if cell.startswith("PASS"):
        return f"[green]{cell}[/]"
    if cell.startswith("MISS"):
        return f"[bold red]{cell}[/]"
    return cell.replace("[", r"\[")
