-- The optional semantic layer (`sharedctx[semantic]`, sharedctx/search/semantic.py): one sentence embedding
-- per case, with the model and the case's last_seq it was computed from (a later entry re-embeds the case).
-- pgvector is not used: Debian 12 (this project's CI) ships no postgresql-15-pgvector package, so vectors are
-- float4 little-endian bytes and the nearest cases are found in the searching process (numpy, exact cosine
-- over a cache refreshed by `version`). A plain table, so this migration is harmless without the extra.
-- Derived data: `sharedctx index rebuild` recomputes it from the journal.
CREATE SEQUENCE IF NOT EXISTS case_embeddings_version;
CREATE TABLE IF NOT EXISTS case_embeddings (
    case_id     TEXT PRIMARY KEY REFERENCES cases (id),
    model       TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    embedded_at TEXT NOT NULL,
    vector      BYTEA,
    version     BIGINT NOT NULL DEFAULT nextval('case_embeddings_version')
);
CREATE INDEX IF NOT EXISTS case_embeddings_by_version ON case_embeddings (version);
