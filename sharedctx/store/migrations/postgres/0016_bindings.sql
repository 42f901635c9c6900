-- Indexed lookups (issue 13). `cases.bindings` (JSONB) stays the record of each case's threads; these
-- tables are its index, so a webhook, a poll or `find_case` finds a case by a thread or a label without
-- reading every case. `set_binding` writes `bindings` in the same transaction as the JSON, `open_case`
-- writes `case_labels` with the case; this migration backfills both from what is already stored.

-- One row per part of a bound thread that names it: its id, number (ServiceNow's INC…), key (Jira) and
-- url. `scope` is the repo / channel / room the thread lives in, '' when the backend has none.
-- Derived data: the rows go with their case (ON DELETE CASCADE), though the API never deletes one.
CREATE TABLE bindings (
    case_id TEXT NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    backend TEXT NOT NULL,
    part    TEXT NOT NULL,
    value   TEXT NOT NULL,
    scope   TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (case_id, backend, part)
);
-- a webhook names (backend, thread key); find_case names a thread key alone: both lead with the value
CREATE INDEX bindings_by_value ON bindings (value, backend);

-- One row per label of a case (labels are set when the case opens and never change).
CREATE TABLE case_labels (
    case_id TEXT NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    name    TEXT NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (case_id, name)
);
CREATE INDEX case_labels_by_value ON case_labels (value);

-- the poller reads live cases (open, mitigated, or resolved since a moment) by status, never all cases
CREATE INDEX cases_by_status_resolved ON cases (status, resolved_at);
-- find_case by the fingerprint of a resolved case too (cases_open_fingerprint covers open ones only)
CREATE INDEX cases_by_fingerprint ON cases (fingerprint) WHERE fingerprint IS NOT NULL;

-- backfill: every scalar id / number / key / url of every bound thread, and every label, up to 512
-- characters (MAX_INDEXED_CHARS in store/sql/bindings.py: longer values are not indexed)
INSERT INTO bindings (case_id, backend, part, value, scope)
SELECT c.id, b.key, p.key, p.value,
       COALESCE(CASE WHEN jsonb_typeof(b.value -> 'repo') = 'string' THEN b.value ->> 'repo' END,
                CASE WHEN jsonb_typeof(b.value -> 'channel') = 'string' THEN b.value ->> 'channel' END,
                CASE WHEN jsonb_typeof(b.value -> 'room') = 'string' THEN b.value ->> 'room' END, '')
FROM cases c
CROSS JOIN LATERAL jsonb_each(c.bindings) b
CROSS JOIN LATERAL jsonb_each_text(CASE WHEN jsonb_typeof(b.value) = 'object' THEN b.value ELSE '{}' END) p
WHERE p.key IN ('id', 'number', 'key', 'url')
  AND jsonb_typeof(b.value -> p.key) IN ('string', 'number') AND length(p.value) BETWEEN 1 AND 512;

INSERT INTO case_labels (case_id, name, value)
SELECT c.id, l.key, l.value
FROM cases c
CROSS JOIN LATERAL jsonb_each_text(CASE WHEN jsonb_typeof(c.labels) = 'object' THEN c.labels ELSE '{}' END) l
WHERE jsonb_typeof(c.labels -> l.key) IN ('string', 'number') AND length(l.value) BETWEEN 1 AND 512;
