"""Exactly-once under kill -9: the README "Reliability" figures.

Runs the soak of tests/acceptance/soak.py at full scale: real `sharedctx worker` processes, one of them
SIGKILLed each round at a random moment 0–2 s after it started delivering (15% of kills land during its
startup instead), deliver to a GitHub double on a real port with 50–400 ms latency per request; 15% of
writes are stored and then answered with a dropped connection. On SQLite with
one worker, and on PostgreSQL with two workers whose lease (1 s) is shorter than a delivery. Everything is
counted on the double's storage.

    .venv/bin/python bench/reliability.py            # 30 rounds, 240 entries per store
    .venv/bin/python bench/reliability.py --quick    # 5 rounds, 24 entries
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

from tests.acceptance.soak import Soak, SoakResult, run

PG_ADMIN = os.environ.get("SHAREDCTX_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _row(label: str, r: SoakResult) -> str:
    return (f"| {label} | {r.soak.workers} | {r.kills} | {r.entries} | {r.writes} | {r.dropped} | "
            f"{r.reconciled} | **{r.duplicates}** | **{r.losses}** | {r.extra_threads} | {r.seconds:.0f} s |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    shape = ({"rounds": 5, "entries": 24, "cases": 4} if args.quick else {"rounds": 30, "entries": 240, "cases": 8})
    common = {**shape, "latency": (0.05, 0.4), "drop_writes": 0.15, "kill_window": (0.0, 2.0), "lease": 1.0,
              "seed": args.seed}
    rows = []
    with tempfile.TemporaryDirectory(prefix="sctx-bench-") as tmp:
        lite = Path(tmp) / "sqlite"
        lite.mkdir()
        rows.append(("SQLite", run(Soak(store="journal.db", workers=1, **common), lite)))
        name = f"sctx_bench_rel_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            pg = Path(tmp) / "pg"
            pg.mkdir()
            url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
            rows.append(("PostgreSQL", run(Soak(store=url, workers=2, **common), pg)))
        finally:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print("| store | workers | kill -9 | entries | writes | dropped after commit | re-attempted | duplicates | "
          "losses | extra issues | time |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, r in rows:
        print(_row(label, r))
    for label, r in rows:
        print(f"{label}: seed {r.seed}, {r.delivered_during_rounds} delivered while workers were being killed"
              + (f"; {'; '.join(r.notes)}" if r.notes else ""))
    if not all(r.ok for _, r in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
