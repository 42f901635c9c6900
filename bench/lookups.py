"""Indexed lookups (issue 13): finding a case by its external thread, before (a scan) and after (the
bindings index), side by side, at 100,000 cases.

    python bench/lookups.py                      # 100,000 cases, SQLite (~1 min)
    python bench/lookups.py --pg                 # the same on PostgreSQL (a throwaway database)
    python bench/lookups.py --cases 20000 --quick

The journal is filled with SQL (`tests/data/bulk_cases.py`: every case bound to GitHub, half to
PagerDuty, ... with the thread shapes the connectors' `bind` returns; 1 in 500 open). "Before" is the
code this replaced, kept here verbatim in `old_*`: a webhook miss (and the first hit in a process)
read every case, a poll round read every case to pick the live ones, and `find_case` read the newest
10,000 and gave up. "After" is the code as it is. Each row: median wall time over the repeats, and rows
the store fetched (counted, so the figure does not depend on the machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: `python bench/lookups.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._stats import fmt_ms, fmt_ratio, print_table
from sharedctx.config import parse_config
from sharedctx.context import SharedContext
from sharedctx.errors import CaseNotFound
from sharedctx.humans import Humans, Poller
from sharedctx.model import CaseStatus, utcnow
from sharedctx.store.base import Store
from tests.data.bulk_cases import fill, metered, thread

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


# -- the code this replaced (sharedctx before issue 13), verbatim but for `self` ---------------------
def old_case_for(ctx: SharedContext, backend: str, thread_id: str) -> str | None:
    """`Humans.case_for` on a cold cache or a miss: one pass over up to 100,000 cases."""
    threads: dict[tuple[str, str], str] = {}
    for rec in ctx.store.list_cases(limit=100_000):
        t = rec.bindings.get(backend)
        if t:
            for k in ("id", "number", "key"):
                if t.get(k) is not None:
                    threads[(backend, str(t[k]))] = rec.id
    return threads.get((backend, str(thread_id)))


def old_live_cases(ctx: SharedContext, keep: float) -> list[str]:
    """`Poller.live_cases`: every case read to keep the live ones."""
    now = utcnow()
    out = []
    for rec in ctx.store.list_cases(limit=100_000):
        recent = rec.resolved_at is not None and (now - rec.resolved_at).total_seconds() < keep
        if rec.status != CaseStatus.RESOLVED or recent:
            out.append(rec.id)
    return out


def old_find_case(ctx: SharedContext, ref: str) -> str:
    """`SharedContext.find_case` after the id and the open fingerprint missed: the newest 10,000 cases."""
    for rec in ctx.store.list_cases(limit=10_000):
        refs = set(rec.labels.values())
        for t in rec.bindings.values():
            refs.update(str(t.get(k)) for k in ("id", "url", "number", "key") if t.get(k))
        if ref in refs or ref.rstrip("/") in refs:
            return rec.id
    raise CaseNotFound(f"no case matches {ref!r}")


# -- measuring ---------------------------------------------------------------------------------------
def measure(store: Store, fn: Callable[[], Any], repeats: int) -> tuple[float, int, Any]:
    """Median seconds of `fn` over `repeats` runs, rows fetched by one run, and its result."""
    times = []
    result: Any = None
    with metered(store) as m:
        result = _result(fn)
    rows = m.rows
    for _ in range(repeats):
        t0 = time.perf_counter()
        _result(fn)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), rows, result


def _result(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except CaseNotFound:
        return "not found"


def speedup(x: float) -> str:
    return f"{x:,.0f}×" if x >= 100 else fmt_ratio(x)


def run(store: Store, n: int, quick: bool, label: str) -> None:
    t0 = time.perf_counter()
    target = min(14_999, n - 1)
    filled = fill(store, n, everywhere=(target,))
    fill_s = time.perf_counter() - t0
    if label == "PostgreSQL":  # what autovacuum does soon after a bulk load; planner statistics
        with store._tx() as c:  # type: ignore[attr-defined]
            c.execute("ANALYZE")
    ctx = SharedContext.open(parse_config({"store": "unused.db"}, base_dir=Path(tempfile.gettempdir())),
                             store=store, backends={}, worker=False)  # fmt: skip
    humans = Humans(ctx)
    keep = ctx.config.humans.poll_resolved_for
    poller = Poller(ctx, humans)
    ctx.backends = {"github": None, "pagerduty": None}  # type: ignore[dict-item]  # names only: live_cases
    old_n, new_n = (1, 20) if quick else (3, 200)
    issue = thread("github", target)["id"]
    url = thread("jira", target)["url"]
    expected = filled.ids[target]
    cases = [
        ("webhook: bound thread → case", lambda: old_case_for(ctx, "github", issue),
         lambda: humans.case_for("github", issue), expected),
        ("webhook: unbound thread (miss)", lambda: old_case_for(ctx, "github", str(n + 99)),
         lambda: humans.case_for("github", str(n + 99)), None),
        ("poll round: which cases are live", lambda: sorted(old_live_cases(ctx, keep)),
         lambda: sorted(poller.live_cases()), None),
        (f"find_case(Jira URL of case #{target + 1:,})", lambda: old_find_case(ctx, url),
         lambda: ctx.find_case(url).id, expected),
    ]
    rows = []
    for name, old, new, want in cases:
        old_s, old_rows, old_got = measure(store, old, old_n)
        new_s, new_rows, new_got = measure(store, new, new_n)
        if want is not None and new_got != want:
            raise SystemExit(f"{name}: the index answered {new_got!r}, expected {want!r}")
        if name.startswith("poll") and old_got != new_got:
            # the new round skips live cases bound to no backend it polls; the fill binds every case to GitHub
            raise SystemExit(f"{name}: old and new disagree on which cases are live")
        note = "" if old_got == new_got else f" (before: {old_got})"
        rows.append([name + note, fmt_ms(old_s), f"{old_rows:,}", fmt_ms(new_s), f"{new_rows:,}",
                     speedup(old_s / new_s) if new_s else "-"])
    load = os.getloadavg()
    print_table(f"Lookups at {n:,} cases, {label} (fill {fill_s:.0f} s; load {load[0]:.1f} {load[1]:.1f})",
                ["lookup", "before", "rows", "after", "rows", "speed-up"], rows)
    ctx.worker.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--pg", nargs="?", const=DEFAULT_PG, help="run on PostgreSQL (admin URL; a database is made "
                    "and dropped)")
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    args = ap.parse_args()
    if args.pg:
        import psycopg

        from sharedctx.store.postgres import PostgresStore

        name = f"bindings_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        pg = PostgresStore(args.pg.rsplit("/", 1)[0] + f"/{name}")
        try:
            run(pg, args.cases, args.quick, "PostgreSQL")
        finally:
            pg.close()
            with psycopg.connect(args.pg, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return
    from sharedctx.store.sqlite import SQLiteStore

    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "journal.db")
        try:
            run(store, args.cases, args.quick, "SQLite")
        finally:
            store.close()


if __name__ == "__main__":
    main()
