"""Shared limit: 4 worker processes on one PostgreSQL against a GitHub double that enforces 80/min and 500/h.

Each run makes its own database, records more entries than an hour's budget allows (so the workers are
saturated), starts 4 worker processes (the Worker API, each its own `SharedContext` and connections, as
`sharedctx worker` runs it) and lets them deliver for a few GitHub minutes. The figures come from the
double, not from the limiter: every content-creating request it received (admitted or refused), on its
own clock. Two runs side by side:

- shared: the budget in the store (`SharedPacer`), as every `SharedContext` builds its backends now;
- per process: each worker's own in-memory `Pacer` (the old behaviour), for contrast.

Scaled clock: `SHAREDCTX_RATE_SCALE=S` makes the pacers count time S times faster (epoch seconds × S, the
same in every process), and the double runs on the same clock, so its windows and its `retry-after` are
scaled identically; a GitHub minute lasts 60/S real seconds. The scale only speeds the run up; the
workers, the store and HTTP run in real time, so a scale too high for the machine shows up as a
utilisation below 0.9, not as a false pass.

    python bench/fleet.py --only limit [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from bench._stats import verdict  # noqa: E402
from bench.fleet_parts import Section  # noqa: E402
from sharedctx.backends.http import RATE_SCALE_ENV, scaled_clock  # noqa: E402
from tests.doubles.base import SPEC_LOG, specs_available  # noqa: E402
from tests.doubles.github import GitHubDouble  # noqa: E402
from tests.doubles.server import PortServer  # noqa: E402

PER_MINUTE, PER_HOUR = 80, 500
PROCESSES = 4
TOKEN = "gh-fleet-bench-token"


@dataclass
class Outcome:
    attempts: list[float]  # double-clock times of every content-creating request, from all processes
    violations: int
    admitted: int
    dead: int
    spec_errors: int
    real_seconds: float


def _worst_window(times: list[float], period: float) -> int:
    """The most requests in any window of `period` seconds (as GitHub's guidance counts them)."""
    j, worst = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - period:
            j += 1
        worst = max(worst, i - j + 1)
    return worst


def _config(db_url: str, api_url: str, scale: float) -> dict[str, Any]:
    return {
        "store": db_url,
        "agent": {"name": "fleet-bench", "kind": "system"},
        # pacing bounces count as attempts (see the report); a high cap keeps them out of dead letters
        "worker": {"max_attempts": 1000, "concurrency": 4, "poll_interval": 0.05, "base_delay": 0.05},
        "backends": [{"type": "github", "repo": "acme/payments", "token": "env:GITHUB_TOKEN", "base_url": api_url,
                      "per_minute": PER_MINUTE, "per_hour": PER_HOUR, "read_reactions": False,
                      # the margin covers the real delay from admission to arrival: 1 real second, as
                      # unscaled; on the scaled clock that is `scale` GitHub seconds
                      "pacing_margin": 1.0 * scale,
                      "read_status": False, "timeout": 10.0}],
    }


def _fill(config: dict[str, Any], cases: int, per_case: int) -> None:
    from sharedctx.config import parse_config
    from sharedctx.context import SharedContext

    with SharedContext.open(parse_config(config), worker=False) as ctx:
        for i in range(cases):
            case = ctx.open_case(f"fleet limit bench case {i}", service="bench", fingerprint=f"fleet-limit-{i}")
            for j in range(per_case):
                case.record("note", f"update {j} on case {i}", "a content-creating comment")


def one_run(admin_url: str, *, scale: float, minutes: float, per_process: bool, cases: int, per_case: int,
            validate: bool) -> Outcome:
    db = f"ratelimit_fleet_{uuid.uuid4().hex[:8]}"
    db_url = admin_url.rsplit("/", 1)[0] + f"/{db}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    clock, _ = scaled_clock(scale)
    double = GitHubDouble(token=TOKEN, validate=validate, enforce_secondary=True, per_minute=PER_MINUTE,
                          per_hour=PER_HOUR, clock=clock)
    spec_before = len(SPEC_LOG)
    server = PortServer(double, latency=(0.002, 0.01), drop_writes=0.0, seed=1).start()
    env = {**os.environ, RATE_SCALE_ENV: f"{scale:g}", "GITHUB_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Any] = []
    try:
        config = _config(db_url, server.url, scale)
        os.environ["GITHUB_TOKEN"] = TOKEN
        _fill(config, cases, per_case)
        with tempfile.TemporaryDirectory(prefix="ratelimit-fleet-") as tmp:
            path = Path(tmp) / "config.json"
            path.write_text(json.dumps(config))
            started = time.monotonic()
            logs = [(Path(tmp) / f"worker-{i}.log").open("wb") for i in range(PROCESSES)]
            procs = [subprocess.Popen([sys.executable, "-m", "bench.fleet_parts.limit", "--worker", str(path),
                                       *(["--per-process"] if per_process else [])], cwd=ROOT, env=env,
                                      stdout=subprocess.DEVNULL, stderr=log)
                     for log in logs]
            time.sleep(minutes * 60.0 / scale)
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
            real = time.monotonic() - started
            for i, (p, log) in enumerate(zip(procs, logs, strict=True)):
                log.close()
                if p.returncode not in (0, -signal.SIGTERM):
                    tail = (Path(tmp) / f"worker-{i}.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"worker {i} exited with {p.returncode}:\n{tail}")
        with psycopg.connect(db_url) as conn:
            row = conn.execute("SELECT count(*) FROM outbox WHERE state = 'dead'").fetchone()
            dead = int(row[0]) if row else 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        server.stop()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    spec_errors = sum(1 for c in SPEC_LOG[spec_before:] if c.error)
    return Outcome(sorted(double.attempts), double.secondary_violations, double.content_created, dead,
                   spec_errors, real)


def _row(name: str, o: Outcome) -> tuple[list[str], dict[str, float]]:
    t = o.attempts
    minute, hour = _worst_window(t, 60.0), _worst_window(t, 3600.0)
    # whole GitHub minutes from the first request while the hour's budget still allows a full minute
    full = PER_HOUR // PER_MINUTE
    per_minute = [sum(1 for x in t if t[0] + 60 * k <= x < t[0] + 60 * (k + 1)) for k in range(full)] if t else []
    mean = sum(per_minute) / len(per_minute) if per_minute else 0.0
    low = min(per_minute) if per_minute else 0
    row = [name, str(len(t)), f"{minute} / {PER_MINUTE}", f"{hour} / {PER_HOUR}", f"{mean / PER_MINUTE:.2f}",
           f"{low / PER_MINUTE:.2f}", f"{min(hour, PER_HOUR) / PER_HOUR:.2f}", str(o.violations), str(o.dead),
           f"{o.real_seconds:.0f} s"]
    return row, {"minute": minute, "hour": hour, "mean": mean, "low": low, "violations": o.violations,
                 "dead": o.dead}


def run(pg_url: str, quick: bool) -> Section:
    scale, minutes = (6.0, 9.0) if quick else (4.0, 8.0)  # 80/min at x4 = 5.3 requests/s: this box, shared
    cases, per_case = (24, 28) if quick else (32, 22)  # > 500 comments plus one issue per case: saturated
    validate = specs_available()
    load = os.getloadavg()[0]
    section = Section(
        title=f"Shared limit: {PROCESSES} worker processes, one PostgreSQL, GitHub double enforcing "
              f"{PER_MINUTE}/min and {PER_HOUR}/h (clock x{scale:g}, {minutes:g} GitHub minutes per run)",
        columns=["pacer", "sent", "worst 60 s", "worst hour", "fill/min (mean)", "fill/min (worst)", "fill/hour",
                 "secondary-limit violations", "dead letters", "real time"],
    )
    figures = {}
    for name, per_process in (("shared (store)", False), ("per process (old)", True)):
        outcome = one_run(pg_url, scale=scale, minutes=minutes, per_process=per_process, cases=cases,
                          per_case=per_case, validate=validate)
        row, figures[name] = _row(name, outcome)
        section.rows.append(row)
        if outcome.spec_errors:
            section.notes.append(f"{name}: {outcome.spec_errors} spec-check errors in the double's log")
    s = figures["shared (store)"]
    section.verdicts += [
        f"sum over processes ≤ the limit (worst 60 s ≤ {PER_MINUTE}, worst hour ≤ {PER_HOUR}): "
        f"{verdict(s['minute'] <= PER_MINUTE and s['hour'] <= PER_HOUR)} ({s['minute']}, {s['hour']})",
        f"reaches ≥ 0.9 of it (mean whole minute before the hour's cap ≥ {0.9 * PER_MINUTE:g}, hour ≥ "
        f"{0.9 * PER_HOUR:g}): {verdict(s['mean'] >= 0.9 * PER_MINUTE and s['hour'] >= 0.9 * PER_HOUR)} "
        f"({s['mean']:.1f}, {s['hour']:g})",
        f"0 secondary-limit violations: {verdict(s['violations'] == 0)} ({s['violations']:g})",
    ]
    section.notes += [
        "sent = content-creating requests the double received from all 4 processes (issues + comments), "
        "admitted or refused; windows slide over the double's own clock",
        f"fill/min = sent per whole GitHub minute from the first request, over the {PER_HOUR // PER_MINUTE} "
        f"minutes before the hour's budget binds, / {PER_MINUTE} (mean and worst); the pacing margin (1 real "
        f"second = {scale:g} GitHub seconds) stretches each window to {60 + scale:g} GitHub seconds, so over "
        f"long runs it caps the rate at {60 / (60 + scale):.2f} of the limit",
        f"spec checks: {'on' if validate else 'off (specs not found)'}; load average at start {load:.1f} "
        f"({os.cpu_count()} CPUs)",
    ]
    return section


# ---- one worker process (run by one_run) -----------------------------------------------------------------
def worker_main(config_path: str, per_process: bool) -> None:
    """Deliver until SIGTERM, like `sharedctx worker`; `per_process` builds backends without the store
    (each process paces on its own, the old way)."""
    from sharedctx.backends import make_backend
    from sharedctx.config import parse_config
    from sharedctx.context import SharedContext

    config = parse_config(json.loads(Path(config_path).read_text()))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    backends = {b.name: make_backend(b) for b in config.backends} if per_process else None
    with SharedContext.open(config, worker=False, backends=backends) as ctx:
        ctx.worker.start()
        stop.wait()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", metavar="CONFIG", help="run one worker process (used by the bench itself)")
    ap.add_argument("--per-process", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = ap.parse_args()
    if args.worker:
        worker_main(args.worker, args.per_process)
    else:
        from bench._stats import print_table

        result = run(args.pg, args.quick)
        print_table(result.title, result.columns, result.rows)
        for line in result.notes + result.verdicts:
            print(f"  {line}")
