-- History search at 1M entries (issue 12): case titles get a stored tsvector (maintained with the insert,
-- like entries.tsv), so ranking a title reads it instead of running to_tsvector on every matched title at
-- query time, and the count-then-rank of a title search is one statement over one GIN index.
-- Adding a STORED generated column rewrites `cases` once (about 1 s per 100k cases).
ALTER TABLE cases ADD COLUMN IF NOT EXISTS title_tsv tsvector
    GENERATED ALWAYS AS (to_tsvector('english', title)) STORED;
DROP INDEX IF EXISTS cases_title_tsv;
CREATE INDEX cases_title_tsv ON cases USING GIN (title_tsv);
-- planner statistics for the new column now: without them a title search may plan a sequential scan
ANALYZE cases;
