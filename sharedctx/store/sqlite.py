"""The embedded default store: one SQLite file in WAL mode, FTS5 for search.

One connection per store object, guarded by a lock: SQLite allows one writer at a time anyway, and
a single connection keeps `record()` at a few tens of microseconds. Several *processes* may share
the file; `BEGIN IMMEDIATE` plus a busy timeout serialises their appends, which is what keeps the
per-case sequence gap-free and the chain unforked.

Durability: `synchronous=NORMAL` in WAL mode survives a killed process (the committed transaction
is in the OS's page cache and the WAL); set `SHAREDCTX_SQLITE_SYNC=FULL` to survive power loss too.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import InvalidEntry, StoreError
from ..model import CaseStatus, Entry, EntryDraft, format_ts, new_id, utcnow
from .base import Candidate, CandidateQuery, SearchFilters, SearchRow, literal_terms, read_migrations
from .sql import (
    CANDIDATE_CASE_COLS,
    ENTRY_COLS,
    PreparedAppend,
    SQLStore,
    candidate_conditions,
    filter_clauses,
    head_after,
    row_to_candidate,
    row_to_entry,
    title_query,
)
from .sql.common import placed_entry_params


def fts_query(text: str) -> str:
    """Quote every word so FTS5 operators in user or agent text are literal; OR them for recall.

    `"exact phrase"` in the input stays a phrase. BM25 still ranks entries matching more words first.
    """
    parts: list[str] = []
    for i, chunk in enumerate(text.split('"')):
        words = literal_terms(chunk)
        if i % 2 == 1 and words:
            parts.append('"' + " ".join(words) + '"')
        else:
            parts.extend(f'"{w}"' for w in words)
    return " OR ".join(parts[:32])


def fts_expr(match: list[list[list[str]]]) -> str:
    """An FTS5 query from a `CandidateQuery.match`: every word quoted, so nothing in it is an operator."""

    def alt(words: str) -> str:
        return '"' + " ".join(literal_terms(words, 64)) + '"' if literal_terms(words, 64) else ""

    clauses = []
    for clause in match:
        groups = []
        for group in clause:
            alts = [a for a in (alt(w) for w in group) if a]
            if alts:
                groups.append(alts[0] if len(alts) == 1 else "(" + " OR ".join(alts) + ")")
        if groups:
            clauses.append(groups[0] if len(groups) == 1 else "(" + " AND ".join(groups) + ")")
    return " OR ".join(clauses)


class SQLiteStore(SQLStore):
    """SQLite implementation of `Store`."""

    def __init__(self, path: str | Path) -> None:
        self.url = str(path)
        self._ident: tuple[int, int] | None = None
        self._wal_ident: tuple[int, int] | None = None
        self._closed = threading.Event()
        self._lock = threading.RLock()
        # group commit (see `append`): callers waiting to be written, and whether one of them is writing
        group_lock = threading.Lock()
        self._group = threading.Condition(group_lock)  # followers wait here for their batch to commit
        self._queue: list[_Pending] = []
        self._leading = False
        self._preparing = 0  # callers between entering `append` and joining the queue
        self._last_batch = 0  # how many appends the last batch had: several means several callers at once
        self._arrived = threading.Condition(group_lock)  # a gathering leader waits here for them
        memory = self.url == ":memory:"
        marker = None if memory else journal_marker(self.url)
        existed = not memory and os.path.exists(self.url)
        if marker is not None and not existed:
            refuse_missing_journal(self.url, marker)
        try:
            if not memory:
                Path(self.url).parent.mkdir(parents=True, exist_ok=True)
            # An existing journal is opened without the create flag: if it vanishes between the look and
            # the open, that is an error, not a new empty file.
            target, uri = (_uri(self.url, "rw"), True) if existed else (self.url, False)
            self._conn = sqlite3.connect(target, uri=uri, isolation_level=None, check_same_thread=False, timeout=30.0)
            c = self._conn
            c.execute("PRAGMA journal_mode=WAL")
            c.execute(f"PRAGMA synchronous={os.environ.get('SHAREDCTX_SQLITE_SYNC', 'NORMAL')}")
            c.execute("PRAGMA busy_timeout=30000")
            c.execute("PRAGMA foreign_keys=ON")
            self.migrate()
            self.journal_id = self._journal_id()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(_explain(self.url, "cannot open the SQLite store", exc)) from exc
        if not memory:
            st = os.stat(self.url)
            self._ident = (st.st_dev, st.st_ino)
            with contextlib.suppress(OSError):  # exists from the first transaction until the last connection closes
                wal = os.stat(self.url + "-wal")
                self._wal_ident = (wal.st_dev, wal.st_ino)
            claim_marker(self.url, self.journal_id)
            # Checkpoints copy the WAL back into the database and fsync it: milliseconds on a busy
            # disk. Left to SQLite, they run inside whichever COMMIT crosses the threshold — that
            # is, inside a `record()`. A background thread takes them off the agents' path.
            c.execute("PRAGMA wal_autocheckpoint=0")
            threading.Thread(target=self._checkpoints, name="sharedctx-checkpoint", daemon=True).start()

    def _journal_id(self) -> str:
        """This journal's identity, minted once and kept inside the file (see `journal_marker`)."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM journal_meta WHERE key='journal_id'").fetchone()
            if row is not None:  # the usual case: no new id minted (that imports ulid, ~10 ms of a CLI command)
                return str(row[0])
            self._conn.execute("INSERT OR IGNORE INTO journal_meta (key, value) VALUES ('journal_id', ?)",
                               (new_id(),))
            return str(self._conn.execute("SELECT value FROM journal_meta WHERE key='journal_id'").fetchone()[0])

    def _still_ours(self) -> None:
        """Refuse to write when the file at our path is no longer the file we have open.

        SQLite keeps writing to an unlinked inode without complaint, so a deleted journal would go on
        acknowledging entries that no other process (and no restart) will ever see. One `stat` per write
        transaction (microseconds) is the price of saying so at the first write instead."""
        if self._ident is None:
            return
        try:
            st = os.stat(self.url)
        except FileNotFoundError:
            raise StoreError(
                f"the journal file {self.url} was deleted while this process had it open; nothing more is "
                "recorded, because it would be lost. Restore the file (or its backup) and restart this process"
            ) from None
        except OSError as exc:
            raise StoreError(_explain(self.url, "cannot check the journal file", exc)) from exc
        if (st.st_dev, st.st_ino) != self._ident:
            raise StoreError(
                f"the journal file {self.url} was replaced by another file while this process had it open; "
                "nothing more is recorded here. Restart this process to use the file now at that path"
            )
        self._wal_still_ours()

    def _wal_still_ours(self) -> None:
        """The same for the write-ahead log. Acknowledged entries live only in `<journal>-wal` until a
        checkpoint copies them into the journal; with that file deleted (`rm journal.db-wal`, a cleanup
        script) SQLite goes on committing to the unlinked inode, other processes never see those entries and
        a crash loses them. Our connection still has the old log open: checkpoint it into the journal (which
        saves what was acknowledged) and refuse further writes."""
        if self._wal_ident is None:
            return
        wal = self.url + "-wal"
        try:
            st = os.stat(wal)
            same = (st.st_dev, st.st_ino) == self._wal_ident
        except FileNotFoundError:
            same = False
        except OSError as exc:
            raise StoreError(_explain(self.url, "cannot check the journal's write-ahead log", exc)) from exc
        if same:
            return
        try:
            self._conn.execute("PRAGMA wal_checkpoint(FULL)")
            saved = "what was acknowledged was copied into the journal"
        except sqlite3.Error as exc:
            saved = f"copying what was acknowledged into the journal failed ({exc})"
        raise StoreError(
            f"the journal's write-ahead log {wal} was deleted or replaced while this process had it open; "
            f"{saved}, and nothing more is recorded here, because other processes cannot see it. "
            "Stop every sharedctx process on this journal and restart"
        )

    CHECKPOINT_EVERY = 1.0  # seconds between passive checkpoints
    WAL_RESTART_PAGES = 16_384  # ~64 MiB: past this, briefly block writers so the WAL can restart

    def _checkpoints(self) -> None:
        try:
            # A short busy timeout: a checkpoint that would have to wait simply tries again next round,
            # instead of holding the write lock while other connections wait behind it.
            # mode=rw: never create a file. After the journal was deleted, a checkpointer that re-created
            # it would leave an empty journal for the next process to trust.
            conn = sqlite3.connect(_uri(self.url, "rw"), uri=True, isolation_level=None, check_same_thread=False,
                                   timeout=0.05)
        except sqlite3.Error:
            return
        with contextlib.closing(conn):
            while not self._closed.wait(self.CHECKPOINT_EVERY):
                try:
                    _, log, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if log > self.WAL_RESTART_PAGES:  # constant writing never lets a passive one finish
                        conn.execute("PRAGMA wal_checkpoint(RESTART)")
                except sqlite3.Error:
                    continue  # busy or closing; the next round tries again

    # -- plumbing ---------------------------------------------------------------------------------
    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._still_ours()
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(_explain(self.url, "cannot write to the journal", exc)) from exc
            try:
                yield self._conn
            except sqlite3.Error as exc:  # disk full, read-only, I/O error: say which, keep nothing half-done
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise StoreError(_explain(self.url, "the journal refused a write", exc)) from exc
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise
            else:
                try:
                    self._conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                    raise StoreError(_explain(self.url, "could not commit to the journal", exc)) from exc

    def _q(self, sql: str, params: Any = ()) -> list[Any]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def close(self) -> None:
        self._closed.set()  # the last connection to close checkpoints the WAL by itself
        with self._lock:
            self._conn.close()

    def schema_version(self) -> int:
        row = self._q("SELECT max(version) FROM schema_version")[0]
        return int(row[0] or 0)

    def applied_migrations(self) -> set[int]:
        return {int(r[0]) for r in self._q("SELECT version FROM schema_version")}

    def migrate(self) -> None:
        """Apply every migration not yet applied, each in its own transaction."""
        with self._lock:
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            for version, name, sql in read_migrations("sqlite"):
                if version in self.applied_migrations():  # by set, not max: branches may land out of order
                    continue
                try:
                    self._conn.executescript(
                        f"BEGIN IMMEDIATE;\n{sql}\nINSERT INTO schema_version VALUES "
                        f"({version}, '{name}', '{format_ts(utcnow())}');\nCOMMIT;"
                    )
                except sqlite3.Error as exc:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    if version in self.applied_migrations():  # another process migrated first
                        continue
                    raise StoreError(f"migration {version:04d}_{name} failed: {exc}") from exc

    def search(self, text: str, filters: SearchFilters | None = None, limit: int = 20) -> list[SearchRow]:
        f = filters or SearchFilters()
        cols = ", ".join(f"e.{c.strip()}" for c in ENTRY_COLS.split(","))
        where: list[str] = []
        params: list[Any] = []
        query = fts_query(text) if text.strip() else ""
        if query:
            sql = (
                f"SELECT {cols}, c.service, c.title, c.status, bm25(entries_fts, 4.0, 1.0, 1.0) AS score, "
                "snippet(entries_fts, -1, '[', ']', '…', 16) FROM entries_fts "
                "JOIN entries e ON e.rowid = entries_fts.rowid JOIN cases c ON c.id = e.case_id "
            )
            where.append("entries_fts MATCH ?")
            params.append(query)
            order = "score"
        elif text.strip():
            raise InvalidEntry("the search text has no searchable words")
        else:
            sql = (
                f"SELECT {cols}, c.service, c.title, c.status, 0.0 AS score, substr(e.body, 1, 160) "
                "FROM entries e JOIN cases c ON c.id = e.case_id "
            )
            order = "e.rowid DESC"
        conds, values = filter_clauses(f)
        where.extend(conds)
        params.extend(values)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {order} LIMIT ?"
        params.append(limit)
        try:
            rows = self._q(sql, params)
        except sqlite3.OperationalError as exc:
            raise StoreError(f"search failed: {exc}") from exc
        return [
            SearchRow(
                entry=row_to_entry(r[:15]),
                service=r[15],
                case_title=r[16],
                case_status=r[17],
                score=-float(r[18]),
                snippet=r[19] or "",
            )
            for r in rows
        ]

    def rebuild_index(self) -> int:
        """Rebuild the full-text index from the journal (for an index that was lost or corrupted)."""
        with self._tx() as c:
            c.execute("INSERT INTO entries_fts(entries_fts) VALUES ('rebuild')")
            c.execute("INSERT INTO cases_fts(cases_fts) VALUES ('rebuild')")
            return int(c.execute("SELECT count(*) FROM entries").fetchone()[0])


    # -- history search (sharedctx.search) ------------------------------------------------------
    def count_matches(self, query: CandidateQuery, cap: int) -> int:
        """How many entries the full-text part of `query` matches, counting no further than `cap`."""
        expr = fts_expr(query.match)
        if not expr:
            return 0
        try:
            r = self._q("SELECT count(*) FROM (SELECT 1 FROM entries_fts WHERE entries_fts MATCH ? LIMIT ?)",
                        (expr, cap))
        except sqlite3.OperationalError as exc:
            raise StoreError(f"search failed: {exc}") from exc
        return int(r[0][0])

    def search_case_titles(self, query: CandidateQuery, limit: int = 50, cap: int = 2000) -> list[Candidate] | None:
        """Cases whose title matches `query.match` (BM25), each as its first entry; None when more than `cap`
        titles match (ranking them all would cost more than the search's budget)."""
        expr = fts_expr(query.match)
        if not expr:
            return []
        try:
            n = self._q("SELECT count(*) FROM (SELECT 1 FROM cases_fts WHERE cases_fts MATCH ? LIMIT ?)",
                        (expr, cap + 1))
            if int(n[0][0]) > cap:
                return None
            cols = ", ".join(f"e.{c.strip()}" for c in ENTRY_COLS.split(",")) + ", e.rowid, " + CANDIDATE_CASE_COLS
            where, params = candidate_conditions("sqlite", title_query(query))
            rows = self._q(f"SELECT {cols}, -bm25(cases_fts) AS s FROM cases_fts "
                           "JOIN cases c ON c.rowid = cases_fts.rowid "
                           "JOIN entries e ON e.case_id = c.id AND e.seq = 1 WHERE cases_fts MATCH ?"
                           + "".join(" AND " + w for w in where) + " ORDER BY s DESC LIMIT ?", [expr, *params, limit])
        except sqlite3.OperationalError as exc:
            raise StoreError(f"search failed: {exc}") from exc
        return [row_to_candidate(r) for r in rows]

    def index_terms(self, near: str, limit: int = 400) -> list[tuple[str, int]]:
        """Index terms (porter stems) sharing `near`'s first two letters, with how many entries hold each."""
        head = near[:2].lower()
        if len(head) < 2:
            return []
        try:
            rows = self._q("SELECT term, doc FROM entries_fts_vocab WHERE term >= ? AND term < ? LIMIT ?",
                           (head, head[0] + chr(ord(head[1]) + 1), limit * 10))
        except sqlite3.OperationalError as exc:
            raise StoreError(f"index vocabulary unavailable: {exc}") from exc
        return [(str(t), int(d)) for t, d in rows]

    def search_candidates(self, query: CandidateQuery, limit: int = 200) -> list[Candidate]:
        """The best `limit` entries by BM25 (title weighted 4x) that pass the filters; newest first without text."""
        cols = ", ".join(f"e.{c.strip()}" for c in ENTRY_COLS.split(",")) + ", e.rowid, " + CANDIDATE_CASE_COLS
        expr = fts_expr(query.match)
        where, params = candidate_conditions("sqlite", query.model_copy(update={"min_rowid": None}))
        if expr and not where:
            # rank inside the index first, then join only the winners
            sql = (f"SELECT {cols}, -f.s FROM (SELECT rowid, bm25(entries_fts, 4.0, 1.0, 1.0) AS s FROM entries_fts "
                   "WHERE entries_fts MATCH ?" + (" AND rowid >= ?" if query.min_rowid is not None else "")
                   + " ORDER BY s LIMIT ?) f JOIN entries e ON e.rowid = f.rowid JOIN cases c ON c.id = e.case_id "
                   "ORDER BY f.s")
            params = [expr, *([query.min_rowid] if query.min_rowid is not None else []), limit]
        elif expr:
            if query.min_rowid is not None:
                where.append("entries_fts.rowid >= ?")
                params.append(query.min_rowid)
            sql = (f"SELECT {cols}, -bm25(entries_fts, 4.0, 1.0, 1.0) AS s FROM entries_fts "
                   "JOIN entries e ON e.rowid = entries_fts.rowid JOIN cases c ON c.id = e.case_id "
                   "WHERE entries_fts MATCH ? AND " + " AND ".join(where) + " ORDER BY s DESC LIMIT ?")
            params = [expr, *params, limit]
        else:
            if query.min_rowid is not None:
                where.append("e.rowid >= ?")
                params.append(query.min_rowid)
            sql = (f"SELECT {cols}, 0.0 FROM entries e JOIN cases c ON c.id = e.case_id"
                   + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY e.rowid DESC LIMIT ?")
            params.append(limit)
        try:
            rows = self._q(sql, params)
        except sqlite3.OperationalError as exc:
            raise StoreError(f"search failed: {exc}") from exc
        return [row_to_candidate(r) for r in rows]

    def open_case(self, **kwargs: Any) -> tuple[Any, bool]:
        """`SQLStore.open_case` (with its first entry), a database failure named as a `StoreError`."""
        try:
            return super().open_case(**kwargs)
        except sqlite3.Error as exc:
            raise StoreError(f"could not open the case: {exc}; nothing was recorded") from exc

    # -- group commit ---------------------------------------------------------------------------
    GATHER_WAIT = 0.001  # seconds a leader waits at most for callers still preparing (see `append`)

    def append(self, draft: EntryDraft, backends: Sequence[str], status: CaseStatus | None = None) -> Entry:
        """Append with group commit: appends that arrive while another is being written are written
        together, in ONE transaction with one COMMIT, by whichever caller is first in line (the leader).

        Why: SQLite has one writer at a time, and most of an append's time in SQLite is the transaction's
        fixed cost (taking the write lock, writing the WAL frames at COMMIT). One commit for several appends
        pays that once; and the callers' own work — validation, redaction, serialisation, most of the hash
        (`_prepare_append`) — runs on their threads before they queue, while the leader is inside SQLite
        with the GIL released. So several threads recording at once are faster than one, not slower.

        What does not change: `append` returns only after the COMMIT that holds its entry (durable when it
        returns); each case's sequence and chain are read and extended inside that transaction under
        `BEGIN IMMEDIATE`, so other processes writing the same file still serialise with us; `_tx`'s file
        identity checks run for every batch. Each append of a batch runs inside its own SAVEPOINT, so one
        that fails (an unknown case, a constraint) is rolled back alone and fails only its own caller; a
        failure of the transaction itself (BEGIN, COMMIT, the journal file replaced) fails every caller
        of the batch, and none of them was acknowledged. A lone append (the common case) has no savepoint
        and no hand-off: its caller is the leader of a batch of one.
        """
        with self._group:
            self._preparing += 1
        try:
            prepared = self._prepare_append(draft, backends, status)
        except BaseException:
            with self._group:
                self._preparing -= 1
                self._arrived.notify()
            raise
        me = _Pending(prepared)
        with self._group:
            self._preparing -= 1
            self._queue.append(me)
            self._arrived.notify()
            while self._leading and not me.done:
                self._group.wait()
            if me.done:  # a leader wrote it (or failed it) while we waited
                return me.result()
            self._leading = True
        batch: list[_Pending] = []
        try:
            with self._group:
                if self._last_batch > 1 or self._preparing:
                    # Other callers are about to append (the last batch had several, or some are preparing
                    # right now): give them a moment to join this commit, as PostgreSQL's commit_delay does
                    # when commit_siblings are active. Waiting releases the GIL, which is what they need to
                    # get here. A lone caller never waits: its last batch had one append, nobody is preparing.
                    want = max(self._last_batch, 2)
                    self._arrived.wait_for(lambda: len(self._queue) >= want, timeout=self.GATHER_WAIT)
                self._last_batch = len(self._queue)
                batch, self._queue = self._queue, []
            self._write_batch(batch)
        finally:
            with self._group:
                for p in batch:
                    if p.entry is None and p.error is None:  # _write_batch was interrupted (KeyboardInterrupt)
                        p.error = StoreError("the write was interrupted before it committed; nothing was recorded")
                    p.done = True
                self._leading = False  # always: a leader that dies here must not leave everyone waiting
                self._group.notify_all()
        return me.result()

    def _write_batch(self, batch: list[_Pending]) -> None:
        """Write `batch` in one transaction; set each one's entry (only once committed) or error (see `append`)."""
        written: list[tuple[_Pending, Entry]] = []
        try:
            with self._tx() as c:
                together = None if len(batch) == 1 else self._write_together(c, [p.prepared for p in batch])
                if len(batch) == 1:
                    written.append((batch[0], self._write_append(c, batch[0].prepared)))
                elif together is not None:
                    written.extend(zip(batch, together, strict=True))
                else:  # one append at a time, so that a bad one fails alone (see `_write_together`)
                    for p in batch:
                        c.execute("SAVEPOINT sharedctx_append")
                        try:
                            written.append((p, self._write_append(c, p.prepared)))
                        except Exception as exc:
                            # Undo this append only. If even that fails, the transaction is broken:
                            # the exception leaves the loop and fails the whole batch below.
                            c.execute("ROLLBACK TO sharedctx_append")
                            p.error = _append_error(self.url, exc)
                        c.execute("RELEASE sharedctx_append")
        except Exception as exc:
            err = _append_error(self.url, exc)
            for i, p in enumerate(batch):
                if p.error is None:  # nothing of this batch was committed: nobody is told it was recorded
                    p.error = err if i == 0 else _copy_error(err)
            return
        for p, entry in written:  # committed: now, and only now, each caller gets its entry
            p.entry = entry

    BATCH_ROWS = 50  # appends per multi-row INSERT: 17 values each stays under SQLite's oldest limit (999)

    def _write_together(self, c: sqlite3.Connection, prepared: list[PreparedAppend]) -> list[Entry] | None:
        """Write several prepared appends in a handful of statements, whatever their number: the case heads in
        one SELECT, the entries in one multi-row INSERT, the outbox rows in another, one UPDATE per case. None,
        with nothing written, when any of it fails (an unknown case, a constraint, a trigger): the caller then
        writes them one by one, each in its own SAVEPOINT, which names the bad append and fails only its caller.

        Why: each statement is a round trip through the sqlite3 module that drops and retakes the GIL. With
        five per append (plus a SAVEPOINT and a RELEASE each) the leader of a batch spent more time handing the
        GIL around, and running the module's Python, than SQLite spent writing; several threads recording at
        once were slower per entry than one. The rows and the chain are exactly what `_write_append` writes one
        by one: each append is placed on its case's head as left by the appends before it in the batch."""
        c.execute("SAVEPOINT sharedctx_batch")
        try:
            entries = self._write_many(c, prepared)
        except Exception:
            entries = None
        if entries is None:
            c.execute("ROLLBACK TO sharedctx_batch")
        c.execute("RELEASE sharedctx_batch")
        return entries

    def _write_many(self, c: sqlite3.Connection, prepared: list[PreparedAppend]) -> list[Entry] | None:
        ids = list(dict.fromkeys(p.entry.draft.case_id for p in prepared))
        heads: dict[str, list[Any]] = {}
        for i in range(0, len(ids), self.BATCH_ROWS):
            chunk = ids[i : i + self.BATCH_ROWS]
            for r in c.execute("SELECT id, last_seq, last_hash, status, resolved_at, updated_at FROM cases "
                               f"WHERE id IN ({','.join('?' * len(chunk))})", chunk):
                heads[r[0]] = list(r[1:])
        if len(heads) != len(ids):
            return None  # an unknown case: `_write_append` says which, to its caller only
        entries: list[Entry] = []
        rows: list[Any] = []
        outbox: list[Any] = []
        now_epoch = time.time()
        for p in prepared:
            head = heads[p.entry.draft.case_id]  # [last_seq, last_hash, status, resolved_at, updated_at]
            entry = p.entry.place(head[0] + 1, head[1])
            params = placed_entry_params(entry, p.params, p.entry.ts_text)
            rows.append([params[col] for col in _INSERT_COLS])
            outbox.extend((entry.id, entry.case_id, entry.seq, b, now_epoch, now_epoch) for b in p.backends)
            ts = params["ts"]
            status, resolved_at = head_after(head[2], head[3], p.status, ts)
            head[:] = [entry.seq, entry.hash, status, resolved_at, ts]
            entries.append(entry)
        for i in range(0, len(rows), self.BATCH_ROWS):
            chunk = rows[i : i + self.BATCH_ROWS]
            c.execute(_INSERT_ENTRIES + ",".join([_ENTRY_ROW] * len(chunk)), [v for row in chunk for v in row])
        for i in range(0, len(outbox), 3 * self.BATCH_ROWS):  # 6 values a row
            chunk = outbox[i : i + 3 * self.BATCH_ROWS]
            c.execute(_INSERT_OUTBOX + ",".join(["(?,?,?,?,?,?)"] * len(chunk)), [v for row in chunk for v in row])
        c.executemany("UPDATE cases SET last_seq=?, last_hash=?, updated_at=?, status=?, resolved_at=? WHERE id=?",
                      [(h[0], h[1], h[4], h[2], h[3], case_id) for case_id, h in heads.items()])
        return entries


_INSERT_COLS = [col.strip() for col in ENTRY_COLS.split(",")] + ["evidence_text"]
_INSERT_ENTRIES = f"INSERT INTO entries ({', '.join(_INSERT_COLS)}) VALUES "
_ENTRY_ROW = "(" + ",".join("?" * len(_INSERT_COLS)) + ")"
_INSERT_OUTBOX = "INSERT INTO outbox (entry_id, case_id, seq, backend, next_attempt_at, created_at) VALUES "


class _Pending:
    """One caller's append waiting in the group-commit queue: its prepared append, then its outcome."""

    __slots__ = ("done", "entry", "error", "prepared")

    def __init__(self, prepared: PreparedAppend) -> None:
        self.prepared = prepared
        self.entry: Entry | None = None
        self.error: BaseException | None = None
        self.done = False

    def result(self) -> Entry:
        if self.error is not None:
            raise self.error
        assert self.entry is not None
        return self.entry


def _append_error(path: str, exc: BaseException) -> BaseException:
    """What the caller of a failed append sees: a database failure named as a `StoreError`."""
    if isinstance(exc, sqlite3.Error):
        err = StoreError(_explain(path, "could not record the entry", exc))
        err.__cause__ = exc
        return err
    return exc


def _copy_error(exc: BaseException) -> BaseException:
    """The same failure as a separate exception object, so that threads raising it do not share one traceback."""
    try:
        copy = type(exc)(*exc.args)
    except Exception:
        copy = StoreError(str(exc))
    copy.__cause__ = exc.__cause__
    return copy


def _uri(path: str, mode: str) -> str:
    return f"file:{urllib.parse.quote(os.path.abspath(path))}?mode={mode}"


def _read_only(path: str) -> bool:
    """Is the journal (or the folder it would be created in) on a read-only mount or not writable?"""
    if path == ":memory:":
        return False
    p = Path(path)
    where = p if p.exists() else p.parent
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        if os.statvfs(where).f_flag & os.ST_RDONLY:
            return True
    except OSError:
        return False
    return not os.access(where, os.W_OK) or (p.exists() and not os.access(p.parent, os.W_OK))


def _explain(path: str, what: str, exc: BaseException) -> str:
    """A store failure in words an operator can act on (read-only, full disk, missing folder)."""
    text = str(exc)
    low = text.lower()
    if "readonly" in low or "read-only" in low or isinstance(exc, PermissionError) or _read_only(path):
        hint = "the journal or its folder is read-only: check the permissions and the mount of"
    elif "disk is full" in low or "no space" in low:
        hint = "the disk is full: free space on the filesystem of"
    elif "unable to open" in low:
        hint = "the file cannot be opened: check that the folder exists and is writable for"
    else:
        hint = "at"
    return f"{what}: {text} ({hint} {path}); nothing was recorded"


# -- the journal marker ---------------------------------------------------------------------------
# A journal that vanished must not silently come back empty. The first open of a journal writes a small
# marker beside it (`<file>.id`: the id minted inside the file); an open that finds the marker but not the
# journal refuses, and says how to start afresh on purpose. A fresh clone has neither, so `make demo` just
# works; `rm -rf .sharedctx` removes both, which is an explicit fresh start.
def journal_marker(path: str) -> Path:
    return Path(path + ".id")


def refuse_missing_journal(path: str, marker: Path) -> None:
    if not marker.exists():
        return
    try:
        known = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    raise StoreError(
        f"the journal {path} is missing, but {marker} says journal {known.get('journal_id', '?')} was created "
        f"there ({known.get('created_at', 'unknown time')}). Refusing to start a new, empty journal in its place: "
        f"restore the file from a backup, or delete {marker} to start a new journal on purpose"
    )


def claim_marker(path: str, journal_id: str) -> None:
    """Write the marker for a journal that has none; refuse a journal file that is not the one marked."""
    marker = journal_marker(path)
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        try:
            known = json.loads(marker.read_text(encoding="utf-8")).get("journal_id")
        except (OSError, ValueError, AttributeError):
            return  # an unreadable marker protects nothing; the journal itself is fine
        if known and known != journal_id:
            raise StoreError(
                f"{path} is journal {journal_id}, but {marker} says journal {known} lives there: the file was "
                f"replaced by another journal. Restore the right file, or delete {marker} to adopt this one"
            ) from None
        return
    except OSError:
        return  # a read-only folder: writes will say so with their own error
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"journal_id": journal_id, "created_at": format_ts(utcnow()),
                   "note": "sharedctx: marks that a journal lives beside this file; see docs/decisions.md"}, f)
