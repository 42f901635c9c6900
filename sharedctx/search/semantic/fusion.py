"""What the rest of sharedctx calls: a search's semantic half (`start`, then `fuse` into the lexical ranking by
reciprocal rank) and the background indexer that the first search starts (`ensure_indexer`, `sync`,
`rebuild`). They sit together because both only combine the model and the vectors; the constants that tune
them live here too, and `RRF_K`, `SEMANTIC_WEIGHT` and `IDLE_SECONDS` are read from this module at call time,
so this is the module to set them on (bench/search.py --fit-fusion does).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from .embedding import MODEL_NAME, case_text, encoder
from .extra import SemanticUnavailable, enabled
from .vectors import _INDEXERS, _VECTORS_LOCK, _q, forget, vectors_for

if TYPE_CHECKING:
    from ...store.base import CandidateQuery, Store
    from ..models import CaseResult
    from ..ranking import CaseDoc, Evidence, Term

log = logging.getLogger("sharedctx.search.semantic")

BATCH = 32  # cases embedded per transaction by the indexer
IDLE_SECONDS = 2.0  # the indexer's pause when nothing is pending
SEMANTIC_K = 30  # nearest cases fused with the lexical ranking
# reciprocal rank fusion: score = 1/(RRF_K + lexical rank) + SEMANTIC_WEIGHT/(RRF_K + semantic rank);
# chosen on the tuning set only (bench/search.py --fit-fusion, never on bench/heldout/): best MRR / R@5 of the
# 4 x 5 grid, 0.950 / 0.915 / 0.724 (tied with RRF_K=100); the grid's spread is small (MRR 0.886-0.915)
RRF_K = 60.0
SEMANTIC_WEIGHT = 1.5


# -- indexing ----------------------------------------------------------------------------------------
def sync(store: Store, *, batch: int = BATCH, limit: int | None = None,
         progress: Callable[[int], None] | None = None, stop: threading.Event | None = None) -> int:
    """Embed every case whose vector is missing or older than its last entry; returns how many were embedded.

    The case's last_seq is read before its text, so an entry appended meanwhile leaves the case pending for
    the next round instead of marking stale text as current."""
    vec = vectors_for(store)
    model = encoder()
    done = 0
    while not (stop and stop.is_set()):
        todo = vec.pending(batch)
        if not todo:
            break
        ids = [cid for cid, _ in todo]
        meta = {str(r[0]): (str(r[1]), str(r[2] or "")) for r in _q(
            store, f"SELECT id, title, service FROM cases WHERE id IN ({','.join('?' * len(ids))})", ids)}
        rows: dict[str, list[Any]] = {}
        for r in store.case_texts(ids):
            rows.setdefault(str(r[0]), []).append(r)
        texts = [case_text(*meta.get(cid, ("", "")), rows.get(cid, [])) for cid in ids]
        embs = model.encode(texts)
        vec.put([(cid, seq, embs[i]) for i, (cid, seq) in enumerate(todo)])
        done += len(todo)
        if progress:
            progress(done)
        if limit is not None and done >= limit:
            break
    return done


def rebuild(store: Store, progress: Callable[[int, int], None] | None = None) -> int:
    """Recompute every case's vector from the journal (after a model change, or a lost or corrupt table)."""
    encoder()  # a missing model fails here, before the old vectors are dropped
    vec = vectors_for(store)
    vec.clear()
    total = int(_q(store, "SELECT count(*) FROM cases")[0][0])
    return sync(store, batch=64, progress=(lambda n: progress(n, total)) if progress else None)



def ensure_indexer(store: Store) -> None:
    """Start this process's background indexer for `store` once: it embeds new and grown cases off the
    `record()` path, pausing IDLE_SECONDS when nothing is pending, and stops with the store."""
    with _VECTORS_LOCK:
        if id(store) in _INDEXERS and _INDEXERS[id(store)][0] is store:
            return
        stop = threading.Event()
        _INDEXERS[id(store)] = (store, stop)

    def gone() -> bool:
        """The store was closed (SQLite: its close event; PostgreSQL: its pool)."""
        closed = getattr(store, "_closed", None)
        pool = getattr(store, "_pool", None)
        return bool((closed is not None and closed.is_set()) or (pool is not None and getattr(pool, "closed", False)))

    def run() -> None:
        while not stop.is_set():
            if gone():
                forget(store)  # release the vector connections with the store
                return
            try:
                n = sync(store, stop=stop)
            except SemanticUnavailable as exc:
                log.warning("semantic indexing off: %s", exc)
                return
            except Exception as exc:  # a busy file, a dropped connection: try again later, never crash the process
                log.debug("semantic indexing pass failed: %s", exc)
                n = 0
            if not n:
                stop.wait(IDLE_SECONDS)

    threading.Thread(target=run, name="sharedctx-embed", daemon=True).start()


