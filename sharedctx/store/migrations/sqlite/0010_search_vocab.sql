-- The full-text index's own vocabulary (one row per indexed term, with how many entries hold it):
-- history search corrects a typed word that the index does not contain to the nearest term it does.
-- A read-only view over entries_fts: nothing to maintain on the write path.
CREATE VIRTUAL TABLE IF NOT EXISTS entries_fts_vocab USING fts5vocab (entries_fts, 'row');
