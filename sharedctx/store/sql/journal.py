"""Cases, the append-only journal and its checkpoints: the SQL both stores share."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from ...errors import CaseNotFound, EntryNotFound, InvalidEntry, validation_problems
from ...model import (
    GENESIS_HASH,
    CaseDraft,
    CaseRecord,
    CaseStatus,
    Entry,
    EntryDraft,
    format_ts,
    new_id,
    parse_ts,
    utcnow,
)
from ..base import Checkpoint
from ..chain import PreparedEntry, checkpoint_hash
from .bindings import index_binding, index_labels
from .common import (
    CASE_COLS,
    ENTRY_COLS,
    PreparedAppend,
    SQLBase,
    _json,
    equal_to,
    head_after,
    placed_entry_params,
    row_to_entry,
    static_entry_params,
    stored_entry,
)

# -- cases: named queries -----------------------------------------------------------------------------

# The open case a repeated alert belongs to (at most one: the partial unique index cases_open_fingerprint).
OPEN_CASE_BY_FINGERPRINT = f"SELECT {CASE_COLS} FROM cases WHERE fingerprint = ? AND status <> 'resolved'"

# A new case: open, at sequence 0, its chain starting from the genesis hash.
INSERT_CASE = """
INSERT INTO cases (id, title, service, severity, status, fingerprint, created_at, updated_at, last_seq,
                   last_hash, labels)
