-- One owner per investigation (docs/decisions.md "failover: one owner per investigation, fenced steps").
-- The primary agent's state machine for a case, so any `sharedctx serve` replica can resume it:
--   step         the next step to run (`sharedctx.agents.primary.Step`); 'closed' when done
--   state        what the finished steps learned (triage, answers, correlation, ...), as JSON
--   resolved     a `resolved` alert that arrived for the case, waiting for the owner to verify (JSON)
--   owner        the replica holding the lease; lease_until is when the lease expires (epoch seconds)
--   lease_token  fencing token, bumped by every take-over: a step's entries and its checkpoint commit
--                in one transaction that names the token, so a replica that lost the lease records nothing
CREATE TABLE investigations (
    case_id     TEXT PRIMARY KEY REFERENCES cases(id),
    step        TEXT NOT NULL,
    state       TEXT NOT NULL,
    resolved    TEXT,
    owner       TEXT,
    lease_until REAL,
    lease_token INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
-- what the survivors' scan reads: open investigations whose lease is free or expired
CREATE INDEX investigations_open ON investigations (lease_until) WHERE step <> 'closed';
