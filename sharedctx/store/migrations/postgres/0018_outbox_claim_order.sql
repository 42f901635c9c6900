-- Claims read due rows in claim order (next_attempt_at, id) and stop at LIMIT (see CLAIMABLE in
-- store/sql/outbox.py). This index replaces `outbox_due`, which it covers, so an append still
-- maintains the same number of outbox indexes.
CREATE INDEX outbox_claim ON outbox (backend, next_attempt_at, id) WHERE state = 'pending';
DROP INDEX outbox_due;
