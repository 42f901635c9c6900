-- Exactly-once delivery (docs/decisions.md "reliability: exactly-once by construction"):
--   lease_token   fencing token, bumped by every claim; every later state change names it, so a
--                 worker whose lease was taken over cannot mark, reschedule, bury or release the row.
--   sent_possibly set (and committed) before the first network call of an attempt; any later attempt
--                 on the row reconciles with `backend.lookup` before sending, whatever ended the last one.
ALTER TABLE outbox ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN sent_possibly INTEGER NOT NULL DEFAULT 0;

-- Truncation evidence: heads of cases as they were at a moment, chained checkpoint to checkpoint.
-- A checkpoint lists only the cases whose head moved since the previous one (written in batches, never
-- by every append), so PostgreSQL writers never meet on one hot row.
CREATE TABLE checkpoints (
    id        INTEGER PRIMARY KEY,
    at        TEXT NOT NULL,
    heads     TEXT NOT NULL,          -- {"case id": [last_seq, last_hash], ...}
    prev_hash TEXT NOT NULL UNIQUE,
    hash      TEXT NOT NULL UNIQUE
);

-- Facts about this journal file itself (its id, for the marker beside the file).
-- The newest checkpointed head of each case: what the next checkpoint compares against (only the
-- checkpoint writer touches it, never an append).
CREATE TABLE checkpoint_heads (
    case_id TEXT PRIMARY KEY,
    seq     INTEGER NOT NULL,
    hash    TEXT NOT NULL
);

CREATE TABLE journal_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
