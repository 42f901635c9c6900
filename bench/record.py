"""How much does recording cost an investigation? Everything the issue asks for, side by side, in one run.

    python bench/record.py                 # full run (~1 minute)
    python bench/record.py --quick         # a smaller run for a smoke check
    python bench/record.py --pg postgresql://postgres@127.0.0.1:5432/postgres --json

1. `record()` latency p50/p99 and entries/s with 1 and 4 threads, on SQLite and on PostgreSQL (a
   throwaway database created from `--pg` and dropped afterwards). Each thread records into its own
   case (several agents on several incidents); one `local` backend, so one outbox row per entry. The
   delivery worker is off here: this is the cost of `record()` itself.
2. The floor: a bare `sqlite3` transaction on the same schema (`store/migrations/sqlite/*.sql`, WAL,
   `synchronous=NORMAL`, foreign keys on) with the values precomputed (no validation, ids, hashing or
   redaction): as the issue defines it, the entry row (its FTS5 row via the schema's trigger) and one
   outbox row per backend; and beside it the same plus the read and update of the case row that
   `record()` does to keep the per-case sequence gap-free across processes.
3. A simulated investigation: steps of "work" (`time.sleep`: an agent mostly waits on models and
   tools) each followed by `record()`, with the in-process delivery worker running, against the same
   loop with no recording; with the backend healthy (an in-memory backend), answering after 2 s, and
   down (every append raises `Retryable`); plus the default `local` folder backend, for reference.
   Step lengths of 2 ms, 20 ms and 100 ms are measured side by side (`--work`), since the ratio
   depends on how long a step is: the cost of a `record()` is fixed, the work around it is not.

4. Thread scaling (issue 13): 4-thread against 1-thread `record()` throughput on SQLite, as several pairs of
   runs taken back to back on fresh journals. Throughput on a shared VM swings 2× from one second to the next,
   so one pair decides nothing: the median of the pairs' ratios is the figure, printed with its spread.

Targets (issue 3): SQLite `record()` p99 ≤ 1 ms and p50 ≤ 1.5× the floor's p50 (1 thread); overhead
ratio ≤ 1.05 in all three backend states. Issue 13: 4 threads ≥ 1.5× one thread. Each is printed with PASS
or MISS as measured.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import psycopg

from sharedctx.backends.base import Hit, ReadBack, ThreadRef
from sharedctx.config import parse_config
from sharedctx.context import Case, SharedContext
from sharedctx.errors import Retryable
from sharedctx.model import CaseRecord, Entry, ExternalRef
from sharedctx.store.base import read_migrations
from sharedctx.store.sql import entry_params
from sharedctx.store.sqlite import SQLiteStore

if __package__ in (None, ""):  # run as a script: `python bench/record.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._stats import Latency, fmt_ms, fmt_rate, fmt_ratio, print_table, verdict

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"

TITLE = "p99 latency on checkout up 8x since deploy 4411"
BODY = (
    "Since **10:02 UTC**, right after deploy `4411` of `checkout`, p99 latency went from 310 ms to 2.4 s "
    "while p50 barely moved. The slow requests all touch `PaymentClient.authorize`; the card-processor "
    "dependency shows no errors but its connection pool is saturated (`pool_wait_seconds` p99 1.9 s).\n\n"
    "- error rate unchanged (0.2 %)\n- only EU pods affected\n- rollback candidate: 4410"
)
EVIDENCE = [
    {
        "type": "metric",
        "source": "prometheus",
        "summary": "checkout p99 2.4 s vs 0.31 s baseline",
        "query": "histogram_quantile(0.99, sum by (le) "
        '(rate(http_server_duration_seconds_bucket{service="checkout"}[5m])))',
    }
]


# -- record() latency ------------------------------------------------------------------------------
def bench_config(folder: Path, store: str) -> Any:
    return parse_config(
        {
            "store": store,
            "agent": {"name": "bench", "kind": "primary"},
            "backends": [{"type": "local", "path": "cases"}],
            "worker": {"enabled": False},
        },
        base_dir=folder,
    )


def record_once(case: Case) -> None:
    case.record("finding", TITLE, BODY, evidence=EVIDENCE)


def measure_record(ctx: SharedContext, threads: int, per_thread: int, warmup: int) -> Latency:
    """Each thread records `per_thread` entries into its own case; per-call latency and total rate."""
    cases = [ctx.open_case(f"bench {uuid.uuid4().hex[:6]}", service="bench") for _ in range(threads)]
    for case in cases:
        for _ in range(warmup):
            record_once(case)
    samples: list[list[float]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads + 1)

    def run(i: int) -> None:
        out, case, clock = samples[i], cases[i], time.perf_counter
        start.wait()
        for _ in range(per_thread):
            t0 = clock()
            record_once(case)
            out.append(clock() - t0)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in workers:
        t.join()
    wall = time.perf_counter() - t0
    return Latency.of([s for per in samples for s in per], wall=wall)


class FloorWriter:
    """A bare sqlite3 transaction with precomputed values. `case_row=False` is the issue's floor
    (entry row, its FTS row, one outbox row per backend); `case_row=True` adds the read and update of
    the case row that `record()` does to keep the per-case sequence gap-free across processes."""

    def __init__(self, folder: Path, backends: int = 1, *, case_row: bool = False) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.conn = conn = sqlite3.connect(folder / "floor.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        for _, _, sql in read_migrations("sqlite"):
            conn.executescript(sql)
        self.case_id = "01FLOORCASE000000000000000"
        conn.execute(
            "INSERT INTO cases (id, title, service, severity, status, created_at, updated_at, last_seq, last_hash) "
            "VALUES (?, 'floor', 'bench', 'warning', 'open', '2025-01-01T00:00:00.000000Z', "
            "'2025-01-01T00:00:00.000000Z', 0, ?)",
            (self.case_id, "0" * 64),
        )
        # The exact row `record()` writes, serialised once: same bytes into the table and the FTS index.
        ctx = SharedContext(bench_config(folder, ":memory:"), SQLiteStore(":memory:"), {}, worker=False)
        self.template = entry_params(ctx.open_case("template").record("finding", TITLE, BODY, evidence=EVIDENCE))
        ctx.close()
        self.template["case_id"] = self.case_id
        self.names = [f"b{i}" for i in range(backends)]
        self.case_row = case_row
        self.i = 0

    INSERT_ENTRY = (
        "INSERT INTO entries (id, case_id, seq, ts, author_kind, author_name, kind, title, body, evidence, ref, "
        "trace_id, attrs, prev_hash, hash, evidence_text) VALUES (:id, :case_id, :seq, :ts, :author_kind, "
        ":author_name, :kind, :title, :body, :evidence, :ref, :trace_id, :attrs, :prev_hash, :hash, :evidence_text)"
    )

    def write(self) -> None:
        conn, template, case_id = self.conn, self.template, self.case_id
        self.i += 1
        conn.execute("BEGIN IMMEDIATE")
        if self.case_row:
            seq, prev, status, resolved = conn.execute(
                "SELECT last_seq, last_hash, status, resolved_at FROM cases WHERE id=?", (case_id,)
            ).fetchone()
        else:
            seq, prev = self.i, template["hash"]
        template["id"] = f"{self.i:026d}"
        template["seq"] = seq + 1
        template["prev_hash"] = prev
        conn.execute(self.INSERT_ENTRY, template)
        conn.executemany(
            "INSERT INTO outbox (entry_id, case_id, seq, backend, next_attempt_at, created_at) VALUES (?,?,?,?,?,?)",
            [(template["id"], case_id, seq + 1, b, 0.0, 0.0) for b in self.names],
        )
        if self.case_row:
            conn.execute(
                "UPDATE cases SET last_seq=?, last_hash=?, updated_at=?, status=?, resolved_at=? WHERE id=?",
                (seq + 1, template["hash"], template["ts"], status, resolved, case_id),
            )
        conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


def measure_floor(folder: Path, n: int, warmup: int, backends: int = 1, *, case_row: bool = False) -> Latency:
    writer = FloorWriter(folder, backends, case_row=case_row)
    samples: list[float] = []
    clock = time.perf_counter
    t_all = 0.0
    for i in range(warmup + n):
        t0 = clock()
        writer.write()
        dt = clock() - t0
        if i >= warmup:
            samples.append(dt)
            t_all += dt
    writer.close()
    return Latency.of(samples, wall=t_all)


@contextmanager
def temp_pg_database(admin_url: str) -> Iterator[str]:
    name = f"sharedctx_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- the investigation loop ------------------------------------------------------------------------
class BenchBackend:
    """An in-memory backend that is healthy, slow (answers after `delay` seconds), or down."""

    type: ClassVar[str] = "bench"

    def __init__(self, name: str, mode: str, delay: float = 2.0) -> None:
        self.name, self.mode, self.delay = name, mode, delay
        self.appended = 0
        self.attempts = 0

    def bind(self, case: CaseRecord) -> ThreadRef:
        return ThreadRef(backend=self.name, id=case.id)

    def append(self, thread: ThreadRef, entry: Entry) -> ExternalRef:
        self.attempts += 1
        if self.mode == "down":
            raise Retryable("bench: backend down (connection refused)")
        if self.mode == "slow":
            time.sleep(self.delay)
        self.appended += 1
        return ExternalRef(backend=self.name, id=entry.id)

    def lookup(self, thread: ThreadRef, entry_id: str) -> ExternalRef | None:
        return None

    def read_back(self, thread: ThreadRef, since: str | None = None) -> ReadBack:
        return ReadBack()

    def search(self, text: str, limit: int = 20) -> list[Hit]:
        return []

    def resolve(self, thread: ThreadRef, summary: Entry) -> None:
        pass

    def close(self) -> None:
        pass


def investigation(case: Case | FloorWriter | None, steps: int, work: float) -> float:
    """`steps` x (~`work` s of waiting, then record() unless `case` is None). Wall seconds.

    With a `FloorWriter` instead of a case, each step does the bare floor transaction instead: what
    any durable local write costs at that step length on this machine (a reference, not a target)."""
    t0 = time.perf_counter()
    for i in range(steps):
        time.sleep(work)
        if isinstance(case, FloorWriter):
            case.write()
        elif case is not None:
            case.record("finding", f"step {i}: {TITLE}", BODY, evidence=EVIDENCE)
    return time.perf_counter() - t0


@dataclass
class LoopResult:
    state: str
    steps: int
    work: float
    baseline: float  # median wall seconds, no recording
    recording: float  # median wall seconds, recording every step
    delivered: int  # entries the backend accepted during the run (shows the worker really ran)
    attempts: int
    target: bool  # whether the ≤ 1.05 target applies to this row

    @property
    def ratio(self) -> float:
        return self.recording / self.baseline


def measure_floor_loop(folder: Path, steps: int, work: float, reps: int) -> LoopResult:
    writer = FloorWriter(folder)
    try:
        investigation(writer, 10, work)
        base, rec = [], []
        for _ in range(reps):
            base.append(investigation(None, steps, work))
            rec.append(investigation(writer, steps, work))
    finally:
        writer.close()
    return LoopResult("floor", steps, work, statistics.median(base), statistics.median(rec), 0, 0, False)


def measure_loop(folder: Path, state: str, steps: int, work: float, reps: int) -> LoopResult:
    if state == "floor":
        return measure_floor_loop(folder, steps, work, reps)
    backend = None if state == "local" else BenchBackend("svc", {"healthy": "ok", "2 s": "slow", "down": "down"}[state])
    cfg = parse_config(
        {"store": "journal.db", "agent": {"name": "bench", "kind": "primary"},
         "backends": [{"type": "local", "path": "cases"}]},
        base_dir=folder,
    )  # fmt: skip
    ctx = SharedContext.open(cfg, worker=True, backends=None if backend is None else {"svc": backend})
    try:
        case = ctx.open_case("investigation", service="bench")
        investigation(case, 10, work)  # warm up: first delivery binds the case thread, caches
        base, rec = [], []
        for _ in range(reps):
            base.append(investigation(None, steps, work))
            rec.append(investigation(case, steps, work))
        delivered = ctx.store.outbox_counts().get(ctx.backend_names[0], {}).get("delivered", 0)
        attempts = backend.attempts if backend else delivered
    finally:
        ctx.close()
    return LoopResult(
        state, steps, work, statistics.median(base), statistics.median(rec), delivered, attempts, state != "local"
    )


# -- the run ---------------------------------------------------------------------------------------
@dataclass
class Sizes:
    per_thread_1: int
    per_thread_4: int
    pg_per_thread: int
    floor: int
    warmup: int
    steps: int
    reps: int
    pairs: int  # interleaved 1-thread / 4-thread runs for the scaling ratio
    pair_entries: int  # entries per run of a pair (all threads together)


    loop_seconds: float  # each loop is about this long, so long steps mean fewer of them


FULL = Sizes(per_thread_1=5000, per_thread_4=1500, pg_per_thread=1000, floor=5000, warmup=200, steps=200, reps=3,
             pairs=7, pair_entries=2400, loop_seconds=2.0)  # fmt: skip
QUICK = Sizes(per_thread_1=800, per_thread_4=300, pg_per_thread=200, floor=800, warmup=50, steps=100, reps=1,
              pairs=2, pair_entries=800, loop_seconds=1.0)  # fmt: skip


@dataclass
class Scaling:
    """4-thread against 1-thread throughput, as pairs of runs taken one right after the other. On a shared VM
    one-thread throughput alone swings 2x from one second to the next, so a single pair says little; the
    median of several interleaved pairs is the figure, and the spread is shown beside it."""

    one: list[float]
    four: list[float]

    @property
    def ratios(self) -> list[float]:
        return [b / a for a, b in zip(self.one, self.four, strict=True)]

    @property
    def median(self) -> float:
        return statistics.median(self.ratios)


def measure_scaling(root: Path, sizes: Sizes, log: Callable[[str], None]) -> Scaling:
    out = Scaling([], [])
    for i in range(sizes.pairs):
        log(f"thread scaling: pair {i + 1} of {sizes.pairs}")
        for threads, rates in ((1, out.one), (4, out.four)):
            with SharedContext.open(bench_config(root / f"pair{i}-{threads}", "journal.db"), worker=False) as ctx:
                rates.append(measure_record(ctx, threads, sizes.pair_entries // threads, sizes.warmup).per_second)
    return out


def run(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    sizes = QUICK if args.quick else FULL
    out: dict[str, Any] = {"sizes": sizes.__dict__, "record": {}, "loop": {}}
    with tempfile.TemporaryDirectory(prefix="sharedctx-bench-") as tmp:
        root = Path(tmp)
        log("floor: bare sqlite3 transaction")
        out["floor"] = measure_floor(root / "floor", sizes.floor, sizes.warmup)
        out["floor_case"] = measure_floor(root / "floor-case", sizes.floor, sizes.warmup, case_row=True)
        for threads, n in ((1, sizes.per_thread_1), (4, sizes.per_thread_4)):
            log(f"record() on SQLite, {threads} thread(s)")
            folder = root / f"sqlite{threads}"
            with SharedContext.open(bench_config(folder, "journal.db"), worker=False) as ctx:
                out["record"][f"sqlite/{threads}"] = measure_record(ctx, threads, n, sizes.warmup)
        out["scaling"] = measure_scaling(root / "scaling", sizes, log)
        if args.pg:
            try:
                with temp_pg_database(args.pg) as url:
                    for threads in (1, 4):
                        log(f"record() on PostgreSQL, {threads} thread(s)")
                        with SharedContext.open(bench_config(root / "pg", url), worker=False) as ctx:
                            out["record"][f"postgres/{threads}"] = measure_record(
                                ctx, threads, sizes.pg_per_thread, sizes.warmup // 4
                            )
            except psycopg.OperationalError as exc:
                out["pg_error"] = str(exc).strip()
                log(f"PostgreSQL unavailable: {out['pg_error']}")
        for work in args.work:
            steps = max(20, min(sizes.steps, int(sizes.loop_seconds / work)))
            for state in ("healthy", "2 s", "down", "local", "floor"):
                log(f"investigation loop, {work * 1e3:g} ms steps, backend {state}")
                out["loop"][(work, state)] = measure_loop(
                    root / f"loop-{work}-{state.replace(' ', '')}", state, steps, work, sizes.reps
                )
    return out


def targets(res: dict[str, Any]) -> list[tuple[str, str, bool]]:
    sq: Latency = res["record"]["sqlite/1"]
    floor: Latency = res["floor"]
    rows = [
        ("SQLite record() p99 ≤ 1 ms (1 thread)", fmt_ms(sq.p99), sq.p99 <= 1e-3),
        ("SQLite record() p50 ≤ 1.5× floor p50", fmt_ratio(sq.p50 / floor.p50), sq.p50 <= 1.5 * floor.p50),
    ]
    sc: Scaling = res["scaling"]
    rows.append(("SQLite record() 4 threads ≥ 1.5× 1 thread (issue 13; median of interleaved pairs)",
                 f"{sc.median:.2f}× ({min(sc.ratios):.2f}–{max(sc.ratios):.2f}×)", sc.median >= 1.5))
    for (work, state), loop in res["loop"].items():
        if loop.target:
            rows.append(
                (f"overhead ≤ 1.05, {work * 1e3:g} ms steps, backend {state}", f"{loop.ratio:.3f}", loop.ratio <= 1.05)
            )
    return rows


def report(res: dict[str, Any], plain: bool) -> None:
    floor: Latency = res["floor"]
    labels = {"sqlite/1": ("record() SQLite", 1), "sqlite/4": ("record() SQLite", 4),
              "postgres/1": ("record() PostgreSQL", 1), "postgres/4": ("record() PostgreSQL", 4)}  # fmt: skip
    rows: list[list[str]] = []
    for key, lat in res["record"].items():
        name, threads = labels[key]
        rows.append(
            [
                name,
                str(threads),
                f"{lat.n:,}",
                fmt_ms(lat.p50),
                fmt_ms(lat.p99),
                fmt_rate(lat.per_second),
                fmt_ratio(lat.p50 / floor.p50),
                fmt_ratio(lat.p99 / floor.p99),
            ]
        )
    floors = (("floor: entry+FTS+outbox (issue)", floor), ("floor + case row (our tx shape)", res["floor_case"]))
    for name, lat in floors:
        rows.append(
            [
                name,
                "1",
                f"{lat.n:,}",
                fmt_ms(lat.p50),
                fmt_ms(lat.p99),
                fmt_rate(lat.per_second),
                fmt_ratio(lat.p50 / floor.p50),
                fmt_ratio(lat.p99 / floor.p99),
            ]
        )
    caption = (
        "entries/s counts all threads together; the worker is off (cost of record() alone); ratios are "
        "against the issue's floor (bare sqlite3: entry row, FTS row, one outbox row)"
    )
    if "pg_error" in res:
        caption += f"\nPostgreSQL skipped: {res['pg_error']}"
    print_table(
        "record() latency",
        ["", "threads", "n", "p50", "p99", "entries/s", "p50/floor", "p99/floor"],
        rows,
        plain=plain,
        caption=caption,
    )

    sc: Scaling = res["scaling"]
    print_table(
        f"thread scaling: {len(sc.one)} interleaved pairs of runs ({res['sizes']['pair_entries']:,} entries each)",
        ["pair", "1 thread", "4 threads", "4 / 1"],
        [[str(i + 1), fmt_rate(a), fmt_rate(b), f"{r:.2f}×"]
         for i, (a, b, r) in enumerate(zip(sc.one, sc.four, sc.ratios, strict=True))]
        + [["median", fmt_rate(statistics.median(sc.one)), fmt_rate(statistics.median(sc.four)),
            f"{sc.median:.2f}×"]],
        plain=plain,
    )  # fmt: skip

    s = res["sizes"]
    loop_rows = []
    for (work, state), loop in res["loop"].items():
        name = {"healthy": "healthy (in-memory)", "2 s": "answers after 2 s", "down": "down (Retryable)",
                "local": "local folder (reference)", "floor": "bare floor tx, no sharedctx"}[state]  # fmt: skip
        per_step = (loop.recording - loop.baseline) / loop.steps
        loop_rows.append(
            [
                f"{work * 1e3:g} ms × {loop.steps}",
                name,
                f"{loop.baseline:.3f} s",
                f"{loop.recording:.3f} s",
                fmt_ms(per_step),
                f"{loop.ratio:.3f}",
                "-" if state == "floor" else f"{loop.delivered}/{loop.attempts}",
                verdict(loop.ratio <= 1.05) if loop.target else "(info)",
            ]
        )
    print_table(
        f"investigation loop: steps of 'work' (time.sleep) then record(), worker running (median of {s['reps']})",
        ["steps", "backend", "no recording", "recording", "cost/step", "ratio", "delivered/attempts", "≤ 1.05"],
        loop_rows, plain=plain,
    )  # fmt: skip
    print_table(
        "targets (issue 3; the scaling row is issue 13's)",
        ["target", "measured", "result"],
        [[t, m, verdict(ok)] for t, m, ok in targets(res)],
        plain=plain,
    )


def to_json(res: dict[str, Any]) -> dict[str, Any]:
    return {
        "sizes": res["sizes"],
        "floor": res["floor"].as_dict(),
        "floor_case_row": res["floor_case"].as_dict(),
        "record": {k: v.as_dict() for k, v in res["record"].items()},
        "scaling": {"one_thread": res["scaling"].one, "four_threads": res["scaling"].four,
                    "ratios": res["scaling"].ratios, "median": res["scaling"].median},
        "loop": [{"work_s": w, "backend": st, "steps": v.steps, "baseline_s": v.baseline, "recording_s": v.recording,
                  "ratio": v.ratio, "delivered": v.delivered, "attempts": v.attempts}
                 for (w, st), v in res["loop"].items()],
        "targets": [{"target": t, "measured": m, "pass": ok} for t, m, ok in targets(res)],
        "pg_error": res.get("pg_error"),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer samples and steps (a smoke run, ~15 s)")
    ap.add_argument(
        "--pg",
        default=DEFAULT_PG,
        metavar="URL",
        help=f"PostgreSQL server to create a throwaway database on (default {DEFAULT_PG}); '' skips",
    )
    ap.add_argument(
        "--work", type=float, nargs="+", default=[0.002, 0.02, 0.1],
        help="seconds of 'work' per investigation step; several lengths are measured side by side",
    )  # fmt: skip
    ap.add_argument("--json", action="store_true", help="print the results as JSON instead of tables")
    ap.add_argument("--plain", action="store_true", help="plain-text tables (no rich)")
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(f"… {msg}", file=sys.stderr, flush=True)

    os.environ.setdefault("SHAREDCTX_SQLITE_SYNC", "NORMAL")
    started = time.monotonic()
    res = run(args, log)
    res["work"] = args.work
    if args.json:
        print(json.dumps(to_json(res), indent=2))
    else:
        report(res, args.plain)
        print(
            f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs; "
            f"run took {time.monotonic() - started:.0f} s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
