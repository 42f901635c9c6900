"""Search quality on the held-out sets (bench/heldout/<set>/, written independently of the engine; see
their README.md) next to the tuning set. Never tune on these: they exist to say whether ranking that was
tuned on bench/history.py holds on history written by someone else.

    python -m bench.search_quality                 # every held-out set, SQLite, ours + plain BM25 (+ embeddings)
    python -m bench.search_quality --pg --no-embed

Each set's cases are replayed through the store's normal write path (`open_case`, `append`: triggers, FTS
index, hash chain) with their original timestamps. Metrics: hit@5 (a relevant case in the top 5), MRR
(first relevant case within the top 20), and for `similar.jsonl` precision@5 = |top 5 ∩ same-cause cases
opened earlier| / min(5, |those cases|) (similar_cases only ever returns earlier cases), plus strict P@5
(divided by 5).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sharedctx.model import Author, CaseStatus, EntryDraft, EntryKind
from sharedctx.search import search, similar_cases
from sharedctx.store.base import Store, open_store

HERE = Path(__file__).parent / "heldout"
TMP = Path(os.environ.get("SHAREDCTX_BENCH_DIR", "/tmp/sharedctx-bench"))
KIND = {"finding": EntryKind.FINDING, "action": EntryKind.ACTION, "decision": EntryKind.DECISION,
        "resolution": EntryKind.RESOLUTION, "note": EntryKind.NOTE, "human": EntryKind.NOTE}


def sets() -> list[str]:
    return sorted(p.name for p in HERE.iterdir() if (p / "cases.jsonl").is_file()) if HERE.is_dir() else []


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def fixed_now(name: str, cases: list[dict[str, Any]]) -> datetime:
    """The set's fixed "now" (its README, first ISO time in bold), else a day after its last case."""
    readme = HERE / name / "README.md"
    if readme.is_file():
        import re

        m = re.search(r"\*\*(\d{4}-\d\d-\d\dT[\d:]+Z?)\*\*", readme.read_text())
        if m:
            return datetime.fromisoformat(m.group(1).replace("Z", "+00:00"))
    last = max(datetime.fromisoformat(c["opened_at"].replace("Z", "+00:00")) for c in cases)
    return last + timedelta(days=1)


@contextlib.contextmanager
def _clock(holder: list[datetime]) -> Iterator[None]:
    """Record with the set's original times: the store's clock reads `holder[0]` while loading."""
    import sharedctx.store.chain as chain
    import sharedctx.store.sql.journal as sql

    saved = chain.utcnow, sql.utcnow
    chain.utcnow = sql.utcnow = lambda: holder[0]  # type: ignore[assignment]
    try:
        yield
    finally:
        chain.utcnow, sql.utcnow = saved  # type: ignore[assignment]


def load(store: Store, cases: list[dict[str, Any]]) -> dict[str, str]:
    """Replay the set into `store`; returns store case id -> set case id."""
    keys: dict[str, str] = {}
    clock = [datetime.now(UTC)]
    with _clock(clock):
        for c in sorted(cases, key=lambda c: c["opened_at"]):
            t = datetime.fromisoformat(c["opened_at"].replace("Z", "+00:00")).astimezone(UTC)
            clock[0] = t
            labels = {"set": c["id"]} | ({"alertname": c["alert"]} if c.get("alert") else {})
            rec, _ = store.open_case(title=c["title"], service=c.get("service", ""), severity="warning",
                                     fingerprint=None, labels=labels)
            keys[rec.id] = c["id"]
            if c.get("alert"):
                store.append(EntryDraft(case_id=rec.id, kind=EntryKind.ALERT, title=f"{c['alert']} firing",
                                        body=f"service {c.get('service', '')}", attrs={"alertname": c["alert"]},
                                        author=Author(kind="system", name="alertmanager")), [])
            for i, e in enumerate(c["entries"]):
                clock[0] = t + timedelta(minutes=7 * (i + 1))
                kind = KIND.get(e["kind"], EntryKind.NOTE)
                who = "human" if e["kind"] in ("human", "decision", "note") else "primary"
                resolved = kind == EntryKind.RESOLUTION and c.get("outcome") == "resolved"
                status = CaseStatus.RESOLVED if resolved else None
                text = e["text"]
                title, _, body = text.partition(". ")
                store.append(EntryDraft(case_id=rec.id, kind=kind, title=title[:200], body=body if len(title) <= 200
                                        else text, author=Author(kind=who, name=(e.get("author") or "someone")[:200])),
                             [], status)
    return keys


