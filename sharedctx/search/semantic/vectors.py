"""Where the case vectors live and how the nearest cases are found: in the journal's own store (a sqlite-vec
table in the SQLite file, float4 bytes on PostgreSQL), searched exactly by numpy over an in-process copy.
Apart from the model because a search reads vectors on every query while the model loads once, and apart from
the indexer because the per-store registries (`_VECTORS`, `_INDEXERS`, one lock) must be released together
when a store closes (`forget`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ...model import format_ts, utcnow
from .embedding import DIM, MODEL_ID
from .extra import SemanticUnavailable

if TYPE_CHECKING:
    from ...store.base import Store


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
_INDEXERS: dict[int, tuple[Any, threading.Event]] = {}  # the background indexers (`ensure_indexer`), by store


def vectors_for(store: Store) -> Vectors:
    """The vector table of `store` (one per store object, kept while the store lives)."""
    with _VECTORS_LOCK:
        hit = _VECTORS.get(id(store))
        if hit is not None and hit[0] is store:
            return hit[1]
        from ...store.postgres import PostgresStore
        from ...store.sqlite import SQLiteStore

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

