"""PostgreSQL store, for teams running several agents and delivery workers against one journal.

Appends lock the case row (`SELECT … FOR UPDATE`) so concurrent writers queue per case, not
globally; workers claim deliveries with `FOR UPDATE SKIP LOCKED` so any number can run at once
without blocking each other. Full-text search uses a generated `tsvector` column (maintained with
the write) and `ts_rank`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from ..errors import InvalidEntry, StoreError
from ..model import CaseStatus, Entry, EntryDraft, format_ts, utcnow
from .base import Candidate, CandidateQuery, SearchFilters, SearchRow, literal_terms, read_migrations
from .sql import (
    CANDIDATE_CASE_COLS,
    ENTRY_COLS,
    SQLStore,
    candidate_conditions,
    filter_clauses,
    row_to_candidate,
    row_to_entry,
    title_query,
)

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_MIGRATION_LOCK = 0x5C7C_0001  # pg_advisory_xact_lock key: one migrator at a time


def translate(sql: str) -> str:
    """sqlite-style `?` and `:name` placeholders -> psycopg's `%s` and `%(name)s`."""
    return _NAMED.sub(r"%(\1)s", sql.replace("%", "%%").replace("?", "%s"))


class _Conn:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Any = ()) -> psycopg.Cursor[Any]:
        return self._conn.execute(translate(sql), params or None)

    def executemany(self, sql: str, params: Any) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(translate(sql), params)


def ts_query(text: str) -> str:
    """A tsquery from user text: words OR-ed, `"phrases"` kept as phrases; operators are literal."""
    parts: list[str] = []
    for i, chunk in enumerate(text.split('"')):
        words = literal_terms(chunk)
        if i % 2 == 1 and words:
            parts.append("(" + " <-> ".join(words) + ")")
        else:
            parts.extend(words)
    return " | ".join(parts[:32])


def ts_expr(match: list[list[list[str]]]) -> tuple[str, list[str]]:
    """A tsquery SQL expression (and its parameters) from a `CandidateQuery.match`.

    Every alternative goes through `phraseto_tsquery` as a bound parameter, so user text is never
    parsed as tsquery syntax; groups and clauses are combined with the `||` / `&&` operators.
    """
    params: list[str] = []
    clauses = []
    for clause in match:
        groups = []
        for group in clause:
            alts = []
            for words in group:
                terms = literal_terms(words, 64)
                if terms:
                    alts.append("phraseto_tsquery('english', ?)")
                    params.append(" ".join(terms))
            if alts:
                groups.append("(" + " || ".join(alts) + ")")
        if groups:
            clauses.append("(" + " && ".join(groups) + ")")
    return " || ".join(clauses), params