def build(name: str, url: str | None = None) -> tuple[Store, dict[str, str]]:
    """The set's store (built once under TMP, or at `url`), and store case id -> set case id."""
    cases = _jsonl(HERE / name / "cases.jsonl")
    if url is None:
        TMP.mkdir(parents=True, exist_ok=True)
        src = HERE / name / "cases.jsonl"
        stamp = f"{int(src.stat().st_mtime)}-{src.stat().st_size}"
        path = TMP / f"heldout-{name}-{stamp}.db"
        fresh = not path.exists()
        store = open_store(str(path))
        if fresh:
            load(store, cases)
    else:
        store = open_store(url)
        load(store, cases)
    keys = {c.id: c.labels.get("set", "") for c in store.list_cases(limit=1_000_000)}
    return store, keys


def metrics(ranked: list[list[str]], relevant: list[set[str]]) -> dict[str, Any]:
    hit, rr, misses = [], [], []
    for i, (got, rel) in enumerate(zip(ranked, relevant, strict=True)):
        hit.append(1.0 if rel & set(got[:5]) else 0.0)
        rank = next((k + 1 for k, x in enumerate(got[:20]) if x in rel), None)
        rr.append(1 / rank if rank else 0.0)
        if not rank or rank > 5:
            misses.append(i)
    return {"hit@5": statistics.mean(hit) if hit else 0.0, "mrr": statistics.mean(rr) if rr else 0.0,
            "n": len(hit), "misses": misses}


def ours(store: Store, keys: dict[str, str], now: datetime) -> Callable[[str], list[str]]:
    return lambda q: [keys[c.case_id] for c in search(store, q, limit=20, now=now).cases]


def plain_bm25(store: Store, keys: dict[str, str]) -> Callable[[str], list[str]]:
    def run(q: str) -> list[str]:
        out: list[str] = []
        for r in store.search(q, limit=200):
            k = keys[r.entry.case_id]
            if k not in out:
                out.append(k)
            if len(out) == 20:
                break
        return out

    return run


def similar_quality(store: Store, keys: dict[str, str], items: list[dict[str, Any]],
                    opened: dict[str, str]) -> dict[str, Any]:
    by_key = {v: k for k, v in keys.items()}
    norm, strict = [], []
    for it in items:
        cid = by_key.get(it["case"])
        if cid is None:
            continue
        truth = {s for s in it["similar"] if opened.get(s, "") < opened[it["case"]]}
        if not truth:
            continue
        got = [keys[r.case_id] for r in similar_cases(store, cid, limit=5)]
        k = len(truth & set(got[:5]))
        norm.append(k / min(5, len(truth)))
        strict.append(k / 5)
    return {"p@5": statistics.mean(norm) if norm else 0.0, "strict_p@5": statistics.mean(strict) if strict else 0.0,
            "n": len(norm)}


@contextlib.contextmanager
def semantic_mode(on: bool) -> Iterator[None]:
    """Search with (or without) the `semantic` extra's embeddings for the duration (SHAREDCTX_SEMANTIC)."""
    saved = os.environ.get("SHAREDCTX_SEMANTIC")
    os.environ["SHAREDCTX_SEMANTIC"] = "on" if on else "off"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("SHAREDCTX_SEMANTIC", None)
        else:
            os.environ["SHAREDCTX_SEMANTIC"] = saved


def semantic_installed() -> bool:
    from sharedctx.search import semantic

    return semantic.missing() is None


