"""Code that runs in child processes of the acceptance tests (kept light: no pytest, no hypothesis).

* `participant_loop`: a long-lived `spawn` process for the concurrency property test. It receives
  plans over a queue, runs each with a few threads calling `record()`, and returns what each call
  returned.
* `python -m tests.acceptance._children record CONFIG ACKFILE`: the crash test's recorder. It records
  entries forever and appends `entry_id case_id seq` to ACKFILE only after `record()` returned.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

from sharedctx.config import Config, load_config, parse_config
from sharedctx.context import SharedContext

# One step of a plan: (case index, pause in seconds before the call).
Step = tuple[int, float]
# What one record() returned: (case_id, entry_id, seq, body).
Returned = tuple[str, str, int, str]


def make_config(store_url: str, base_dir: str) -> Config:
    return parse_config(
        {
            "store": store_url,
            "agent": {"name": "prop", "kind": "primary"},
            "backends": [{"type": "local", "path": "cases"}],
            "worker": {"enabled": False},
        },
        base_dir=Path(base_dir),
    )


def run_threads(
    contexts: list[SharedContext], case_ids: list[str], plans: list[list[Step]], label: str, start_at: float
) -> list[list[Returned]]:
    """Run plan i in thread i with contexts[i % len(contexts)]; each thread's results in call order."""
    results: list[list[Returned]] = [[] for _ in plans]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        ctx = contexts[i % len(contexts)]
        cases = [ctx.case(cid) for cid in case_ids]
        try:
            time.sleep(max(0.0, start_at - time.time()))
            for n, (case_index, pause) in enumerate(plans[i]):
                if pause:
                    time.sleep(pause)
                body = f"{label}/t{i}/s{n}"
                entry = cases[case_index].record("finding", f"step {n}", body)
                results[i].append((entry.case_id, entry.id, entry.seq, body))
        except BaseException as exc:  # reported to the test, never swallowed
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(plans))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def participant_loop(tasks: Any, results: Any) -> None:
    """Serve plans until a None task arrives. A task: (store_url, base_dir, case_ids, plans, label, start_at)."""
    contexts: dict[str, SharedContext] = {}
    while True:
        task = tasks.get()
        if task is None:
            break
        store_url, base_dir, case_ids, plans, label, start_at = task
        try:
            if store_url not in contexts:
                contexts[store_url] = SharedContext.open(make_config(store_url, base_dir), worker=False)
            out = run_threads([contexts[store_url]], case_ids, plans, label, start_at)
            results.put((label, "ok", out))
        except BaseException as exc:
            results.put((label, "error", f"{type(exc).__name__}: {exc}"))
    for ctx in contexts.values():
        ctx.close()


def recorder(config_path: str, ack_path: str, n_cases: int) -> None:
    """Record forever into `n_cases` cases (found again by fingerprint after a restart)."""
    ctx = SharedContext.open(load_config(config_path), worker=False)
    cases = [ctx.open_case(f"crash case {i}", service="crash", fingerprint=f"crash-{i}") for i in range(n_cases)]
    fd = os.open(ack_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    rng = random.Random()
    n = 0
    while True:
        case = rng.choice(cases)
        entry = case.record("finding", f"step {n} of pid {os.getpid()}", f"body {n} " + "x" * rng.randrange(0, 400))
        # Acknowledge only now: record() has returned, so the entry must survive a kill -9.
        os.write(fd, f"{entry.id} {entry.case_id} {entry.seq}\n".encode())
        n += 1
        time.sleep(rng.uniform(0.0, 0.006))


if __name__ == "__main__":
    if sys.argv[1] == "record":
        recorder(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        raise SystemExit(f"unknown role {sys.argv[1]!r}")
