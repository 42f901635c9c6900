"""Many workers, many servers, one PostgreSQL: the issue-13 fleet figures side by side, in one run.

    python bench/fleet.py                  # full run
    python bench/fleet.py --quick          # smaller, for a smoke check
    python bench/fleet.py --only workers   # one section: workers | limit | failover

Sections (each in bench/fleet_parts/<name>.py):
1. workers  — 1, 2 and 4 `sharedctx worker` processes against a service double with 50 ms latency:
              throughput ratio, duplicates and out-of-order deliveries per case (target ≥ 3× at 4).
2. limit    — 4 processes against a GitHub double that enforces 80/min and 500/h (scaled clock): the
              sum stays ≤ the limit, reaches ≥ 0.9 of it, 0 secondary-limit violations.
3. failover — two `sharedctx serve` replicas take one Alertmanager alert, one is killed mid-investigation:
              the case is investigated and closed once, by the survivor; time to take over.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: `python bench/fleet.py`
    # bench/ itself would be first on sys.path, and bench/mcp.py would shadow the `mcp` package
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._stats import print_table

SECTIONS = ("workers", "limit", "failover")
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL URL; each section makes and drops its own database")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=SECTIONS, action="append")
    args = ap.parse_args()
    for name in args.only or SECTIONS:
        try:
            module = importlib.import_module(f"bench.fleet_parts.{name}")
        except ModuleNotFoundError as exc:
            print(f"\n{name}: not built ({exc})")
            continue
        section = module.run(args.pg, args.quick)
        print_table(section.title, section.columns, section.rows)
        for line in section.notes:
            print(f"  {line}")
        for line in section.verdicts:
            print(f"  {line}")


if __name__ == "__main__":
    main()
