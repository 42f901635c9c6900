-- The optional semantic layer (`sharedctx[semantic]`, sharedctx/search/semantic.py): which case was embedded,
-- with which model, up to which of its entries. A plain table, so this migration is harmless without the extra.
-- On SQLite the vectors themselves live in a sqlite-vec `vec0` table (case_vectors) that the semantic module
-- creates in this same file when the extra is installed; `vector` stays NULL here. Derived data: `sharedctx
-- index rebuild` recomputes all of it from the journal.
CREATE TABLE IF NOT EXISTS case_embeddings (
    case_id     TEXT PRIMARY KEY REFERENCES cases (id),
    model       TEXT NOT NULL,
    seq         INTEGER NOT NULL,   -- the case's last_seq when its text was read: a later entry re-embeds it
    embedded_at TEXT NOT NULL,
    vector      BLOB,               -- unused on SQLite (see case_vectors)
    version     INTEGER NOT NULL DEFAULT 0  -- grows with every write: searching processes refresh their copy by it
);
CREATE INDEX IF NOT EXISTS case_embeddings_by_version ON case_embeddings (version);