class PostgresStore(SQLStore):
    FOR_UPDATE = " FOR UPDATE"
    SKIP_LOCKED = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, *, max_size: int = 8) -> None:
        self.url = url
        try:
            self._pool = ConnectionPool(url, min_size=1, max_size=max_size, open=True, timeout=30)
            self._pool.wait(timeout=10)
        except Exception as exc:  # psycopg_pool raises PoolTimeout with the underlying reason logged
            raise StoreError(f"cannot connect to PostgreSQL at {_redact_url(url)}: {exc}") from exc
        self.migrate()

    @contextmanager
    def _tx(self) -> Iterator[_Conn]:
        try:
            with self._pool.connection() as conn, conn.transaction():
                yield _Conn(conn)
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL error: {exc}") from exc

    @contextmanager
    def _autocommit(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection for one statement on its own, which is atomic by itself: without the BEGIN
        and COMMIT round trips a transaction block costs (three round trips become one). The worker's
        claims, marks and reads are all single statements (issue 13: fewer hops per delivery)."""
        try:
            with self._pool.connection() as conn:
                conn.autocommit = True
                try:
                    yield conn
                finally:
                    conn.autocommit = False
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL error: {exc}") from exc

    def _q(self, sql: str, params: Any = ()) -> list[Any]:
        with self._autocommit() as conn:
            return conn.execute(translate(sql), params or None).fetchall()

    def _update(self, sql: str, params: Any, *, durable: bool = True) -> int:
        with self._autocommit() as conn:
            if durable:
                return int(conn.execute(translate(sql), params or None).rowcount)
            # SET LOCAL ends with the transaction, whatever happens: the pooled connection goes back with
            # synchronous commits on. (Four cheap round trips; the fsync they spare is the expensive part.)
            with conn.transaction():
                conn.execute("SET LOCAL synchronous_commit = off")
                cur = conn.execute(translate(sql), params or None)
            return int(cur.rowcount)

    def _one(self, sql: str, params: Any) -> list[Any]:
        with self._autocommit() as conn:
            return conn.execute(translate(sql), params or None).fetchall()

    def close(self) -> None:
        self._pool.close()

    def schema_version(self) -> int:
        return int(self._q("SELECT coalesce(max(version), 0) FROM schema_version")[0][0])

    def migrate(self) -> None:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            applied = {int(r[0]) for r in conn.execute("SELECT version FROM schema_version").fetchall()}
            for version, name, sql in read_migrations("postgres"):
                if version in applied:  # by set, not max: migrations from branches may land out of order
                    continue
                try:
                    conn.execute(sql.encode())
                except psycopg.Error as exc:
                    raise StoreError(f"migration {version:04d}_{name} failed: {exc}") from exc
                conn.execute(
                    "INSERT INTO schema_version VALUES (%s, %s, %s)", (version, name, format_ts(utcnow()))
                )

    def append(self, draft: EntryDraft, backends: Sequence[str], status: CaseStatus | None = None) -> Entry:
        return super().append(draft, backends, status)

    def search(self, text: str, filters: SearchFilters | None = None, limit: int = 20) -> list[SearchRow]:
        f = filters or SearchFilters()
        cols = ", ".join(f"e.{c.strip()}" for c in ENTRY_COLS.split(","))
        where, params = filter_clauses(f)
        query = ts_query(text) if text.strip() else ""
        if text.strip() and not query:
            raise InvalidEntry("the search text has no searchable words")
        if query:
            sql = (
                f"SELECT {cols}, c.service, c.title, c.status, ts_rank(e.tsv, q) AS score, "
                "ts_headline('english', e.title || ' — ' || e.body, q, "
                "'StartSel=[, StopSel=], MaxWords=30, MinWords=8') "
                "FROM entries e JOIN cases c ON c.id = e.case_id, to_tsquery('english', ?) q "
            )
            where.insert(0, "e.tsv @@ q")
            params.insert(0, query)
            order = "score DESC"
        else:
            sql = (
                f"SELECT {cols}, c.service, c.title, c.status, 0.0 AS score, substr(e.body, 1, 160) "
                "FROM entries e JOIN cases c ON c.id = e.case_id "
            )
            order = "e.rowid DESC"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {order} LIMIT ?"
        params.append(limit)
        rows = self._q(sql, params)
        return [
            SearchRow(
                entry=row_to_entry(r[:15]),
                service=r[15],
                case_title=r[16],
                case_status=r[17],
                score=float(r[18]),
                snippet=r[19] or "",
            )
            for r in rows
        ]

    # -- history search (sharedctx.search) ------------------------------------------------------
    def count_matches(self, query: CandidateQuery, cap: int) -> int:
        """How many entries the full-text part of `query` matches, counting no further than `cap`."""
        expr, params = ts_expr(query.match)
        if not expr:
            return 0
        r = self._q(f"SELECT count(*) FROM (SELECT 1 FROM entries e WHERE e.tsv @@ ({expr}) LIMIT ?) x",
                    [*params, cap])
        return int(r[0][0])

    def search_case_titles(self, query: CandidateQuery, limit: int = 50, cap: int = 2000) -> list[Candidate] | None:
        """Cases whose title matches `query.match` (ts_rank over the stored `title_tsv`), each as its first
        entry; None when more than `cap` titles match.

        One statement: the matching titles (at most `cap` + 1 of them, read once from the GIN index) are
        counted and ranked together, and only the best `limit` are joined to their first entry."""
        expr, params = ts_expr(query.match)
        if not expr:
            return []
        cols = ", ".join(f"e.{c.strip()}" for c in ENTRY_COLS.split(",")) + ", e.rowid, " + CANDIDATE_CASE_COLS
        where, values = candidate_conditions("postgres", title_query(query))
        # without filters only the best `limit` titles are joined; the count gates the join (a one-time filter)
        best, top = ("m", []) if where else ("(SELECT id, s FROM m ORDER BY s DESC LIMIT ?)", [limit])
        rows = self._q(
            "WITH m AS MATERIALIZED (SELECT c.id, ts_rank(c.title_tsv, qq.q) AS s "
            f"FROM (SELECT ({expr}) AS q) qq, cases c WHERE c.title_tsv @@ qq.q LIMIT ?), "
            "n AS (SELECT count(*) AS n FROM m) "
            f"SELECT t.*, n.n FROM n LEFT JOIN LATERAL (SELECT {cols}, b.s FROM {best} b "
            "JOIN cases c ON c.id = b.id JOIN entries e ON e.case_id = c.id AND e.seq = 1 WHERE n.n <= ?"
            + "".join(" AND " + w for w in where) + " ORDER BY b.s DESC LIMIT ?) t ON true",
            [*params, cap + 1, *top, cap, *values, limit])
        if rows and int(rows[0][-1]) > cap:
            return None
        return [row_to_candidate(r[:-1]) for r in rows if r[0] is not None]

    def index_terms(self, near: str, limit: int = 400) -> list[tuple[str, int]]:
        """Index terms (english stems) sharing `near`'s first two letters, with how many entries hold each,
        from the most recent VOCAB_SAMPLE entries (`ts_stat` over the whole journal would read every row)."""
        head = near[:2].lower()
        if len(head) < 2 or not head.isalnum():
            return []
        rows = self._q(
            f"SELECT word, ndoc FROM ts_stat('SELECT tsv FROM entries ORDER BY rowid DESC LIMIT {VOCAB_SAMPLE}') "
            "WHERE word LIKE ? ORDER BY ndoc DESC LIMIT ?", (head + "%", limit))
        return [(str(t), int(d)) for t, d in rows]

    def search_candidates(self, query: CandidateQuery, limit: int = 200) -> list[Candidate]:
        """The best `limit` entries by `ts_rank` that pass the filters; newest first without text.

        Ranked on `entries` alone (joined to `cases` inside only when a filter is about the case), and only
        the `limit` winners are then read whole and joined to their case: every match costs one heap read
        for its tsvector; joining all of them to `cases` cost as much again (EXPLAIN at 1M entries)."""
        cols = ", ".join(f"e.{c.strip()}" for c in ENTRY_COLS.split(",")) + ", e.rowid, " + CANDIDATE_CASE_COLS
        expr, params = ts_expr(query.match)
        where, values = candidate_conditions("postgres", query)
        f = query.filters
        inner_case = " JOIN cases c ON c.id = e.case_id" if (f.service or f.services or f.case_status) else ""
        if expr:
            sql = (f"SELECT {cols}, r.s FROM (SELECT e.rowid, ts_rank(e.tsv, qq.q) AS s "
                   f"FROM (SELECT ({expr}) AS q) qq, entries e{inner_case} WHERE e.tsv @@ qq.q"
                   + "".join(" AND " + w for w in where) + " ORDER BY s DESC LIMIT ?) r "
                   "JOIN entries e ON e.rowid = r.rowid JOIN cases c ON c.id = e.case_id ORDER BY r.s DESC")
        else:
            sql = (f"SELECT {cols}, 0.0 FROM entries e JOIN cases c ON c.id = e.case_id"
                   + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY e.rowid DESC LIMIT ?")
        rows = self._q(sql, [*params, *values, limit])
        return [row_to_candidate(r) for r in rows]

    def rebuild_index(self) -> int:
        """The tsvectors are generated columns; rebuilding means reindexing their GIN indexes."""
        with self._pool.connection() as conn:
            conn.execute("REINDEX INDEX entries_tsv")
            conn.execute("REINDEX INDEX cases_title_tsv")
            row = conn.execute("SELECT count(*) FROM entries").fetchone()
        return int(row[0]) if row else 0


VOCAB_SAMPLE = 50_000  # entries whose words typo correction considers on PostgreSQL


def _redact_url(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]+@", r"://\1:***@", url)
