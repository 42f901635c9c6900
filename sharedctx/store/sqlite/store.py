"""The embedded default store: one SQLite file in WAL mode, FTS5 for search.

One connection per store object, guarded by a lock: SQLite allows one writer at a time anyway, and
a single connection keeps `record()` at a few hundred microseconds. Several *processes* may share
the file; SQLite's write lock serialises their appends, and each append is checked against its
case's head inside the write, which is what keeps the per-case sequence gap-free and the chain
unforked. Appends are group-committed (`appends.py`).

Durability: `synchronous=NORMAL` in WAL mode survives a killed process (the committed transaction
is in the OS's page cache and the WAL); set `SHAREDCTX_SQLITE_SYNC=FULL` to survive power loss too.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ...errors import InvalidEntry, StoreError
from ...model import CaseStatus, Entry, EntryDraft, format_ts, new_id, utcnow
from ..base import Candidate, CandidateQuery, SearchFilters, SearchRow, literal_terms, read_migrations
from ..sql import (
    CANDIDATE_CASE_COLS,
    ENTRY_COLS,
    SQLStore,
    candidate_conditions,
    filter_clauses,
    row_to_candidate,
    row_to_entry,
    title_query,
)
from .appends import GroupCommit
from .files import checkpoints, claim_marker, explain, identity, journal_marker, refuse_missing_journal, uri


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
        self._wal_path = self.url + "-wal"  # until SQLite says which file it writes (see below)
        self._closed = threading.Event()
        self._lock = threading.RLock()
        self._appends = GroupCommit(self)
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
            target, as_uri = (uri(self.url, "rw"), True) if existed else (self.url, False)
            self._conn = sqlite3.connect(target, uri=as_uri, isolation_level=None, check_same_thread=False,
                                         timeout=30.0)
            c = self._conn
            c.execute("PRAGMA journal_mode=WAL")
            c.execute(f"PRAGMA synchronous={os.environ.get('SHAREDCTX_SQLITE_SYNC', 'NORMAL')}")
            c.execute(f"PRAGMA busy_timeout={int(self.BUSY_WAIT * 1000)}")
            c.execute("PRAGMA foreign_keys=ON")
            self.migrate()
            self.journal_id = self._journal_id()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(explain(self.url, "cannot open the SQLite store", exc)) from exc
        if not memory:
            st = os.stat(self.url)
            self._ident = (st.st_dev, st.st_ino)
            # SQLite keeps its log beside the file it opened, with symlinks resolved: a journal path that is a
            # symlink (a data volume linked into place) has its log beside the target, not at `<path>-wal`.
            opened = {row[1]: row[2] for row in c.execute("PRAGMA database_list")}.get("main")
            if opened:
                self._wal_path = opened + "-wal"
            with contextlib.suppress(OSError):  # exists from the first transaction until the last connection closes
                wal = os.stat(self._wal_path)
                self._wal_ident = (wal.st_dev, wal.st_ino)
            claim_marker(self.url, self.journal_id)
            # Checkpoints copy the WAL back into the database and fsync it: milliseconds on a busy
            # disk. Left to SQLite, they run inside whichever COMMIT crosses the threshold — that
            # is, inside a `record()`. A background thread takes them off the agents' path.
            c.execute("PRAGMA wal_autocheckpoint=0")
            threading.Thread(target=checkpoints, args=(weakref.ref(self), self.url, self._closed),
                             name="sharedctx-checkpoint", daemon=True).start()

    def _journal_id(self) -> str:
        """This journal's identity, minted once and kept inside the file (see `journal_marker`)."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM journal_meta WHERE key='journal_id'").fetchone()
            if row is not None:  # the usual case: the id minted when the journal was created
                return str(row[0])
            self._conn.execute("INSERT OR IGNORE INTO journal_meta (key, value) VALUES ('journal_id', ?)",
                               (new_id(),))
            return str(self._conn.execute("SELECT value FROM journal_meta WHERE key='journal_id'").fetchone()[0])

    def _still_ours(self) -> None:
        """Refuse to write when the file at our path is no longer the file we have open.

        SQLite keeps writing to an unlinked inode without complaint, so a deleted journal would go on
        acknowledging entries that no other process (and no restart) will ever see. One `stat` per write
        transaction (microseconds) is the price of saying so at the first write instead."""
        self._file_still_ours()
        self._wal_still_ours()

    def _file_is_ours(self) -> bool:
        """Is the file at our path the journal we have open? (OSError: it cannot be told.)"""
        return identity(self.url, self._ident) == "ours"

    def _wal_is_ours(self) -> bool:
        """Is the write-ahead log SQLite writes (`_wal_path`) still the one we opened? (OSError: cannot be told.)"""
        return identity(self._wal_path, self._wal_ident) == "ours"

    def _after_write(self, ids: Sequence[str] = ()) -> bool:
        """After a batch statement committed: did it reach the journal at our path? The checks before it can be
        outrun — the file replaced while the statement waited for another process's write lock, or between
        the look and the statement — so the look is taken again once the batch is in. Raises StoreError, and
        the batch's callers are told so, when it is not (or may not be) in the journal at the path. `ids`, the
        batch's entries, let the journal itself answer when the log cannot be copied (see `_in_journal`). True
        when both files were found ours; False when the batch was saved by copying a deleted log into the journal
        (acknowledged, and the next write must look again and refuse)."""
        try:
            file_ok = self._file_is_ours()
            wal_ok = file_ok and self._wal_is_ours()
        except OSError as exc:
            raise StoreError(
                f"the batch was written, but the journal file {self.url} could not be checked afterwards ({exc}): "
                "whether these entries are in the journal at that path is unknown; check with `sharedctx verify`"
            ) from exc
        if not file_ok:
            raise StoreError(
                f"the journal file {self.url} was deleted or replaced while this batch was written: it went into "
                "the old file, not the journal at that path, so nothing was recorded there. Restart this process"
            )
        if not wal_ok:  # the journal is ours; our batch is in the deleted log: copy it into the journal now
            copied = self._checkpoint_all()
            # (closed meanwhile: the last connection's close copied the log and removed it; the journal says)
            if copied is not True and not (ids and self._closed.is_set() and self._in_journal(ids)):
                raise StoreError(
                    f"the journal's write-ahead log {self._wal_path} was deleted while this batch was written, and "
                    f"copying it into the journal did not complete ({copied}): these entries may be lost. Stop "
                    "every sharedctx process on this journal and restart"
                )
            return False  # saved: acknowledged; the next write refuses (`_wal_still_ours`)
        return True

    def _in_journal(self, ids: Sequence[str]) -> bool:
        """Are all of `ids` in the journal file at our path, as a new connection reads it? Asked only when this
        store was closed during the write (a signal handler's close() on the writing thread) and its WAL is
        gone: the last connection's close copies the log into the journal and removes it. A batch found there
        is safe. False when the journal cannot be read. (With the store still open, a log that is gone was
        deleted by someone else, and a new connection would share our connection's index of the old log: not
        asked then.)"""
        try:
            conn = sqlite3.connect(uri(self.url, "rw"), uri=True, isolation_level=None, timeout=5.0)
            with contextlib.closing(conn):
                found = conn.execute(f"SELECT count(*) FROM entries WHERE id IN ({','.join('?' * len(ids))})",
                                     list(ids)).fetchone()[0]
        except sqlite3.Error:
            return False
        return bool(found == len(set(ids)))

    def _checkpoint_all(self) -> bool | str:
        """Copy the whole WAL into the journal: True when every frame was copied, else why not. A reader on an
        older snapshot makes a FULL checkpoint stop short without raising; only its result row says so."""
        try:
            busy, log, done = self._conn.execute("PRAGMA wal_checkpoint(FULL)").fetchone()
        except sqlite3.Error as exc:
            return str(exc)
        if busy or done != log:
            return f"{done} of {log} pages copied; another connection was still reading"
        return True

    def _file_still_ours(self) -> None:
        """The journal file half of `_still_ours`."""
        try:
            found = identity(self.url, self._ident)
        except OSError as exc:
            raise StoreError(explain(self.url, "cannot check the journal file", exc)) from exc
        if found == "gone":
            raise StoreError(
                f"the journal file {self.url} was deleted while this process had it open; nothing more is "
                "recorded, because it would be lost. Restore the file (or its backup) and restart this process"
            )
        if found == "other":
            raise StoreError(
                f"the journal file {self.url} was replaced by another file while this process had it open; "
                "nothing more is recorded here. Restart this process to use the file now at that path"
            )

    def _wal_still_ours(self) -> None:
        """The same for the write-ahead log. Acknowledged entries live only in `<journal>-wal` until a
        checkpoint copies them into the journal; with that file deleted (`rm journal.db-wal`, a cleanup
        script) SQLite goes on committing to the unlinked inode, other processes never see those entries and
        a crash loses them. Our connection still has the old log open: checkpoint it into the journal (which
        saves what was acknowledged) and refuse further writes."""
        wal = self._wal_path
        try:
            if self._wal_is_ours():
                return
        except OSError as exc:
            raise StoreError(explain(self.url, "cannot check the journal's write-ahead log", exc)) from exc
        copied = self._checkpoint_all()
        saved = ("what was acknowledged was copied into the journal" if copied is True
                 else f"copying what was acknowledged into the journal did not complete ({copied})")
        raise StoreError(
            f"the journal's write-ahead log {wal} was deleted or replaced while this process had it open; "
            f"{saved}, and nothing more is recorded here, because other processes cannot see it. "
            "Stop every sharedctx process on this journal and restart"
        )

    MERGE_PAGES = 64  # FTS5 pages of index merging per checkpoint round (`_merge_index`): a few ms under the lock
    MERGE_BUSY_MS = 50  # how long a merge waits for another process's write lock before it skips the round

    def _merge_index(self) -> None:
        """Merge the full-text index's segments, between writes rather than inside one (migration 0020).

        Run by the checkpoint thread, on this store's connection and under its lock: a `record()` that comes
        meanwhile waits on that lock and goes the moment the merge is done, instead of sleeping in SQLite's busy
        handler. Everything it waits for is brief, and on a busy round it skips: our lock (one of our writers may
        hold it for as long as another process keeps the write lock, and the checkpoint after the merge must not
        wait that long), and another process's write lock. The journal's files are checked with the write lock
        held, as `_tx` does: a journal deleted or replaced meanwhile is not written."""
        wait = self.MERGE_BUSY_MS / 1000
        if not self._lock.acquire(timeout=wait):
            return
        try:
            if self._closed.is_set() or self._conn.in_transaction:
                return
            c = self._conn
            try:
                c.execute(f"PRAGMA busy_timeout={self.MERGE_BUSY_MS}")
                c.execute("BEGIN IMMEDIATE")
                try:
                    if self._file_is_ours() and self._wal_is_ours():
                        c.execute("INSERT INTO entries_fts (entries_fts, rank) VALUES ('merge', ?)",
                                  (self.MERGE_PAGES,))
                        c.execute("COMMIT")
                finally:
                    if c.in_transaction:
                        c.execute("ROLLBACK")
            except (sqlite3.Error, OSError):
                pass  # busy, or the files cannot be told: the next round merges (and a write that needs it merges)
            finally:
                with contextlib.suppress(sqlite3.Error):
                    c.execute(f"PRAGMA busy_timeout={int(self.BUSY_WAIT * 1000)}")
        finally:
            self._lock.release()

    CHECKPOINT_EVERY = 1.0  # seconds between passive checkpoints
    WAL_RESTART_PAGES = 16_384  # ~64 MiB: past this, briefly block writers so the WAL can restart

    # -- plumbing ---------------------------------------------------------------------------------
    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._rollback_leftover()
            self._begin()
            try:
                # Checked with the write lock held: waiting for it (another process writing) can take seconds,
                # and a journal replaced meanwhile must not be written. The WAL half checkpoints, which needs
                # no open transaction: roll back first.
                self._file_still_ours()
                try:
                    wal_ok = self._wal_is_ours()
                except OSError:
                    wal_ok = False  # `_wal_still_ours` says why
                if not wal_ok:
                    self._conn.execute("ROLLBACK")
                    self._wal_still_ours()
                yield self._conn
            except sqlite3.Error as exc:  # disk full, read-only, I/O error: say which, keep nothing half-done
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise StoreError(explain(self.url, "the journal refused a write", exc)) from exc
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
                    raise StoreError(explain(self.url, "could not commit to the journal", exc)) from exc
                self._after_write()  # committed: into the journal at our path? (raises, and says, when not)

    def _rollback_leftover(self) -> None:
        """Every write starts outside a transaction. One left open on the connection (an interrupt between
        BEGIN and the `try` that would roll it back, a second Ctrl-C during ROLLBACK) was never committed nor
        acknowledged, and still holds the write lock: roll it back, or the next write would join it."""
        if self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
        if self._conn.in_transaction:
            raise StoreError(f"a transaction left open on the journal {self.url} could not be rolled back; "
                             "nothing was recorded. Restart this process")

    BUSY_WAIT = 30.0  # seconds, as the busy timeout

    def _begin(self) -> None:
        """BEGIN IMMEDIATE, waiting for the write lock as the busy timeout does. SQLite's busy handler is not
        always asked (in WAL mode a BEGIN can answer SQLITE_BUSY at once, seen with several processes writing
        the same cases), so an immediate "database is locked" is retried here, with backoff, for as long."""
        deadline, pause = time.monotonic() + self.BUSY_WAIT, 0.0005
        while True:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                    raise StoreError(explain(self.url, "cannot write to the journal", exc)) from exc
            except sqlite3.Error as exc:
                raise StoreError(explain(self.url, "cannot write to the journal", exc)) from exc
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _q(self, sql: str, params: Any = ()) -> list[Any]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def close(self) -> None:
        self._appends.close()
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

    def append(self, draft: EntryDraft, backends: Sequence[str], status: CaseStatus | None = None) -> Entry:
        """Group-committed: see `sqlite.appends`."""
        return self._appends.append(draft, backends, status)

