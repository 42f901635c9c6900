"""The Matrix connector against a real Synapse on this machine (started like the tests do, or `MATRIX_*`).

    .venv/bin/python bench/matrix.py            # ~1 minute after Synapse is installed
    .venv/bin/python bench/matrix.py --quick    # ~20 s

1. Delivery: entries/s through the real outbox worker (4 in flight, SQLite journal) into one room, N entries
   across 5 cases (one thread each), beside the `local` backend in the same run. Synapse's rate limits are
   relaxed by start.sh; with stock limits (0.2 msg/s, burst 10) the homeserver, not sharedctx, sets the pace.
2. Read-back, the poller's cost per case: one `read_back` of a thread of 30 / 100 entries from the start
   (a rebuild) and from a cursor (a steady-state poll with one new human reply), wall time and requests.
3. A person's 👍 → decision recorded: react, then poll until the decision entry exists (poll in a loop, no
   sleep: the figure is the read-back path, not a poll interval).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# run as a script, bench/ is first on sys.path, and bench/mcp.py would shadow the `mcp` package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench._stats import fmt_ms, fmt_rate, print_table  # noqa: E402
from sharedctx.backends.base import ThreadRef  # noqa: E402
from sharedctx.backends.matrix import MatrixBackend, MatrixOptions  # noqa: E402
from sharedctx.config import parse_config  # noqa: E402
from sharedctx.context import SharedContext  # noqa: E402
from sharedctx.humans import Poller, get_decision, request_body  # noqa: E402
from sharedctx.model import EntryKind  # noqa: E402
from tests.matrix.server import MatrixServer, start, stop  # noqa: E402


def open_ctx(tmp: Path, server: MatrixServer, room: str) -> SharedContext:
    cfg = parse_config({
        "store": str(tmp / "journal.db"), "agent": {"name": "bench", "kind": "primary"},
        "worker": {"enabled": False, "concurrency": 4, "base_delay": 0.05, "max_delay": 1.0, "poll_interval": 0.02},
        "humans": {"poll": False},
        "backends": [{"type": "local", "path": str(tmp / "cases")},
                     {"type": "matrix", "homeserver": server.url, "room_id": room, "token": "env:BENCH_MATRIX_TOKEN"}],
    }, base_dir=tmp)
    return SharedContext.open(cfg, worker=False)


def delivery(server: MatrixServer, n: int) -> list[list[str]]:
    room = server.new_room("bench-delivery")
    with tempfile.TemporaryDirectory() as d, open_ctx(Path(d), server, room) as ctx:
        cases = [ctx.open_case(f"bench case {i}", service="payments") for i in range(5)]
        for i in range(n):
            cases[i % 5].record("finding", f"finding {i}", f"pool wait `{i}` ms; see **dashboard**",
                                author="partner:telemetry")
        done: dict[str, float] = {}
        t0 = time.monotonic()
        ctx.worker.on_event = lambda what, dl, _: done.__setitem__(dl.backend, time.monotonic() - t0)
        ctx.worker.start()
        assert ctx.drain(600), "not drained"
        counts = ctx.store.outbox_counts()
    return [[name, str(c.get("delivered", 0)), fmt_rate(c.get("delivered", 0) / done[name])]
            for name, c in sorted(counts.items())]


def thread_of(ctx: SharedContext, case_id: str) -> ThreadRef:
    return ThreadRef.model_validate(ctx.store.get_case(case_id).bindings["matrix"])


class Counting(httpx.BaseTransport):
    def __init__(self) -> None:
        self.real = httpx.HTTPTransport()
        self.n = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.n += 1
        return self.real.handle_request(request)


def read_back(server: MatrixServer, sizes: list[int]) -> list[list[str]]:
    rows = []
    room = server.new_room("bench-readback")
    for size in sizes:
        with tempfile.TemporaryDirectory() as d, open_ctx(Path(d), server, room) as ctx:
            case = ctx.open_case(f"read-back {size}")
            for i in range(size):
                case.record("finding", f"finding {i}", "x" * 200, author="partner:telemetry")
            assert ctx.drain(600)
            ref = thread_of(ctx, case.id)
            counting = Counting()
            b = MatrixBackend("m", MatrixOptions(homeserver=server.url, room_id=room, token="env:BENCH_MATRIX_TOKEN"),
                              client=httpx.Client(transport=counting))
            b.me()
            counting.n = 0
            t = time.perf_counter()
            full = b.read_back(ref)
            rebuild = (time.perf_counter() - t, counting.n)
            assert len(full.entries) == size
            server.reply(server.human_token, room, ref.id, "ack")
            counting.n = 0
            t = time.perf_counter()
            new = b.read_back(ref, full.cursor)
            poll = (time.perf_counter() - t, counting.n)
            assert [h.text for h in new.humans] == ["ack"]
            rows.append([f"{size} entries", fmt_ms(rebuild[0]), str(rebuild[1]), fmt_ms(poll[0]), str(poll[1])])
    return rows


def decide(server: MatrixServer, rounds: int) -> list[list[str]]:
    room = server.new_room("bench-decide")
    server.set_power(room, server.human_user, 50)
    samples = []
    with tempfile.TemporaryDirectory() as d, open_ctx(Path(d), server, room) as ctx:
        poller = Poller(ctx)
        for _ in range(rounds):
            case = ctx.open_case("decide")
            req = case.record(EntryKind.DECISION_REQUEST, "Roll back?", request_body("Roll back?", ["approve"], "",
                              None, "default", None), attrs={"question": "Roll back?", "options": ["approve"]})
            assert ctx.drain(60)
            poller.poll_case(case.id)  # the poller is up to date before the person acts
            ref = ctx.backends["matrix"].lookup(thread_of(ctx, case.id), req.id)
            assert ref is not None
            t = time.perf_counter()
            server.react(server.human_token, room, ref.id, "👍")
            while get_decision(ctx, req.id).status != "decided":
                poller.poll_case(case.id)
            samples.append(time.perf_counter() - t)
    samples.sort()
    return [["👍 → decision entry", fmt_ms(samples[len(samples) // 2]), fmt_ms(samples[-1]), str(len(samples))]]


def main() -> None:
    import os

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--plain", action="store_true")
    args = ap.parse_args()
    server = start()
    os.environ["BENCH_MATRIX_TOKEN"] = server.bot_token
    try:
        n = 50 if args.quick else 200
        print_table(f"1. Delivery through the worker, {n} entries across 5 threads (Synapse limits relaxed)",
                    ["backend", "delivered", "entries/s"], delivery(server, n), plain=args.plain)
        print_table("2. read_back of one thread (the poller's cost per case)",
                    ["thread", "rebuild wall", "requests", "poll wall (1 new reply)", "requests"],
                    read_back(server, [30] if args.quick else [30, 100]), plain=args.plain)
        print_table("3. A person's reaction to the recorded decision (poll loop, no interval)",
                    ["path", "p50", "max", "rounds"], decide(server, 5 if args.quick else 20), plain=args.plain)
    finally:
        stop(server)


if __name__ == "__main__":
    main()