def embed_cases(store: Store) -> float:
    """Bring the store's case vectors up to date (what the background indexer does); returns the seconds taken."""
    from sharedctx.search import semantic

    t0 = time.perf_counter()
    with semantic_mode(True):
        n = semantic.sync(store, batch=64)
    if n:
        print(f"  embedded {n:,} cases in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    return time.perf_counter() - t0


def copy_vectors(name: str, store: Store, keys: dict[str, str]) -> None:
    """Give a PostgreSQL replay of a set the case vectors of its SQLite replay (the same case texts and model,
    so the same vectors), instead of embedding every case a second time on a shared CPU."""
    from sharedctx.search import semantic

    src, src_keys = build(name)
    try:
        with semantic_mode(True):
            embed_cases(src)
            vec = semantic.vectors_for(src)
            by_set = {src_keys[str(cid)]: emb for cid, emb in vec.conn.execute(  # type: ignore[attr-defined]
                "SELECT case_id, embedding FROM case_vectors").fetchall()}
            import numpy as np

            seqs = dict(store._q("SELECT id, last_seq FROM cases"))  # type: ignore[attr-defined]
            semantic.vectors_for(store).put([(cid, int(seqs[cid]), np.frombuffer(by_set[k], dtype=np.float32))
                                             for cid, k in keys.items() if k in by_set])
    finally:
        semantic.forget(src)
        src.close()


def evaluate(name: str, *, url: str | None = None, embed: bool = True, sem: bool = True) -> dict[str, Any]:
    """Every method on one held-out set: {"ours": {...}, "bm25": {...}, "embedding": {...}, "similar": {...},
    "semantic": {...}} ("semantic": ours with the `semantic` extra's embeddings fused in, when installed)."""
    cases = _jsonl(HERE / name / "cases.jsonl")
    queries = _jsonl(HERE / name / "queries.jsonl")
    now = fixed_now(name, cases)
    store, keys = build(name, url)
    texts = [q["query"] for q in queries]
    rel = [set(q["relevant"]) for q in queries]
    out: dict[str, Any] = {"set": name, "cases": len(cases), "queries": len(queries),
                           "dialect": "postgres" if url else "sqlite"}
    t0 = time.perf_counter()
    fn = ours(store, keys, now)
    with semantic_mode(False):
        out["ours"] = metrics([fn(t) for t in texts], rel)
    out["ours"]["ms_per_query"] = (time.perf_counter() - t0) * 1000 / max(1, len(texts))
    out["bm25"] = metrics([plain_bm25(store, keys)(t) for t in texts], rel)
    styles: dict[str, list[int]] = {}
    for i, q in enumerate(queries):
        styles.setdefault(q.get("style", "?"), []).append(i)
    out["ours_by_style"] = {s: round(1 - sum(1 for i in ix if i in set(out["ours"]["misses"])) / len(ix), 3)
                            for s, ix in sorted(styles.items())}
    sim = _jsonl(HERE / name / "similar.jsonl")
    if sim:
        opened = {c["id"]: c["opened_at"] for c in cases}
        out["similar"] = similar_quality(store, keys, sim, opened)
    if sem and semantic_installed():
        if url is not None:
            copy_vectors(name, store, keys)
        embed_cases(store)
        t0 = time.perf_counter()
        with semantic_mode(True):
            out["semantic"] = metrics([fn(t) for t in texts], rel)
        out["semantic"]["ms_per_query"] = (time.perf_counter() - t0) * 1000 / max(1, len(texts))
        out["semantic"]["misses"] = [queries[i]["id"] for i in out["semantic"]["misses"]]
    if embed and url is None:
        emb = embedder(store, keys, TMP / f"emb-heldout-{name}.npz")
        if emb is not None:
            out["embedding"] = metrics([emb(t) for t in texts], rel)
    out["ours"]["misses"] = [queries[i]["id"] for i in out["ours"]["misses"]]
    out["bm25"]["misses"] = [queries[i]["id"] for i in out["bm25"]["misses"]]
    if "embedding" in out:
        out["embedding"]["misses"] = [queries[i]["id"] for i in out["embedding"]["misses"]]
    from sharedctx.search import semantic

    semantic.forget(store)
    store.close()
    return out


def embedder(store: Store, keys: dict[str, str], cache: Path) -> Callable[[str], list[str]] | None:
    """The benchmark's embedding baseline (all-MiniLM-L6-v2, `bench` extra), or None when not installed."""
    try:
        from bench.search import Embeddings
    except ImportError:
        return None
    try:
        return Embeddings(store, keys, cache)
    except ImportError:
        return None


def pg_scratch(name: str, admin: str) -> str | None:
    """A fresh PostgreSQL database for one held-out set (dropped and re-created), or None without a server."""
    try:
        import psycopg

        db = os.environ.get("SHAREDCTX_BENCH_PG_PREFIX", "sharedctx_bench") + f"_heldout_{name}"
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{db}"')
        return admin.rsplit("/", 1)[0] + "/" + db
    except Exception as exc:  # any failure means: no PostgreSQL figures
        print(f"  PostgreSQL unavailable ({exc}); skipping", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=",".join(sets()))
    ap.add_argument("--pg", help="also evaluate on PostgreSQL at this admin URL (a scratch database is made)")
    ap.add_argument("--no-embed", action="store_true")
    ap.add_argument("--no-semantic", action="store_true", help="skip the sharedctx[semantic] column")
    a = ap.parse_args(argv)
    for name in [s for s in a.sets.split(",") if s]:
        print(json.dumps(evaluate(name, embed=not a.no_embed, sem=not a.no_semantic)))
        if a.pg:
            url = pg_scratch(name, a.pg)
            if url:
                print(json.dumps(evaluate(name, url=url, embed=False, sem=not a.no_semantic)))


if __name__ == "__main__":
    main()
