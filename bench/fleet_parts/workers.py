"""Many workers on one PostgreSQL: throughput of 1, 2 and 4 `sharedctx worker` processes (issue 13).

Each run gets a fresh PostgreSQL database and a GitHub double on a real port that answers every request
after 50 ms (HTTP/1.1 keep-alive, OpenAPI checks off so the double's CPU stays small). Two shapes:

- prefilled: `cases × entries` findings are recorded (interleaved at random across cases) before the
  workers start;
- producer:  half are recorded first, the other half by a steady producer (a process of its own) while
  the workers run.

The workers start with the backend marked *stopped* (a real product state: every worker skips it), so the
slow start of N Python processes on a loaded machine is not timed. Then the bench marks it running; the
workers notice at their next poll (`poll_interval`, 0.5 s). Throughput is counted from the first copy the
double stores to the last. The workers are then stopped with SIGTERM (they must exit 0 and leave no lease).

Counted on the double's own storage, never on what the workers say: duplicates are extra copies of one
(case, seq); out-of-order counts comments whose seq is lower than one already stored for the same case.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.fleet_parts import Section
from sharedctx.config import load_config
from sharedctx.context import SharedContext
from sharedctx.model import EntryKind
from sharedctx.render import parse_github
from tests.doubles.github import GitHubDouble

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "fleet-workers-token"
LATENCY = 0.05
TARGET = 3.0  # issue 13: throughput at 4 workers ≥ 3× one worker
PRODUCER_RATE = 200  # entries/s the steady producer records (above what 4 workers deliver here)


class LatencyServer:
    """`double` on 127.0.0.1:<free port>, every request answered after `latency` seconds, keep-alive on.

    Records when each successful comment was stored (monotonic clock), for the throughput window."""

    def __init__(self, double: GitHubDouble, latency: float) -> None:
        self.double = double
        self.arrivals: list[float] = []
        self.answer_times: list[float] = []  # seconds from a request's headers read to its answer written
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else headers and body in two writes wait ~40 ms for a delayed ACK

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _serve(self) -> None:
                began = time.monotonic()
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                time.sleep(latency)
                request = httpx.Request(self.command, double.host_url + self.path, content=body,
                                        headers=[(k, v) for k, v in self.headers.items() if k.lower() != "host"])
                response = double.handle(request)
                if self.command == "POST" and self.path.endswith("/comments") and response.status_code == 201:
                    with owner._lock:
                        owner.arrivals.append(time.monotonic())
                self.send_response(response.status_code)
                for k, v in response.headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("content-length", str(len(response.content)))
                self.end_headers()
                self.wfile.write(response.content)
                with owner._lock:
                    owner.answer_times.append(time.monotonic() - began)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="fleet-double", daemon=True)
        self._thread.start()

    def stored(self) -> int:
        with self._lock:
            return len(self.arrivals)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _config(store: str, url: str, concurrency: int | None = None) -> str:
    """The defaults a team would run with ([worker] untouched), a GitHub backend pointed at the double."""
    lanes = f"concurrency = {concurrency}\n" if concurrency else ""
    return f"""\
store = "{store}"

[agent]
name = "fleet"
kind = "primary"

[worker]
enabled = false
{lanes}
[humans]
poll = false

[[backends]]
type = "github"
repo = "acme/payments"
token = "env:FLEET_GITHUB_TOKEN"
base_url = "{url}"
per_minute = 1000000
per_hour = 1000000
max_block = 0
read_reactions = false
read_status = false
"""


@dataclass
class Run:
    workers: int
    shape: str
    deliveries: int = 0
    seconds: float = 0.0
    duplicates: int = 0
    out_of_order: int = 0
    lost: int = 0
    exit_codes: tuple[int | None, ...] = ()
    leases_left: int = 0
    stop_seconds: float = 0.0
    worker_cpu: float = 0.0  # CPU seconds the worker processes used while delivering
    bench_cpu: float = 0.0  # CPU seconds of this process (the double) in the same window
    pg_cpu: float = 0.0  # CPU seconds of the PostgreSQL backends serving the run's database
    answer_p50: float = 0.0  # the double's own time per request (50 ms asked; more means it was starved)
    answer_p90: float = 0.0

    @property
    def cpu_ms_per_delivery(self) -> float:
        return 1000 * self.worker_cpu / self.deliveries if self.deliveries else 0.0

    @property
    def per_second(self) -> float:
        return self.deliveries / self.seconds if self.seconds > 0 else 0.0


class _Proc:
    """One `sharedctx worker` process. `own_session`: started in a session of its own, as a service manager
    starts each service (own cgroup or container). With Linux's autogroup scheduling (on here), all processes
    of one session share one CPU slice, so workers forked into the bench's session split one share among
    them however many there are: that measures the bench's session, not the workers."""

    def __init__(self, config: Path, folder: Path, n: int, own_session: bool = True) -> None:
        self.log = folder / f"worker-{n}.log"
        env = {**os.environ, "FLEET_GITHUB_TOKEN": TOKEN,
               "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "sharedctx.cli", "--config", str(config), "worker"],
                                         cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=own_session)

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while b"delivering to" not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"a worker did not start (exit {self.proc.returncode}):\n"
                                   f"{self.log.read_text()[-3000:]}")
            time.sleep(0.05)


