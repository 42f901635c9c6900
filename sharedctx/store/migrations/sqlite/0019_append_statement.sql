-- One statement per group-committed batch of appends (docs/decisions.md "SQLite writes: one statement per
-- batch"). `INSERT INTO entry_appends VALUES (...), (...)` runs as its own implicit transaction: the write
-- lock, every row, and the COMMIT inside one call into SQLite, during which the writing thread holds no GIL.
-- Each row is an entry already placed on its case's chain by the writer (from a cached head), plus:
--   backends          JSON array of backend names: one outbox row each, in that order
--   queued_at         epoch seconds for the outbox rows' next_attempt_at and created_at
--   head_*            the case head the entry was placed on (status and resolved_at; seq and hash are
--                     the entry's seq - 1 and prev_hash)
--   new_*             the case's status and resolved_at after it (`head_after` in store/sql/common.py)
-- The guard: an entry placed on anything but the case's current head aborts the whole statement (nothing is
-- written), and the writer places the batch again from heads read inside BEGIN IMMEDIATE. So the cache can
-- only cost a retry, never fork a chain, whatever else wrote the case (another process, another path).
CREATE VIEW entry_appends AS
SELECT id, case_id, seq, ts, author_kind, author_name, kind, title, body, evidence, ref, trace_id, attrs,
       prev_hash, hash, evidence_text,
       '[]' AS backends, 0.0 AS queued_at, '' AS head_status, NULL AS head_resolved_at,
       '' AS new_status, NULL AS new_resolved_at
FROM entries WHERE 0;

CREATE TRIGGER entry_appends_insert INSTEAD OF INSERT ON entry_appends BEGIN
    SELECT RAISE(ABORT, 'sharedctx: stale case head') WHERE NOT EXISTS (
        SELECT 1 FROM cases WHERE id = NEW.case_id AND last_seq = NEW.seq - 1 AND last_hash = NEW.prev_hash
            AND status = NEW.head_status AND resolved_at IS NEW.head_resolved_at);
    INSERT INTO entries (id, case_id, seq, ts, author_kind, author_name, kind, title, body, evidence, ref,
                         trace_id, attrs, prev_hash, hash, evidence_text)
    VALUES (NEW.id, NEW.case_id, NEW.seq, NEW.ts, NEW.author_kind, NEW.author_name, NEW.kind, NEW.title,
            NEW.body, NEW.evidence, NEW.ref, NEW.trace_id, NEW.attrs, NEW.prev_hash, NEW.hash, NEW.evidence_text);
    INSERT INTO outbox (entry_id, case_id, seq, backend, next_attempt_at, created_at)
    SELECT NEW.id, NEW.case_id, NEW.seq, value, NEW.queued_at, NEW.queued_at FROM json_each(NEW.backends)
    ORDER BY key;
    UPDATE cases SET last_seq = NEW.seq, last_hash = NEW.hash, updated_at = NEW.ts WHERE id = NEW.case_id;
    -- a separate UPDATE, only when they change: setting status (even to itself) rewrites the three indexes on
    -- it, three of the ~20 pages an append writes
    UPDATE cases SET status = NEW.new_status, resolved_at = NEW.new_resolved_at
    WHERE id = NEW.case_id AND (status IS NOT NEW.new_status OR resolved_at IS NOT NEW.new_resolved_at);
END;
