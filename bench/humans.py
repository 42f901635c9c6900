"""Humans in the loop: how fast does an agent resume after a person answers, and what does polling cost?

    python bench/humans.py             # ~30 s
    python bench/humans.py --quick     # a smoke run
    python bench/humans.py --json

1. **Latency from the human's action to the agent resuming** (`await case.request_decision(...)` returns):
   - *webhook*: the person's `/approve` is a signed GitHub `issue_comment` delivery POSTed to the webhook
     app (ASGI, in process); the clock starts when the comment exists and the delivery is sent.
   - *polling*: the comment exists; the poller runs every `poll_interval` (here scaled down to 0.25 s and
     1 s so the run is short; the latency is ~interval/2 + the read, so the default 30 s gives ~15 s).
   The waiting agent re-reads the journal every `wait_interval` (0.05 s here, default 0.5 s), which adds
   up to that much on both paths.
2. **Backend requests per case-hour of polling** a quiet case (nothing new), at the default
   `poll_interval` of 30 s = 120 read-backs an hour, measured over 40 read-backs and scaled:
   GitHub with ETags (If-None-Match -> 304, which GitHub does not count against the primary rate limit)
   and without; PagerDuty, ServiceNow and Jira (no conditional reads in their APIs as used here).

All against the spec-checked doubles in tests/doubles (GitHub: tests/humans/doubles.py), SQLite store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pytest

from bench._stats import Latency, fmt_ms, print_table
from tests.humans.conftest import SECRETS, World, make_world
from tests.humans.doubles import github_comment_payload, github_hook

POLLS_PER_HOUR = 3600 / 30


def world(tmp: Path, mp: pytest.MonkeyPatch, **humans: Any) -> World:
    w = make_world(tmp, mp, humans={"wait_interval": 0.05, **humans})
    w.gh.validate = False  # spec checking costs ms per request; the tests do it, the bench measures us
    for d in (w.pd, w.sn, w.jira):
        d.validate = False
    w.gh.roles["alice"] = "write"
    return w


async def one_decision(w: World, via: str, rng: random.Random) -> float:
    case = w.ctx.open_case("bench: roll back?")
    task = asyncio.create_task(case.request_decision("Roll back deploy 4411?", timeout=120))
    while not case.timeline(kinds=["decision-request"]):
        await asyncio.sleep(0.005)
    await asyncio.to_thread(w.deliver)
    issue = int(w.thread(case.id, "github"))
    if via == "polling":  # people act at any moment of the poller's cycle, not right after a read
        await asyncio.sleep(rng.uniform(0, w.poller.interval))
    t0 = time.perf_counter()
    comment = w.gh.comment_as(issue, "/approve", "alice")
    if via == "webhook":
        body, headers = github_hook(SECRETS["github"], "issue_comment", github_comment_payload(w.gh, issue, comment))
        resp = await w.post("github", body, headers)
        assert resp.status_code == 200, resp.text
    decision = await task
    assert decision.approved
    return time.perf_counter() - t0


async def latencies(w: World, via: str, n: int) -> list[float]:
    poller = asyncio.create_task(w.poller.run()) if via == "polling" else None
    try:
        rng = random.Random(7)
        return [await one_decision(w, via, rng) for _ in range(n)]
    finally:
        if poller is not None:
            poller.cancel()


def requests_per_case_hour(w: World, reads: int) -> dict[str, dict[str, float]]:
    case = w.ctx.open_case("bench: quiet case")
    case.record("finding", "p99 up", author="primary:triage")
    case.record("finding", "pool exhausted", author="partner:telemetry")
    w.deliver()
    doubles = {"github": w.gh, "pagerduty": w.pd, "servicenow": w.sn, "jira": w.jira}
    w.poller.poll_case(case.id)  # warm: first read is always a full one
    before = {k: len(d.requests) for k, d in doubles.items()}
    full_before, nm_before = w.gh.full_answers, w.gh.not_modified
    for _ in range(reads):
        w.poller.poll_case(case.id)
    scale = POLLS_PER_HOUR / reads
    out = {k: {"requests": (len(d.requests) - before[k]) * scale} for k, d in doubles.items()}
    out["github"]["counted"] = (w.gh.full_answers - full_before) * scale
    out["github"]["not_modified"] = (w.gh.not_modified - nm_before) * scale
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--plain", action="store_true")
    args = ap.parse_args()
    n = 5 if args.quick else 20
    reads = 10 if args.quick else 40
    results: dict[str, Any] = {"latency": {}, "requests_per_case_hour": {}}
    with tempfile.TemporaryDirectory() as tmp:
        mp = pytest.MonkeyPatch()
        try:
            for label, via, interval in (("webhook", "webhook", 30.0), ("polling every 0.25 s", "polling", 0.25),
                                         ("polling every 1 s", "polling", 1.0)):
                w = world(Path(tmp) / label.replace(" ", "_"), mp, poll_interval=interval)
                try:
                    results["latency"][label] = Latency.of(asyncio.run(latencies(w, via, n)))
                finally:
                    w.ctx.close()
            for label, etags in (("with ETags", True), ("without ETags", False)):
                w = world(Path(tmp) / label.replace(" ", "_"), mp)
                w.gh.etags = etags
                try:
                    results["requests_per_case_hour"][label] = requests_per_case_hour(w, reads)
                finally:
                    w.ctx.close()
        finally:
            mp.undo()
    if args.json:
        print(json.dumps({"latency": {k: v.as_dict() for k, v in results["latency"].items()},
                          "requests_per_case_hour": results["requests_per_case_hour"]}, indent=2))
        return
    print_table(f"Human action -> agent resumes (n={n} each, agent re-reads the journal every 0.05 s)",
                ["path", "p50", "p90", "max"],
                [[k, fmt_ms(v.p50), fmt_ms(v.p90), fmt_ms(v.max)] for k, v in results["latency"].items()],
                plain=args.plain)  # fmt: skip
    rows = []
    for label, per in results["requests_per_case_hour"].items():
        gh = per["github"]
        rows.append([f"GitHub {label}", f"{gh['requests']:.0f}", f"{gh['counted']:.0f}", f"{gh['not_modified']:.0f}"])
    other = results["requests_per_case_hour"]["with ETags"]
    for name in ("pagerduty", "servicenow", "jira"):
        r = other[name]["requests"]
        rows.append([name, f"{r:.0f}", f"{r:.0f}", "-"])
    print_table("Backend requests per case-hour of polling a quiet case (poll_interval 30 s = 120 read-backs/h)",
                ["backend", "requests", "count against rate limit", "304 Not Modified"], rows, plain=args.plain)


if __name__ == "__main__":
    main()