def _database(admin: str) -> tuple[str, str]:
    name = f"workers_fleet_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, admin.rsplit("/", 1)[0] + f"/{name}"


def _drop(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def one_run(admin: str, folder: Path, workers: int, shape: str, cases: int, entries: int,
            seed: int = 13, concurrency: int | None = None, own_session: bool = True) -> Run:
    """Deliver `cases × entries` findings with `workers` processes; count on the double."""
    result = Run(workers=workers, shape=shape)
    rng = random.Random(seed)
    name, url = _database(admin)
    double = GitHubDouble(token=TOKEN, validate=False)
    server = LatencyServer(double, LATENCY)
    os.environ["FLEET_GITHUB_TOKEN"] = TOKEN
    config = folder / "sharedctx.toml"
    config.write_text(_config(url, server.url, concurrency))
    ctx = SharedContext.open(load_config(config), worker=False)
    procs: list[_Proc] = []
    producer: subprocess.Popen[bytes] | None = None
    try:
        ctx.store.set_backend_state("github", "stopped", "fleet bench: gate closed until every worker is up")
        opened = [ctx.open_case(f"fleet case {c}", service="checkout", severity="critical", fingerprint=f"fleet-{c}")
                  for c in range(cases)]
        plan = [c for c in range(cases) for _ in range(entries)]
        rng.shuffle(plan)
        backlog = plan if shape == "prefilled" else plan[: len(plan) // 2]
        rest = [] if shape == "prefilled" else plan[len(plan) // 2:]
        for c in backlog:
            opened[c].record(EntryKind.FINDING, "fleet finding", "x" * rng.randrange(0, 300), author="primary:fleet")
        total = ctx.store.outbox_counts()["github"]["pending"] + len(rest)  # copies to wait for
        procs = [_Proc(config, folder, i, own_session) for i in range(workers)]
        for p in procs:
            p.wait_ready()
        producer = _producer_start(config, folder, [opened[c].id for c in rest]) if rest else None
        cpu_at_start = sum(_cpu(p.proc.pid) for p in procs)
        bench_at_start = time.process_time()
        pg_at_start = _pg_cpu(url, name)
        start = time.monotonic()
        ctx.store.set_backend_state("github", "running", None)

        if producer is not None:
            _producer_go(producer)
        deadline = start + 600
        while server.stored() < total and time.monotonic() < deadline:
            time.sleep(0.02)
        if producer is not None:
            _wait(producer, 30)
        with server._lock:
            first, last = (min(server.arrivals), max(server.arrivals)) if server.arrivals else (start, start)
        result.seconds = last - first  # the first copy stored to the last: workers notice the gate at their next poll
        result.deliveries = server.stored() - 1  # copies stored after the first one, in that window
        times = sorted(server.answer_times)
        result.answer_p50, result.answer_p90 = times[len(times) // 2], times[len(times) * 9 // 10]
        result.worker_cpu = sum(_cpu(p.proc.pid) for p in procs) - cpu_at_start
        result.bench_cpu = time.process_time() - bench_at_start
        result.pg_cpu = _pg_cpu(url, name) - pg_at_start
        stop_at = time.monotonic()
        for p in procs:
            p.proc.send_signal(signal.SIGTERM)
        result.exit_codes = tuple(_wait(p.proc, 30) for p in procs)
        result.stop_seconds = time.monotonic() - stop_at
        result.leases_left = int(ctx.store._q(  # type: ignore[attr-defined]
            "SELECT count(*) FROM outbox WHERE state='pending' AND lease_until IS NOT NULL")[0][0])
        _count(ctx, double, opened, result)
    finally:
        for child in [p.proc for p in procs] + ([producer] if producer is not None else []):
            if child.poll() is None:
                child.kill()
                child.wait()
        ctx.close()
        server.close()
        _drop(admin, name)
    return result


def _producer_start(config: Path, folder: Path, case_ids: list[str]) -> subprocess.Popen[bytes]:
    """The steady producer: its own process and session, as an agent recording is; ready when it says so."""
    plan = folder / "produce.json"
    plan.write_text(json.dumps(case_ids))
    env = {**os.environ, "FLEET_GITHUB_TOKEN": TOKEN,
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "bench.fleet_parts.workers", "produce", str(config), str(plan)],
                            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            start_new_session=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        raise RuntimeError(f"the producer did not start (exit {proc.wait()})")
    return proc


def _producer_go(proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    assert proc.stdin is not None
    proc.stdin.write(b"go\n")
    proc.stdin.close()
    return proc


def produce(config: str, plan: str) -> None:
    """`python -m bench.fleet_parts.workers produce CONFIG PLAN`: record one finding per case id in PLAN (a
    JSON list) at PRODUCER_RATE entries/s, starting when stdin says "go"."""
    ctx = SharedContext.open(load_config(Path(config)), worker=False)
    case_ids = json.loads(Path(plan).read_text())
    cases = {cid: ctx.case(cid) for cid in set(case_ids)}
    rng = random.Random(7)
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.monotonic()
    for i, cid in enumerate(case_ids):
        cases[cid].record(EntryKind.FINDING, "fleet finding", "y" * rng.randrange(0, 300), author="primary:fleet")
        time.sleep(max(0.0, start + (i + 1) / PRODUCER_RATE - time.monotonic()))
    ctx.close()


def _cpu(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pg_cpu(url: str, name: str) -> float:
    """CPU seconds of every PostgreSQL backend connected to database `name` (this query's own excluded)."""
    with psycopg.connect(url, autocommit=True) as conn:
        pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s "
                                           "AND pid <> pg_backend_pid()", (name,)).fetchall()]
    return sum(_cpu(pid) for pid in pids)


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def _count(ctx: SharedContext, double: GitHubDouble, cases: list[Any], result: Run) -> None:
    seq_of: dict[str, tuple[str, int]] = {}
    for case in cases:
        for e in case.timeline():
            seq_of[e.id] = (case.id, e.seq)
    copies: Counter[str] = Counter()
    seen: dict[str, list[int]] = defaultdict(list)
    for cid in sorted(double.comments):  # comment ids are given in the order the double stored them
        p = parse_github(double.comments[cid]["body"])
        if p and p[0] in seq_of:
            copies[p[0]] += 1
            case_id, seq = seq_of[p[0]]
            seen[case_id].append(seq)
    result.duplicates = sum(n - 1 for n in copies.values() if n > 1)
    result.lost = sum(1 for eid in seq_of if eid not in copies)
    for seqs in seen.values():
        top = 0
        for s in seqs:
            if s < top:
                result.out_of_order += 1
            top = max(top, s)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _row(label: str, r: Run, base: float) -> list[str]:
    cpu = (f"{1000 * r.worker_cpu / r.deliveries:.1f}/{1000 * r.pg_cpu / r.deliveries:.1f}"
           if r.deliveries else "-")
    return [label, str(r.workers), str(r.deliveries), f"{r.seconds:.1f}", f"{r.per_second:.0f}",
            f"{r.per_second / base:.2f}×" if base else "-", str(r.duplicates), str(r.out_of_order), str(r.lost),
            ",".join(str(c) for c in r.exit_codes), str(r.leases_left), cpu]


def run(pg_url: str, quick: bool) -> Section:
    """1, 2 and 4 worker processes, prefilled and with a steady producer; PASS/MISS against ≥ 3× at 4."""
    import tempfile

    cases, entries = (32, 8) if quick else (96, 16)
    section = Section(
        title=f"Many workers on PostgreSQL: GitHub double, {int(LATENCY * 1000)} ms per request, "
              f"{cases} cases × {entries} entries",
        columns=["shape", "workers", "copies", "s", "per s", "× 1", "dup", "out of order", "lost",
                 "SIGTERM exit", "leases left", "CPU ms/copy worker/PG"],
    )
    loads = [f"load before: {_load()}"]
    answers: list[str] = []
    with tempfile.TemporaryDirectory(prefix="workers-fleet-") as tmp:
        plan = [("prefilled", True, (1, 2, 4)), ("producer", True, (1, 2, 4)),
                ("prefilled, one session", False, (1, 4))]
        for label, own, counts in plan:
            shape = label.split(",")[0]
            base = 0.0
            for n in counts:
                folder = Path(tmp) / f"{label.replace(' ', '').replace(',', '-')}-{n}"
                folder.mkdir()
                r = one_run(pg_url, folder, n, shape, cases, entries, own_session=own)
                base = base or r.per_second
                section.rows.append(_row(label, r, base))
                loads.append(f"load after {label} × {n}: {_load()}")
                answers.append(f"{r.answer_p50 * 1000:.0f}/{r.answer_p90 * 1000:.0f}")
                if n == 4 and own:
                    ratio = r.per_second / base if base else 0.0
                    clean = not (r.duplicates or r.out_of_order or r.lost or r.leases_left) and all(
                        c == 0 for c in r.exit_codes)
                    verdict = "PASS" if ratio >= TARGET and clean else "MISS"
                    section.verdicts.append(
                        f"{label}: 4 workers ≥ {TARGET:.0f}× one worker, 0 duplicates, 0 out of order, SIGTERM exits "
                        f"0 with no lease left: {verdict} ({ratio:.2f}×, {r.duplicates} duplicates, "
                        f"{r.out_of_order} out of order, {r.lost} lost, {r.leases_left} leases left)")
    section.notes.extend(loads)
    section.notes.append(f"the double's own time per request, p50/p90 ms, run by run: {', '.join(answers)}")
    section.notes.append(
        f"{os.cpu_count()} CPUs; workers at the default [worker] settings (4 deliveries in flight each); the "
        "double runs in the bench process, the producer in a process of its own. Each worker runs in a session "
        "of its own, as services do; "
        "'one session' forks them into the bench's session, where Linux autogroup scheduling gives all of them "
        "one CPU share together (shown, not graded)")
    return section


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "produce":
    produce(sys.argv[2], sys.argv[3])
