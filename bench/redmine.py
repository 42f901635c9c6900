"""The Redmine connector against a REAL Redmine 5.0 (the one `.ci/run` starts; REDMINE_* in the
environment, or start.sh is run here, as root).

    .venv/bin/python bench/redmine.py            # ~1 minute
    .venv/bin/python bench/redmine.py --quick

Two tables:

1. Delivery: entries/s through the real outbox worker (4 deliveries in flight, SQLite journal, entries
   recorded first, 5 cases), and the latency of one `append` (look for the marker, write the note, read
   the journals back: three requests, the price of exactly-once without journal ids).
2. Polling N quiet cases (nobody wrote anything): requests and wall time of one poll round with the
   project-wide `updated_on` scan (`poll_scan_seconds` 5) and without it (0: every issue read back).

Redmine runs on the same 2 cores as the bench (puma, 4 threads, SQLite), so the absolute rates say more
about this machine than about Redmine; the request counts carry over.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# bench/ itself must not be on the path: bench/mcp.py would shadow the `mcp` package sharedctx imports
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import httpx  # noqa: E402

from bench._stats import Latency, fmt_ms, print_table  # noqa: E402
from sharedctx.backends.base import ThreadRef  # noqa: E402
from sharedctx.backends.redmine import RedmineBackend, RedmineOptions  # noqa: E402
from sharedctx.config import WorkerSettings  # noqa: E402
from sharedctx.delivery import Worker  # noqa: E402
from sharedctx.model import Author, EntryDraft, EntryKind  # noqa: E402
from sharedctx.store.sqlite import SQLiteStore  # noqa: E402
from tests.backends.conftest import make_case, make_chain  # noqa: E402
from tests.redmine.server import RedmineEnv, redmine  # noqa: E402

KEY_VAR = "SCTX_REDMINE_BENCH_KEY"


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, request: httpx.Request) -> None:
        self.n += 1


def backend(env: RedmineEnv, counter: Counter | None = None, **kw: Any) -> RedmineBackend:
    hooks = {"request": [counter]} if counter else {}
    client = httpx.Client(timeout=60.0, event_hooks=hooks)
    opts = RedmineOptions(url=env.url, api_key=f"env:{KEY_VAR}", project=env.project,
                          external_id_field=env.external_id_field, **kw)
    return RedmineBackend("redmine", opts, client=client)


def delivery(env: RedmineEnv, n: int, folder: Path) -> list[list[str]]:
    store = SQLiteStore(folder / "bench.db")
    ids = [store.open_case(title=f"bench case {c}", service="payments", severity="critical", fingerprint=None,
                           labels={})[0].id for c in range(5)]
    for i in range(n):
        store.append(EntryDraft(case_id=ids[i % 5], kind=EntryKind.FINDING, title=f"step {i}: p99 on checkout",
                                body=f"Found **{i}** slow spans in `checkout`.\n\n- region eu-west-1",
                                author=Author(kind="partner", name="telemetry")), ["redmine"])
    b = backend(env)
    worker = Worker(store, {"redmine": b}, WorkerSettings(base_delay=0.05, max_delay=0.5, max_attempts=100,
                                                          poll_interval=0.05, concurrency=4))
    t0 = time.perf_counter()
    worker.start()
    while store.outbox_counts().get("redmine", {}).get("delivered", 0) < n and time.perf_counter() - t0 < 600:
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    worker.stop()
    # one append at a time, on a fresh issue, for its latency
    samples = []
    thread = b.bind(case := make_case())
    for e in make_chain(case.id, max(10, n // 5)):
        t = time.perf_counter()
        b.append(thread, e)
        samples.append(time.perf_counter() - t)
    lat = Latency.of(samples)
    b.close()
    return [[f"{n} entries, 5 cases, worker x4", f"{n / wall:.1f}/s", fmt_ms(lat.p50), fmt_ms(lat.p99)]]


def polling(env: RedmineEnv, cases: int) -> list[list[str]]:
    setup = backend(env)
    threads: list[ThreadRef] = []
    for _ in range(cases):
        thread = setup.bind(case := make_case())
        setup.append(thread, make_chain(case.id, 1)[0])
        threads.append(thread)
    setup.close()
    time.sleep(2.2)  # older than updated_on's one-second blur
    rows = []
    for every in (5.0, 0.0):
        counter = Counter()
        b = backend(env, counter, poll_scan_seconds=every)
        cursors = {t.id: b.read_back(t).cursor for t in threads}  # the first round reads every issue
        counter.n = 0
        t0 = time.perf_counter()
        for t in threads:
            assert b.read_back(t, cursors[t.id]).humans == []
        wall = time.perf_counter() - t0
        rows.append([f"{cases} quiet cases, scan {'on' if every else 'off'}", str(counter.n), fmt_ms(wall)])
        b.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--plain", action="store_true")
    args = parser.parse_args()
    env = redmine()
    os.environ[KEY_VAR] = env.api_key
    n, cases = (40, 10) if args.quick else (100, 30)
    with tempfile.TemporaryDirectory() as tmp:
        print_table("1. Delivery to a real Redmine", ["run", "entries/s", "append p50", "append p99"],
                    delivery(env, n, Path(tmp)), plain=args.plain)
    print_table("2. One poll round over quiet cases", ["run", "requests", "wall"], polling(env, cases),
                plain=args.plain)


if __name__ == "__main__":
    main()
