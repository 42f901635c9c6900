-- The journal, its full-text index and the outbox. Entries are append-only: triggers refuse
-- UPDATE and DELETE so no code path (ours or a careless script) can rewrite history in place.

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
    bindings    TEXT NOT NULL DEFAULT '{}',
    labels      TEXT NOT NULL DEFAULT '{}'
);
-- one open case per fingerprint: a repeated alert finds the open case instead of opening another
CREATE UNIQUE INDEX cases_open_fingerprint ON cases (fingerprint)
    WHERE fingerprint IS NOT NULL AND status <> 'resolved';
CREATE INDEX cases_by_status ON cases (status);
CREATE INDEX cases_by_service ON cases (service);

CREATE TABLE entries (
    rowid       INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    case_id     TEXT NOT NULL REFERENCES cases (id),
    seq         INTEGER NOT NULL,
    ts          TEXT NOT NULL,
    author_kind TEXT NOT NULL,
    author_name TEXT NOT NULL,
    kind        TEXT NOT NULL,
    title       TEXT NOT NULL,
    body        TEXT NOT NULL,
    evidence    TEXT NOT NULL DEFAULT '[]',
    evidence_text TEXT NOT NULL DEFAULT '',
    ref         TEXT,
    trace_id    TEXT,
    attrs       TEXT NOT NULL DEFAULT '{}',
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL,
    UNIQUE (case_id, seq)
);
CREATE INDEX entries_by_kind ON entries (kind, ts);

CREATE VIRTUAL TABLE entries_fts USING fts5 (
    title, body, evidence,
    content = 'entries', content_rowid = 'rowid',
    tokenize = 'porter unicode61'
);

-- the index is maintained with the write, in the same transaction
CREATE TRIGGER entries_fts_insert AFTER INSERT ON entries BEGIN
    INSERT INTO entries_fts (rowid, title, body, evidence)
    VALUES (new.rowid, new.title, new.body, new.evidence_text);
END;

CREATE TRIGGER entries_append_only_update BEFORE UPDATE ON entries BEGIN
    SELECT RAISE(ABORT, 'entries are append-only: record a correction instead of editing');
END;
CREATE TRIGGER entries_append_only_delete BEFORE DELETE ON entries BEGIN
    SELECT RAISE(ABORT, 'entries are append-only: they cannot be deleted');
END;

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    entry_id        TEXT NOT NULL REFERENCES entries (id),
    case_id         TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    backend         TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',   -- pending | delivered | dead
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    lease_until     REAL,
    lease_owner     TEXT,
    last_error      TEXT,
    last_error_kind TEXT,
    external        TEXT,
    created_at      REAL NOT NULL,
    delivered_at    REAL,
    UNIQUE (entry_id, backend)
);
-- the claim query: due pending rows of one backend, and the head-of-line check per (case, backend)
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
