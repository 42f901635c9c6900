-- FTS5 merges its index segments inside whichever write crosses its work counter (every 64 leaf pages): on
-- one thread, 1 record() in 64 paid about 1 ms more, which was the p99. The merging is done between writes
-- instead (`SQLiteStore._merge_index`, from the checkpoint thread). FTS5 still merges inside a write when a
-- level reaches 16 segments (`crisismerge`), so the index stays bounded even if that falls behind.
INSERT INTO entries_fts (entries_fts, rank) VALUES ('automerge', 0);