VALUES (?, ?, ?, ?, 'open', ?, ?, ?, 0, ?, ?)
ON CONFLICT (fingerprint) WHERE fingerprint IS NOT NULL AND status <> 'resolved' DO NOTHING"""

# One case by id.
CASE_BY_ID = f"SELECT {CASE_COLS} FROM cases WHERE id = ?"

# Cases newest first; {where} is `equal_to`'s conditions (status, service), never user text.
LIST_CASES = f"SELECT {CASE_COLS} FROM cases WHERE {{where}} ORDER BY id DESC LIMIT ?"

# A case's bindings before one is rewritten; {lock} is FOR UPDATE on PostgreSQL, so two backends binding
# the same case at once queue instead of one overwriting the other's JSON.
CASE_BINDINGS = "SELECT bindings FROM cases WHERE id = ?{lock}"
SET_CASE_BINDINGS = "UPDATE cases SET bindings = ? WHERE id = ?"
# a case's head: what the next entry is placed on (`_write_append`; SQLite's cache of heads, `GroupCommit`)
CASE_HEAD = "SELECT last_seq, last_hash, status, resolved_at FROM cases WHERE id=?"


class JournalSQL(SQLBase):
    # -- cases ------------------------------------------------------------------------------------
    def _case(self, r: Sequence[Any]) -> CaseRecord:
        return CaseRecord(
            id=r[0],
            title=r[1],
            service=r[2],
            severity=r[3],
            status=r[4],
            fingerprint=r[5],
            created_at=parse_ts(r[6]),
            updated_at=parse_ts(r[7]),
            resolved_at=parse_ts(r[8]) if r[8] else None,
            last_seq=r[9],
            last_hash=r[10],
            bindings=_json(r[11]),
            labels=_json(r[12]),
        )

    def open_case(
        self,
        *,
        title: str,
        service: str,
        severity: str,
        fingerprint: str | None,
        labels: dict[str, str],
        first: EntryDraft | None = None,
        backends: Sequence[str] = (),
    ) -> tuple[CaseRecord, bool]:
        """Find the open case with `fingerprint`, or create one.

        `first` (its `case_id` is replaced by the new case's) is appended in the same transaction as
        the new case, so a case never exists without it: if the entry fails, no case is left behind.
        A case that was found gets no entry here; the caller decides what to add to it.
        """
        try:
            draft = CaseDraft(title=title, service=service, severity=severity, fingerprint=fingerprint,
                              labels=labels)
        except ValidationError as exc:
            problems = validation_problems(exc, unknown="unknown field")
            raise InvalidEntry("invalid case: " + "; ".join(problems) + "; nothing was recorded") from None
        draft = self.redactor.sanitize(draft)
        title, service, severity = draft.title, draft.service, draft.severity
        fingerprint, labels = draft.fingerprint, draft.labels
        now = format_ts(utcnow())
        with self._tx() as c:
            if fingerprint:
                r = c.execute(OPEN_CASE_BY_FINGERPRINT, (fingerprint,)).fetchone()
                if r:
                    return self._case(r), False
            case_id = new_id()
            # Two replicas taking the same alert at once (PostgreSQL, READ COMMITTED) both find no open
            # case above; the unique index lets one insert and the other wait, then do nothing and read
            # the winner's case, instead of failing the second intake with a unique violation.
            inserted = c.execute(INSERT_CASE, (case_id, title, service, severity, fingerprint, now, now,
                                               GENESIS_HASH, json.dumps(labels))).rowcount  # fmt: skip
            if inserted != 1:
                return self._case(c.execute(OPEN_CASE_BY_FINGERPRINT, (fingerprint,)).fetchone()), False
            index_labels(c, case_id, labels)
            if first is not None:
                self._append_in(c, first.model_copy(update={"case_id": case_id}), backends, None)
            r = c.execute(CASE_BY_ID, (case_id,)).fetchone()
        return self._case(r), True

    def get_case(self, case_id: str) -> CaseRecord:
        rows = self._q(CASE_BY_ID, (case_id,))
        if not rows:
            raise CaseNotFound(f"no case with id {case_id!r} (list them with `sharedctx case list`)")
        return self._case(rows[0])

    def find_open_case(self, fingerprint: str) -> CaseRecord | None:
        fingerprint = self._clean(fingerprint) or fingerprint  # stored redacted, so looked up redacted
        rows = self._q(OPEN_CASE_BY_FINGERPRINT, (fingerprint,))
        return self._case(rows[0]) if rows else None

    def list_cases(
        self, *, status: str | None = None, service: str | None = None, limit: int = 100
    ) -> list[CaseRecord]:
        where, params = equal_to(status=status, service=service)
        rows = self._q(LIST_CASES.format(where=where), [*params, limit])
        return [self._case(r) for r in rows]

    def set_binding(self, case_id: str, backend: str, thread: dict[str, Any]) -> None:
        """Record the case's thread on `backend`, and index it (`sql.bindings`) in the same transaction:
        a webhook or poll can find the case by the thread as soon as the binding is visible at all."""
        thread = self.redactor.sanitize(thread)
        with self._tx() as c:
            r = c.execute(CASE_BINDINGS.format(lock=self.FOR_UPDATE), (case_id,)).fetchone()
            if r is None:
                raise CaseNotFound(f"no case with id {case_id!r}")
            bindings = _json(r[0])
            bindings[backend] = thread
            c.execute(SET_CASE_BINDINGS, (json.dumps(bindings), case_id))
            index_binding(c, case_id, backend, thread)

    # -- journal ----------------------------------------------------------------------------------
    def append(self, draft: EntryDraft, backends: Sequence[str], status: CaseStatus | None = None) -> Entry:
        prepared = self._prepare_append(draft, backends, status)  # outside the transaction: see PreparedAppend
        with self._tx() as c:
            return self._write_append(c, prepared)

    def _append_in(self, c: Any, draft: EntryDraft, backends: Sequence[str], status: CaseStatus | None) -> Entry:
        """The append itself, inside the caller's transaction `c` (shared by `append` and `open_case`)."""
        return self._write_append(c, self._prepare_append(draft, backends, status))

    def _prepare_append(self, draft: EntryDraft, backends: Sequence[str], status: CaseStatus | None) -> PreparedAppend:
        """Everything about an append that does not need the case row: redaction (the store's choke point
        for secrets, before anything is hashed or written) and serialisation. It runs before the
        transaction, so the time a writer holds the write lock (SQLite) or the case row (PostgreSQL) is the
        SQL alone."""
        draft = self.redactor.sanitize(draft)  # before the hash: the chain covers only redacted text
        entry = PreparedEntry(draft)
        return PreparedAppend(entry, tuple(backends), status, static_entry_params(draft, entry))

    def _write_append(self, c: Any, p: PreparedAppend) -> Entry:
        """Place a prepared append on its case's chain inside transaction `c`: read the case's head, write
        the entry (its search row by trigger), one outbox row per backend, and the case's new head."""
        case_id = p.entry.draft.case_id
        r = c.execute(CASE_HEAD + self.FOR_UPDATE, (case_id,)).fetchone()
        if r is None:
            raise CaseNotFound(f"no case with id {case_id!r}; nothing was recorded")
        entry = p.entry.place(r[0] + 1, r[1])
        params = placed_entry_params(entry, p.params, p.entry.ts_text)
        c.execute(
            f"INSERT INTO entries ({ENTRY_COLS}, evidence_text) VALUES (:id, :case_id, :seq, :ts, "
            ":author_kind, :author_name, :kind, :title, :body, :evidence, :ref, :trace_id, :attrs, "
            ":prev_hash, :hash, :evidence_text)",
            params,
        )
        if p.backends:
            now_epoch = time.time()
            c.executemany(
                "INSERT INTO outbox (entry_id, case_id, seq, backend, next_attempt_at, created_at) "
                "VALUES (?,?,?,?,?,?)",
                [(entry.id, entry.case_id, entry.seq, b, now_epoch, now_epoch) for b in p.backends],
            )
        ts = params["ts"]
        new, resolved_at = head_after(r[2], r[3], p.status, ts)
        c.execute(
            "UPDATE cases SET last_seq=?, last_hash=?, updated_at=?, status=?, resolved_at=? WHERE id=?",
            (entry.seq, entry.hash, ts, new, resolved_at, entry.case_id),
        )
        return entry

    def entries(
        self,
        case_id: str,
        *,
        since_seq: int = 0,
        kinds: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[Entry]:
        sql = f"SELECT {ENTRY_COLS} FROM entries WHERE case_id=? AND seq>?"
        params: list[Any] = [case_id, since_seq]
        if kinds:
            sql += f" AND kind IN ({','.join('?' * len(kinds))})"
            params.extend(kinds)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [row_to_entry(r) for r in self._q(sql, params)]

    def get_entry(self, entry_id: str) -> Entry:
        rows = self._q(f"SELECT {ENTRY_COLS} FROM entries WHERE id=?", (entry_id,))
        if not rows:
            raise EntryNotFound(f"no entry with id {entry_id!r}")
        return row_to_entry(rows[0])

    def case_entries(self, case_ids: Sequence[str], kinds: Sequence[str] | None = None) -> list[Entry]:
        """Entries of several cases (optionally of some kinds), in case then sequence order."""
        out: list[Entry] = []
        ids = list(dict.fromkeys(case_ids))
        for i in range(0, len(ids), 200):
            chunk = ids[i : i + 200]
            sql = f"SELECT {ENTRY_COLS} FROM entries WHERE case_id IN ({','.join('?' * len(chunk))})"
            params: list[Any] = list(chunk)
            if kinds:
                sql += f" AND kind IN ({','.join('?' * len(kinds))})"
                params.extend(kinds)
            out.extend(stored_entry(r) for r in self._q(sql + " ORDER BY case_id, seq", params))
        return out

    def entry_rowid_range(self) -> tuple[int, int]:
        """The smallest and largest storage position of an entry (0, 0 when empty)."""
        r = self._q("SELECT (SELECT min(rowid) FROM entries), (SELECT max(rowid) FROM entries)")
        return (int(r[0][0] or 0), int(r[0][1] or 0)) if r else (0, 0)

    def case_texts(self, case_ids: Sequence[str]) -> list[tuple[Any, ...]]:
        """(case_id, id, kind, author_kind, author_name, title, body, ref, attrs) of every entry of these
        cases, in case then sequence order: what history search ranks a case on, without Entry objects.
        `attrs` comes as JSON text on both stores: ranking parses it only for the few entries it asks a key of
        (decoding every entry's JSONB cost PostgreSQL searches several ms)."""
        out: list[tuple[Any, ...]] = []
        ids = list(dict.fromkeys(case_ids))
        for i in range(0, len(ids), 200):
            chunk = ids[i : i + 200]
            out.extend(tuple(r) for r in self._q(
                "SELECT case_id, id, kind, author_kind, author_name, title, body, ref, CAST(attrs AS TEXT) "
                f"FROM entries WHERE case_id IN ({','.join('?' * len(chunk))}) ORDER BY case_id, seq", chunk))
        return out

    def services(self) -> list[str]:
        """Every service name a case was opened with (for `service:` prefixes and aliases)."""
        return [r[0] for r in self._q("SELECT DISTINCT service FROM cases WHERE service <> ''")]

    # -- truncation evidence ----------------------------------------------------------------------
    def write_checkpoint(self) -> Checkpoint | None:
        """Record the heads of every case whose head moved since the last checkpoint; None if none moved.

        Written in batches (by `verify`, by a closing context that appended, and by the worker now and
        then), never by `append`, so concurrent writers on PostgreSQL never meet on one row. Each checkpoint
        chains to the previous one; `prev_hash` is unique, so two writers racing from the same checkpoint
        cannot fork the chain: the loser writes nothing and its heads go into the next checkpoint."""
        with self._tx() as c:
            last = c.execute("SELECT hash FROM checkpoints ORDER BY id DESC LIMIT 1").fetchone()
            prev = last[0] if last else GENESIS_HASH
            moved = c.execute(
                "SELECT c.id, c.last_seq, c.last_hash FROM cases c LEFT JOIN checkpoint_heads h ON h.case_id = c.id "
                "WHERE c.last_seq > 0 AND (h.seq IS NULL OR h.seq <> c.last_seq OR h.hash <> c.last_hash)"
            ).fetchall()
            if not moved:
                return None
            heads = {r[0]: (int(r[1]), str(r[2])) for r in moved}
            at = format_ts(utcnow())
            digest = checkpoint_hash(prev, at, heads)
            row = c.execute(
                "INSERT INTO checkpoints (at, heads, prev_hash, hash) VALUES (?,?,?,?) "
                "ON CONFLICT (prev_hash) DO NOTHING RETURNING id",
                (at, json.dumps({k: list(v) for k, v in heads.items()}, sort_keys=True), prev, digest),
            ).fetchone()
            if row is None:
                return None
            c.executemany(
                "INSERT INTO checkpoint_heads (case_id, seq, hash) VALUES (?,?,?) "
                "ON CONFLICT (case_id) DO UPDATE SET seq=excluded.seq, hash=excluded.hash",
                [(k, v[0], v[1]) for k, v in heads.items()],
            )
        return Checkpoint(id=int(row[0]), at=at, heads=heads, prev_hash=prev, hash=digest)

    def checkpoints(self) -> list[Checkpoint]:
        rows = self._q("SELECT id, at, heads, prev_hash, hash FROM checkpoints ORDER BY id")
        return [
            Checkpoint(id=int(r[0]), at=r[1], heads={k: (int(v[0]), str(v[1])) for k, v in _json(r[2]).items()},
                       prev_hash=r[3], hash=r[4])
            for r in rows
        ]

