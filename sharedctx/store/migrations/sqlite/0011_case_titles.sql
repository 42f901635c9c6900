-- Case titles in the full-text index, so history search retrieves a case by its title alone (entries
-- are indexed by entries_fts). Titles are never updated; the index is maintained with the insert.
CREATE VIRTUAL TABLE IF NOT EXISTS cases_fts USING fts5 (
    title,
    content = 'cases', content_rowid = 'rowid',
    tokenize = 'porter unicode61'
);
CREATE TRIGGER IF NOT EXISTS cases_fts_insert AFTER INSERT ON cases BEGIN
    INSERT INTO cases_fts (rowid, title) VALUES (new.rowid, new.title);
END;
INSERT INTO cases_fts (cases_fts) VALUES ('rebuild');
