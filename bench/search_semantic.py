"""Where the time of a search with `sharedctx[semantic]` goes, at one size: lexical search, fused search, the
query's encoding (`Encoder.query`, what a search runs) and the nearest-case lookup, each query timed back to
back (lexical, then fused) so that machine load hits both alike. Wall-clock p50/p99, and the process's CPU
time per lexical and fused search ("*_cpu": steadier than wall time on a shared machine; the fused search's
includes the encoding thread). Uses a dataset that `python -m bench.search` built (and gave vectors to).

    python -m bench.search_semantic /tmp/sharedctx-bench/sqlite-1000000-s7.db
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.search import load_queries
from sharedctx.search import search, semantic
from sharedctx.store.base import open_store


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))] * 1000


def main(argv: list[str] | None = None) -> None:
    path = (argv or sys.argv[1:])[0]
    os.environ["SHAREDCTX_SEMANTIC"] = "on"
    store = open_store(path)
    enc, vec = semantic.encoder(), semantic.vectors_for(store)
    texts = [q["query"] for q in load_queries()]
    for t in texts[:10]:  # warm the caches and the vector copy
        search(store, t, limit=10)
    times: dict[str, list[float]] = {k: [] for k in ("lexical", "semantic", "encode", "knn", "lexical_cpu",
                                                        "semantic_cpu")}
    for _ in range(2):
        for t in texts:
            os.environ["SHAREDCTX_SEMANTIC"] = "off"
            a, c = time.perf_counter(), time.process_time()
            search(store, t, limit=10)
            times["lexical"].append(time.perf_counter() - a)
            times["lexical_cpu"].append(time.process_time() - c)
            os.environ["SHAREDCTX_SEMANTIC"] = "on"
            a, c = time.perf_counter(), time.process_time()
            search(store, t, limit=10)
            times["semantic"].append(time.perf_counter() - a)
            times["semantic_cpu"].append(time.process_time() - c)
            a = time.perf_counter()
            q = enc.query(t) if hasattr(enc, "query") else enc.encode([t])[0]  # (older engines: no query())
            times["encode"].append(time.perf_counter() - a)
            a = time.perf_counter()
            vec.knn(q, semantic.SEMANTIC_K)
            times["knn"].append(time.perf_counter() - a)
    print(json.dumps({"db": path, "vectors": vec.count(), "load": os.getloadavg()[0],
                      **{k: {"p50": round(pct(v, 50), 1), "p99": round(pct(v, 99), 1)} for k, v in times.items()}}))


if __name__ == "__main__":
    main()
