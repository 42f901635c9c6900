-- Human actions already taken into the journal, by (scope, key): a comment, reaction or status change
-- read back from a backend (scope = backend name, key = the service's id for the action), or a webhook
-- delivery (scope = "webhook:<backend>", key = the delivery id). Claiming the key before recording is
-- what makes "the same action by webhook and by polling" count once, across processes.
CREATE TABLE human_actions (
    scope    TEXT NOT NULL,
    key      TEXT NOT NULL,
    case_id  TEXT,
    entry_id TEXT,
    seen_at  TEXT NOT NULL,
    PRIMARY KEY (scope, key)
);
