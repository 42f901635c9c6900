"""Slack: delivery through the real outbox worker against the spec-checked double, pacing against Slack's
~1 message per second per channel, and what polling a quiet thread costs.

    .venv/bin/python bench/slack.py            # ~1 minute
    .venv/bin/python bench/slack.py --quick

1. entries/s against an unthrottled double, OpenAPI checks off and on (same set-up as bench/delivery.py).
2. chat.postMessage pacing: the connector (posts_per_second = 1) against a double that answers `ratelimited`
   to a second post within one second, both on one scaled clock (x`scale`), through the real worker with more
   work than the limit allows. Fraction = posts accepted / scaled seconds; target >= 0.9 with 0 refusals.
3. Requests per quiet case-hour at the default 30 s poll interval, counted on the double.

Everything runs in one process (doubles included): absolute rates describe this machine; the fraction and
the request counts carry over.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.delivery import ScaledClock, journal, run_until, settings  # noqa: E402
from sharedctx.backends.base import ThreadRef  # noqa: E402
from sharedctx.backends.slack import SlackBackend, SlackOptions  # noqa: E402
from sharedctx.delivery import Worker  # noqa: E402
from tests.doubles.base import specs_available  # noqa: E402
from tests.doubles.slack import CHANNEL, SlackDouble  # noqa: E402

UNPACED = {"posts_per_second": 1e9, "reads_per_minute": 10**9, "reactions_per_minute": 10**9}


def make(*, validate: bool, clock: Any = time.monotonic, sleep: Any = time.sleep, double: dict[str, Any] | None = None,
         **opts: Any) -> tuple[SlackDouble, SlackBackend]:
    d = SlackDouble(validate=validate, clock=clock, **(double or {}))
    client = httpx.Client(transport=httpx.MockTransport(d.handle))
    options = SlackOptions(channel=CHANNEL, token="env:SLACK_BOT_TOKEN", **{**UNPACED, **opts})
    return d, SlackBackend("slack", options, client=client, clock=clock, sleep=sleep)


def throughput(folder: Path, n: int) -> list[str]:
    row = []
    for validate in (False, True):
        if validate and not specs_available():
            row.append("n/a (no specs)")
            continue
        _, backend = make(validate=validate)
        store = journal(folder, ["slack"], n, cases=1)  # one channel, one thread: the realistic hot spot
        secs = run_until(store, {"slack": backend}, {"slack": n}, timeout=120)["slack"]
        row.append(f"{n / secs:,.0f}/s" if secs == secs else "timeout")
        backend.close()
        store.close()
    return row


def pacing(folder: Path, seconds: float, scale: float) -> dict[str, float]:
    clock = ScaledClock(scale)
    # max_block above the window: the pacer waits itself (a Retryable would be honoured in real seconds).
    double, backend = make(validate=False, clock=clock.now, sleep=clock.sleep, double={"enforce_rate": True},
                           posts_per_second=1.0, max_block=5.0)
    store = journal(folder, ["slack"], int(seconds) + 50, cases=1)
    backend.bind(store.get_case(store.list_cases(limit=1)[0].id))  # warm: auth.test, history
    worker = Worker(store, {"slack": backend}, settings())
    clock._t0 = time.monotonic()
    worker.start()
    try:
        while clock.now() < seconds + 1.0:
            time.sleep(0.02)
    finally:
        worker.stop(timeout=5.0)
        backend.close()
    accepted = sum(1 for t in double.post_times if t < seconds)
    store.close()
    return {"accepted": accepted, "fraction": accepted / seconds, "violations": double.rate_violations,
            "real_seconds": seconds / scale}


def quiet_poll_cost() -> dict[str, int]:
    double, backend = make(validate=False)
    thread_ts = double.add_message("root", bot=True)["ts"]
    thread = ThreadRef(backend="slack", id=thread_ts)
    cursor = backend.read_back(thread).cursor
    before = len(double.requests)
    for _ in range(120):  # an hour of polling every 30 s
        cursor = backend.read_back(thread, cursor).cursor
    methods: dict[str, int] = {}
    for r in double.requests[before:]:
        key = r.url.path.removeprefix("/api/")
        methods[key] = methods.get(key, 0) + 1
    return methods


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    import os

    os.environ.setdefault("SLACK_BOT_TOKEN", "xoxb-test-token")
    n = 200 if args.quick else 600
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        off, on = throughput(folder, n)
        print(f"1. Slack delivery, {n} entries: {off} with spec checks off, {on} with every request/response "
              "validated")
        p = pacing(folder, 60.0 if args.quick else 300.0, scale=5.0)
        print(f"2. chat.postMessage pacing: {p['accepted']:.0f} posts accepted in the first "
              f"{60 if args.quick else 300} scaled seconds = {p['fraction']:.2f} of 1/s "
              f"(target >= 0.9), {p['violations']:.0f} ratelimited answers; {p['real_seconds']:.0f} s real")
        cost = quiet_poll_cost()
        print(f"3. a quiet thread polled every 30 s for an hour: {sum(cost.values())} requests ({cost})")


if __name__ == "__main__":
    main()
