-- Rate budgets shared by every process on this store (docs/decisions.md "rate limits: ..."), so N
-- workers together respect a service's limit instead of N times it. See sharedctx/store/sql/limits.py.
--   key         "<backend type>:<what is limited>:<hash of target and credential>"; never a secret
--   held_until  epoch seconds: a service said "slow down" (Retry-After, secondary limit) until then
CREATE TABLE IF NOT EXISTS rate_budgets (
    key         TEXT PRIMARY KEY,
    held_until  DOUBLE PRECISION NOT NULL DEFAULT 0,
    hold_reason TEXT
);

-- The sliding-window log: one row per request admitted under `key`, at its admission time (epoch
-- seconds). Rows older than the longest window are deleted by the next admission.
CREATE TABLE IF NOT EXISTS rate_slots (
    key TEXT NOT NULL,
    at  DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS rate_slots_key_at ON rate_slots (key, at);
