"""A separate process for tests/unit/test_rate_limits.py: shared budgets are about *processes*, so the tests
run these instead of threads (each opens its own store connection, as a `sharedctx worker` does).

    python tests/unit/rate_child.py hammer  STORE KEY LIMITS SECONDS   # print one admission time per line
    python tests/unit/rate_child.py acquire STORE KEY LIMITS           # print the admission time once
    python tests/unit/rate_child.py stall   STORE KEY LIMITS           # take a slot, then hang before commit

STORE is a SQLite path or a PostgreSQL URL; LIMITS is JSON `[[cap, period], ...]` (seconds). `memory` as
the first argument after the mode uses the old per-process `Pacer` instead (the contrast).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sharedctx.backends.http import Pacer, Pacing, SharedPacer
from sharedctx.store.base import open_store
from sharedctx.store.sql.limits import TAKE_SLOT


class _Stalling:
    """A connection that hangs right after inserting the slot, inside the uncommitted transaction."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Any = ()) -> Any:
        result = self._conn.execute(sql, params)
        if sql == TAKE_SLOT:
            print("inside", flush=True)
            time.sleep(3600)  # killed here with SIGKILL by the test
        return result


def main(argv: list[str]) -> None:
    mode, *rest = argv
    memory = rest[0] == "memory"
    if memory:
        rest = rest[1:]
    url, key, limits_json, *more = rest
    limits = [(int(c), float(p)) for c, p in json.loads(limits_json)]
    store = open_store(url)
    admitted: list[float] = []

    def clock() -> float:  # remember the time each attempt is decided at: the last one is the admission
        admitted.append(time.time())
        return admitted[-1]

    pacer: Pacing
    if memory:
        pacer = Pacer(limits, max_block=3600, clock=clock)
    else:
        pacer = SharedPacer(store, lambda: key, limits, max_block=3600, clock=clock)
    if mode == "stall":
        real_tx = store._tx  # type: ignore[attr-defined]

        @contextmanager
        def tx() -> Iterator[_Stalling]:
            with real_tx() as c:
                yield _Stalling(c)

        store._tx = tx  # type: ignore[attr-defined]
        pacer.acquire()
        return
    print("ready", flush=True)
    end = time.time() + (float(more[0]) if mode == "hammer" else 0.0)
    while True:
        pacer.acquire()
        print(repr(admitted[-1]), flush=True)
        if time.time() >= end:
            break
    store.close()


if __name__ == "__main__":
    main(sys.argv[1:])
