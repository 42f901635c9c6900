-- The journal, its full-text index and the outbox, for teams running several agents and workers.
-- Entries are append-only: a trigger refuses UPDATE and DELETE.

CREATE TABLE cases (
    id          TEXT PRIMARY KEY,
    title       TEXT NOT NULL,
    service     TEXT NOT NULL DEFAULT '',
    severity    TEXT NOT NULL DEFAULT 'warning',
    status      TEXT NOT NULL DEFAULT 'open',
    fingerprint TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    resolved_at TEXT,
    last_seq    INTEGER NOT NULL DEFAULT 0,
    last_hash   TEXT NOT NULL,
    bindings    JSONB NOT NULL DEFAULT '{}',
    labels      JSONB NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX cases_open_fingerprint ON cases (fingerprint)
    WHERE fingerprint IS NOT NULL AND status <> 'resolved';
CREATE INDEX cases_by_status ON cases (status);
CREATE INDEX cases_by_service ON cases (service);

CREATE TABLE entries (
    rowid       BIGSERIAL PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    case_id     TEXT NOT NULL REFERENCES cases (id),
    seq         INTEGER NOT NULL,
    ts          TEXT NOT NULL,
    author_kind TEXT NOT NULL,
    author_name TEXT NOT NULL,
    kind        TEXT NOT NULL,
    title       TEXT NOT NULL,
    body        TEXT NOT NULL,
    evidence    JSONB NOT NULL DEFAULT '[]',
    ref         TEXT,
    trace_id    TEXT,
    attrs       JSONB NOT NULL DEFAULT '{}',
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL,
    evidence_text TEXT NOT NULL DEFAULT '',
    -- maintained with the write (a generated column), never in a batch
    tsv tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', title), 'A') ||
        setweight(to_tsvector('english', body), 'B') ||
        setweight(to_tsvector('english', evidence_text), 'C')) STORED,
    UNIQUE (case_id, seq)
);
CREATE INDEX entries_tsv ON entries USING GIN (tsv);
CREATE INDEX entries_by_kind ON entries (kind, ts);

CREATE FUNCTION sharedctx_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'entries are append-only: record a correction instead of editing or deleting';
END $$;
CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON entries
    FOR EACH ROW EXECUTE FUNCTION sharedctx_append_only();

CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    entry_id        TEXT NOT NULL REFERENCES entries (id),
    case_id         TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    backend         TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    lease_until     DOUBLE PRECISION,
    lease_owner     TEXT,
    last_error      TEXT,
    last_error_kind TEXT,
    external        JSONB,
    created_at      DOUBLE PRECISION NOT NULL,
    delivered_at    DOUBLE PRECISION,
    UNIQUE (entry_id, backend)
);
CREATE INDEX outbox_due ON outbox (backend, next_attempt_at) WHERE state = 'pending';
CREATE INDEX outbox_head ON outbox (case_id, backend, seq) WHERE state = 'pending';

CREATE TABLE backend_state (
    name   TEXT PRIMARY KEY,
    state  TEXT NOT NULL,
    reason TEXT,
    since  TEXT
);

CREATE TABLE cursors (
    backend    TEXT NOT NULL,
    case_id    TEXT NOT NULL,
    cursor     TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (backend, case_id)
);
