-- Case titles in the full-text index, so history search retrieves a case by its title alone.
CREATE INDEX IF NOT EXISTS cases_title_tsv ON cases USING GIN (to_tsvector('english', title));
