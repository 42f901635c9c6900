"""What one `record()` costs in CPU time, for comparing two trees on a shared, noisy machine.

    python bench/record_cpu.py            # from the tree to measure; run it in both trees, interleaved

Wall-clock figures (`bench/record.py`) move with whatever else the machine runs; CPU time (`time.process_time`,
all threads, SQLite's C code included) moves much less, and is what a change to the write path changes. Three
figures, each the median of `--reps` rounds:

1. CPU per `record()`, one thread, the bench entry of `bench/record.py` on SQLite (WAL, synchronous=NORMAL).
2. The Python part alone: the same calls with the SQLite connection's `execute`/`executemany` replaced by a stub
   that returns a case head, so what is left is validation, redaction, hashing, serialisation and the plumbing
   around the store (the SQL's own cost is the floor's, see `bench/record.py`).
3. CPU per entry with 4 threads recording at once (group commit): above (1), the cost of batching and hand-offs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: `python bench/record_cpu.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.record import bench_config, record_once
from sharedctx.context import Case, SharedContext


class _Rows:
    rowcount = 1

    def fetchone(self) -> tuple[Any, ...]:
        return (5, "a" * 64, "open", None)

    def fetchall(self) -> list[Any]:
        return [self.fetchone()]  # a case head, for the write path's cache of them


class _NoSQL:
    """A connection whose statements do nothing (for the Python-only figure)."""

    in_transaction = False

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Any = ()) -> _Rows:
        return _Rows()

    def executemany(self, sql: str, params: Any) -> _Rows:
        return _Rows()

    def close(self) -> None:
        self.conn.close()


def cpu_per_record(case: Case, n: int) -> float:
    t0 = time.process_time()
    for _ in range(n):
        record_once(case)
    return (time.process_time() - t0) / n


def cpu_per_entry_threads(ctx: SharedContext, threads: int, per_thread: int) -> float:
    cases = [ctx.open_case(f"cpu {i}", service="bench") for i in range(threads)]
    for case in cases:
        record_once(case)
    start = threading.Barrier(threads + 1)

    def run(case: Case) -> None:
        start.wait()
        for _ in range(per_thread):
            record_once(case)

    workers = [threading.Thread(target=run, args=(c,)) for c in cases]
    for w in workers:
        w.start()
    t0 = time.process_time()
    start.wait()
    for w in workers:
        w.join()
    return (time.process_time() - t0) / (threads * per_thread)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1500, help="records per round")
    ap.add_argument("--reps", type=int, default=5, help="rounds; the median is shown")
    args = ap.parse_args(argv)
    os.environ.setdefault("SHAREDCTX_SQLITE_SYNC", "NORMAL")
    out: dict[str, list[float]] = {"sqlite": [], "python": [], "threads": []}
    with tempfile.TemporaryDirectory(prefix="sharedctx-cpu-") as tmp:
        with SharedContext.open(bench_config(Path(tmp) / "one", "journal.db"), worker=False) as ctx:
            case = ctx.open_case("cpu", service="bench")
            cpu_per_record(case, 200)  # warm up: detectors built, statements cached
            out["sqlite"] = [cpu_per_record(case, args.n) for _ in range(args.reps)]
        with SharedContext.open(bench_config(Path(tmp) / "four", "journal.db"), worker=False) as ctx:
            out["threads"] = [cpu_per_entry_threads(ctx, 4, args.n // 4) for _ in range(args.reps)]
        with SharedContext.open(bench_config(Path(tmp) / "stub", "journal.db"), worker=False) as ctx:
            case = ctx.open_case("cpu", service="bench")
            store: Any = ctx.store
            real, store._conn = store._conn, _NoSQL(store._conn)
            try:
                cpu_per_record(case, 200)
                out["python"] = [cpu_per_record(case, args.n) for _ in range(args.reps)]
            finally:
                store._conn = real
            ctx._appended = False  # nothing real was appended: no checkpoint to write on close
    med = {k: statistics.median(v) * 1e6 for k, v in out.items()}
    print(f"CPU per record(), 1 thread, SQLite:       {med['sqlite']:7.1f} µs")
    print(f"  of which Python (SQL stubbed out):      {med['python']:7.1f} µs")
    print(f"CPU per entry, 4 threads (group commit):  {med['threads']:7.1f} µs")
    load, version = os.getloadavg()[0], sys.version.split()[0]
    print(f"median of {args.reps} rounds of {args.n}; load average {load:.1f}; python {version}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