# -- searching ---------------------------------------------------------------------------------------
_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sharedctx-embed-query")


class Semantic:
    """One search's semantic half: the query's vector is computed in a worker thread while the lexical
    retrieval runs (torch releases the GIL), then the nearest cases are read from the store."""

    def __init__(self, store: Store, text: str) -> None:
        self.store = store
        self.vectors = vectors_for(store)
        model = encoder()
        self.future: Future[Any] = _POOL.submit(model.query, text)

    def nearest(self, k: int = SEMANTIC_K) -> list[tuple[str, float]]:
        return self.vectors.knn(self.future.result(), k)


def start(store: Store, text: str) -> tuple[Semantic | None, str | None]:
    """The semantic half of a search, or (None, why not) — never an exception: a search without embeddings
    is still a search. Starts the store's background indexer."""
    if not enabled() or not text.strip():
        return None, None
    try:
        vec = vectors_for(store)
        ensure_indexer(store)
        if not vec.any():
            return None, None  # nothing embedded yet: the indexer is on it
        return Semantic(store, text), None
    except SemanticUnavailable as exc:
        return None, f"semantic search off: {exc}"
    except Exception as exc:  # e.g. the vector table is unreadable: say so, search lexically
        return None, f"semantic search failed ({exc}); searched by words only"


def fuse(store: Store, sem: Semantic, ranked: list[CaseResult], docs: list[CaseDoc], base: CandidateQuery,
         ev: Evidence, terms: Sequence[Term]) -> tuple[list[CaseResult], list[CaseDoc], dict[str, float]]:
    """Reciprocal rank fusion of the lexical ranking and the nearest cases (those passing the search's filters).

    Returns (ranked, docs, fused score by case). Cases only the embedding found join with their own docs
    and structured signals; each semantically matched case says so in its reasons."""
    from ...store.sql import CANDIDATE_CASE_COLS, ENTRY_COLS, candidate_conditions, row_to_candidate
    from ..engine import pool_docs
    from ..ranking import score_cases

    near = sem.nearest()
    known = {d.case_id for d in docs}
    new_ids = [cid for cid, _ in near if cid not in known]
    if new_ids:
        dialect = "postgres" if type(store).__name__ == "PostgresStore" else "sqlite"
        where, params = candidate_conditions(dialect, base.model_copy(update={"min_rowid": None}))
        cols = ", ".join(f"e.{c.strip()}" for c in ENTRY_COLS.split(",")) + ", e.rowid, " + CANDIDATE_CASE_COLS
        rows = _q(store, f"SELECT {cols}, 0.0 FROM entries e JOIN cases c ON c.id = e.case_id WHERE e.case_id IN "
                  f"({','.join('?' * len(new_ids))})" + "".join(" AND " + w for w in where)
                  + " ORDER BY e.case_id, e.seq", [*new_ids, *params])
        first: dict[str, Any] = {}
        for r in rows:  # only each case's first row becomes a Candidate (r[1]: ENTRY_COLS' case_id)
            if r[1] not in first:
                first[r[1]] = row_to_candidate(r)
        extra = pool_docs(store, [first[c] for c in new_ids if c in first], size=len(first), filters=base.filters)
        if extra:
            ranked = ranked + score_cases(extra, {}, ev, terms)
            docs = docs + extra
    sem_rank = {cid: (i + 1, cos) for i, (cid, cos) in enumerate(near)}
    order = [r.case_id for r in ranked if r.signals.get("text")]
    lex_rank = {cid: i + 1 for i, cid in enumerate(order)}
    fused: dict[str, float] = {}
    for r in ranked:
        s = 1.0 / (RRF_K + lex_rank[r.case_id]) if r.case_id in lex_rank else 0.0
        hit = sem_rank.get(r.case_id)
        if hit:
            s += SEMANTIC_WEIGHT / (RRF_K + hit[0])
            r.signals["semantic"] = round(hit[1], 4)
            r.reasons.append(f"matched semantically: close in meaning to the query (cosine {hit[1]:.2f}, "
                             f"#{hit[0]} by {MODEL_NAME.split('/')[-1]})")
        fused[r.case_id] = round(s, 6)
    ranked.sort(key=lambda r: (-fused[r.case_id], -r.score))
    return ranked, docs, fused
