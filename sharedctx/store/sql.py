"""What the SQLite and PostgreSQL stores share: every query that is the same SQL on both.

Queries are written with `?` / `:name` placeholders; the PostgreSQL store translates them. The two
stores differ only in connections and transactions, migrations, the claim's `SKIP LOCKED`, and
full-text search (FTS5 BM25 vs `ts_rank`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from ..errors import CaseNotFound, EntryNotFound, InvalidEntry, validation_problems
from ..model import (
    GENESIS_HASH,
    Author,
    BackendState,
    CaseDraft,
    CaseRecord,
    CaseStatus,
    Delivery,
    Entry,
    EntryDraft,
    EntryKind,
    Evidence,
    _evidence_payload,
    format_ts,
    new_id,
    parse_ts,
    utcnow,
)
from ..redact import Redactor, default_redactor
from .base import (
    Candidate,
    CandidateQuery,
    Checkpoint,
    EntryMatch,
    OutboxHealth,
    SearchFilters,
    build_entry,
    checkpoint_hash,
)

ENTRY_COLS = (
    "id, case_id, seq, ts, author_kind, author_name, kind, title, body, evidence, ref, trace_id, attrs, "
    "prev_hash, hash"
)
DELIVERY_COLS = (
    "id, entry_id, case_id, seq, backend, state, attempts, next_attempt_at, last_error, last_error_kind, "
    "external, created_at, delivered_at, lease_token, sent_possibly"
)
CASE_COLS = (
    "id, title, service, severity, status, fingerprint, created_at, updated_at, resolved_at, "
    "last_seq, last_hash, bindings, labels"
)


# A delivery is claimable when it is due, not leased, and the head of its (case, backend) line;
# held rows (waiting for a human decision) do not block the line.
CLAIMABLE = """o.state = 'pending' AND o.backend = :backend AND o.next_attempt_at <= :now
      AND (o.lease_until IS NULL OR o.lease_until < :now)
      AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.case_id = o.case_id
          AND p.backend = o.backend AND p.state = 'pending' AND p.seq < o.seq
          AND COALESCE(p.last_error_kind, '') <> 'held')"""

# `/metrics` reads this at every scrape: per backend, what waits, what is dead, and since when the
# oldest non-held row waits. Delivered rows are skipped, so it reads the live part of the outbox only.
OUTBOX_HEALTH_SQL = """SELECT backend,
    sum(CASE WHEN state = 'pending' AND COALESCE(last_error_kind, '') <> 'held' THEN 1 ELSE 0 END),
    sum(CASE WHEN state = 'pending' AND last_error_kind = 'held' THEN 1 ELSE 0 END),
    sum(CASE WHEN state = 'dead' AND COALESCE(last_error_kind, '') <> 'declined' THEN 1 ELSE 0 END),
    sum(CASE WHEN state = 'dead' AND last_error_kind = 'declined' THEN 1 ELSE 0 END),
    min(CASE WHEN state = 'pending' AND COALESCE(last_error_kind, '') <> 'held' THEN created_at END)
FROM outbox WHERE state IN ('pending', 'dead') GROUP BY backend"""

# `/readyz`: the cheapest query that proves the store answers.
PING_SQL = "SELECT 1"


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def row_to_entry(r: Sequence[Any]) -> Entry:
    return Entry.model_validate(
        {
            "id": r[0],
            "case_id": r[1],
            "seq": r[2],
            "ts": r[3],
            "author": {"kind": r[4], "name": r[5]},
            "kind": r[6],
            "title": r[7],
            "body": r[8],
            "evidence": _json(r[9]),
            "ref": r[10],
            "trace_id": r[11],
            "attrs": _json(r[12]),
            "prev_hash": r[13],
            "hash": r[14],
        }
    )


def stored_entry(r: Sequence[Any]) -> Entry:
    """An Entry from a row of ENTRY_COLS without re-validation: history search reads hundreds of stored
    entries per query, and what the store holds was validated when it was recorded (and is hash-checked
    by `verify`, not here)."""
    return Entry.model_construct(
        id=r[0], case_id=r[1], seq=r[2], ts=parse_ts(r[3]), author=Author.model_construct(kind=r[4], name=r[5]),
        kind=EntryKind(r[6]), title=r[7], body=r[8],
        evidence=tuple(Evidence.model_construct(**x) for x in (_json(r[9]) or ())),
        ref=r[10], trace_id=r[11], attrs=_json(r[12]) or {}, prev_hash=r[13], hash=r[14],
    )


def evidence_text(entry: Entry) -> str:
    """What of the evidence is worth searching: summaries, queries, sources."""
    return " ".join(" ".join(filter(None, (e.summary, e.query, e.source))) for e in entry.evidence)


def entry_params(entry: Entry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "case_id": entry.case_id,
        "seq": entry.seq,
        "ts": format_ts(entry.ts),
        "author_kind": entry.author.kind,
        "author_name": entry.author.name,
        "kind": entry.kind.value,
        "title": entry.title,
        "body": entry.body,
        "evidence": json.dumps([_evidence_payload(e) for e in entry.evidence], ensure_ascii=False),
        "ref": entry.ref,
        "trace_id": entry.trace_id,
        "attrs": json.dumps(entry.attrs, ensure_ascii=False, sort_keys=True),
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
        "evidence_text": evidence_text(entry),
    }


def next_status(current: str, requested: CaseStatus | None) -> str:
    """Status only moves forward (open → mitigated → resolved); a late note never reopens a case."""
    if requested is None:
        return current
    return requested.value if requested.rank > CaseStatus(current).rank else current


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def equal_to(**columns: str | None) -> tuple[str, list[Any]]:
    """`col = ?` for each column given a value (None or empty: no condition), AND-ed; "1=1" for none."""
    given = {k: v for k, v in columns.items() if v}
    return " AND ".join(f"{k}=?" for k in given) or "1=1", list(given.values())


def filter_clauses(f: SearchFilters) -> tuple[list[str], list[Any]]:
    """WHERE conditions (over `e` = entries, `c` = cases) for the structured search filters."""
    where: list[str] = []
    params: list[Any] = []
    for cond, value in (
        ("c.service = ?", f.service),
        ("e.author_kind = ?", f.author_kind),
        ("e.author_name = ?", f.author),
        ("e.case_id = ?", f.case_id),
        ("c.status = ?", f.case_status),
        ("e.ts >= ?", format_ts(f.since) if f.since else None),
        ("e.ts <= ?", format_ts(f.until) if f.until else None),
    ):
        if value is not None:
            where.append(cond)
            params.append(value)
    if f.kinds:
        where.append(f"e.kind IN ({','.join('?' * len(f.kinds))})")
        params.extend(f.kinds)
    if f.services:
        where.append(f"c.service IN ({','.join('?' * len(f.services))})")
        params.extend(f.services)
    return where, params


def json_text(dialect: str, column: str, key: str) -> str:
    """SQL for `column`'s JSON member `key` as text (key already checked to be `\\w+`)."""
    if dialect == "postgres":
        return f"({column}->>'{key}')"
    return f"json_extract({column}, '$.{key}')"


def entry_match_clause(dialect: str, alias: str, matches: Sequence[EntryMatch]) -> tuple[str, list[Any]]:
    """One SQL condition: the entry `alias` matches any of `matches` (an empty list matches nothing)."""
    ors: list[str] = []
    params: list[Any] = []
    for m in matches:
        ands: list[str] = []
        if m.kind:
            ands.append(f"{alias}.kind = ?")
            params.append(m.kind)
        if m.author_kind:
            ands.append(f"{alias}.author_kind = ?")
            params.append(m.author_kind)
        if m.attr and re.fullmatch(r"\w{1,64}", m.attr):
            ands.append(f"{json_text(dialect, alias + '.attrs', m.attr)} IN ({','.join('?' * len(m.values))})"
                        if m.values else f"{json_text(dialect, alias + '.attrs', m.attr)} IS NOT NULL")
            params.extend(m.values)
        ors.append("(" + (" AND ".join(ands) or "1=1") + ")")
    return ("(" + " OR ".join(ors) + ")" if ors else "1=0"), params


def candidate_conditions(dialect: str, q: CandidateQuery) -> tuple[list[str], list[Any]]:
    """WHERE conditions (over `e` and `c`) for a history search, besides the full-text match."""
    where, params = filter_clauses(q.filters)
    if q.entry_is:
        cond, values = entry_match_clause(dialect, "e", q.entry_is)
        where.append(cond)
        params.extend(values)
        kinds = sorted({m.kind for m in q.entry_is if m.kind})
        if kinds and all(m.kind for m in q.entry_is):  # lets the (kind, ts) index narrow the scan
            where.append(f"e.kind IN ({','.join('?' * len(kinds))})")
            params.extend(kinds)
    if q.case_has:
        cond, values = entry_match_clause(dialect, "o", q.case_has)
        where.append(f"e.case_id IN (SELECT o.case_id FROM entries o WHERE {cond})")
        params.extend(values)
    if q.min_rowid is not None:
        where.append("e.rowid >= ?")
        params.append(q.min_rowid)
    return where, params


def title_query(q: CandidateQuery) -> CandidateQuery:
    """`q` with only its case-level conditions: a case found by its title is represented by its first entry."""
    f = q.filters.model_copy(update={"kinds": None, "author": None, "author_kind": None})
    return q.model_copy(update={"entry_is": [], "min_rowid": None, "filters": f})


CANDIDATE_CASE_COLS = "c.service, c.title, c.status, c.fingerprint, c.labels, c.created_at, c.resolved_at"


def row_to_candidate(r: Sequence[Any]) -> Candidate:
    """A row of ENTRY_COLS, rowid, CANDIDATE_CASE_COLS, score."""
    return Candidate.model_construct(
        entry=stored_entry(r[:15]),
        rowid=r[15],
        service=r[16],
        case_title=r[17],
        case_status=r[18],
        fingerprint=r[19],
        labels=_json(r[20]) or {},
        case_created_at=parse_ts(r[21]),
        case_resolved_at=parse_ts(r[22]) if r[22] else None,
        score=float(r[23] or 0.0),
    )


class Conn:
    """The few methods both drivers' connections offer, as the shared code uses them."""

    def execute(self, sql: str, params: Any = ...) -> Any: ...
    def executemany(self, sql: str, params: Any) -> Any: ...


class SQLStore:
    """Shared implementation; subclasses provide `_tx`, `_q`, `migrate`, `search`, `rebuild_index`.

    The choke point for secrets: every value this class writes goes through `self.redactor` first —
    `_clean` for text, `Redactor.sanitize` for models and JSON values — so no caller (API, CLI, MCP,
    intake, webhooks, read-back, the worker's error texts) can persist a credential by forgetting to
    redact. `SharedContext` sets `redactor` to the one built from `[redact]`; the default has the built-in
    detectors only.
    """

    url: str
    FOR_UPDATE = ""  # PostgreSQL: lock the case row while appending
    SKIP_LOCKED = ""  # PostgreSQL: let concurrent workers pass over each other's claims
    _redactor: Redactor | None = None

    @property
    def redactor(self) -> Redactor:
        return self._redactor or default_redactor()

    @redactor.setter
    def redactor(self, value: Redactor | None) -> None:
        self._redactor = value

    def _clean(self, text: str | None) -> str | None:
        """`text` as it may be persisted (redacted)."""
        return self.redactor.redact(text) if text else text

    def _tx(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _q(self, sql: str, params: Any = ()) -> list[Any]:
        raise NotImplementedError

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
                r = c.execute(
                    f"SELECT {CASE_COLS} FROM cases WHERE fingerprint=? AND status<>'resolved'",
                    (fingerprint,),
                ).fetchone()
                if r:
                    return self._case(r), False
            case_id = new_id()
            c.execute(
                "INSERT INTO cases (id, title, service, severity, status, fingerprint, created_at, "
                "updated_at, last_seq, last_hash, labels) VALUES (?,?,?,?,'open',?,?,?,0,?,?)",
                (case_id, title, service, severity, fingerprint, now, now, GENESIS_HASH, json.dumps(labels)),
            )
            if first is not None:
                self._append_in(c, first.model_copy(update={"case_id": case_id}), backends, None)
            r = c.execute(f"SELECT {CASE_COLS} FROM cases WHERE id=?", (case_id,)).fetchone()
        return self._case(r), True

    def get_case(self, case_id: str) -> CaseRecord:
        rows = self._q(f"SELECT {CASE_COLS} FROM cases WHERE id=?", (case_id,))
        if not rows:
            raise CaseNotFound(f"no case with id {case_id!r} (list them with `sharedctx case list`)")
        return self._case(rows[0])

    def find_open_case(self, fingerprint: str) -> CaseRecord | None:
        fingerprint = self._clean(fingerprint) or fingerprint  # stored redacted, so looked up redacted
        rows = self._q(
            f"SELECT {CASE_COLS} FROM cases WHERE fingerprint=? AND status<>'resolved'", (fingerprint,)
        )
        return self._case(rows[0]) if rows else None

    def list_cases(
        self, *, status: str | None = None, service: str | None = None, limit: int = 100
    ) -> list[CaseRecord]:
        where, params = equal_to(status=status, service=service)
        rows = self._q(f"SELECT {CASE_COLS} FROM cases WHERE {where} ORDER BY id DESC LIMIT ?", [*params, limit])
        return [self._case(r) for r in rows]

    def set_binding(self, case_id: str, backend: str, thread: dict[str, Any]) -> None:
        thread = self.redactor.sanitize(thread)
        with self._tx() as c:
            r = c.execute("SELECT bindings FROM cases WHERE id=?", (case_id,)).fetchone()
            if r is None:
                raise CaseNotFound(f"no case with id {case_id!r}")
            bindings = _json(r[0])
            bindings[backend] = thread
            c.execute("UPDATE cases SET bindings=? WHERE id=?", (json.dumps(bindings), case_id))

    # -- journal ----------------------------------------------------------------------------------
    def append(self, draft: EntryDraft, backends: Sequence[str], status: CaseStatus | None = None) -> Entry:
        with self._tx() as c:
            return self._append_in(c, draft, backends, status)

    def _append_in(self, c: Any, draft: EntryDraft, backends: Sequence[str], status: CaseStatus | None) -> Entry:
        """The append itself, inside the caller's transaction `c` (shared by `append` and `open_case`)."""
        draft = self.redactor.sanitize(draft)  # before the hash: the chain covers only redacted text
        now_epoch = time.time()
        r = c.execute(
            f"SELECT last_seq, last_hash, status, resolved_at FROM cases WHERE id=?{self.FOR_UPDATE}",
            (draft.case_id,),
        ).fetchone()
        if r is None:
            raise CaseNotFound(f"no case with id {draft.case_id!r}; nothing was recorded")
        entry = build_entry(draft, r[0] + 1, r[1])
        params = entry_params(entry)
        c.execute(
            f"INSERT INTO entries ({ENTRY_COLS}, evidence_text) VALUES (:id, :case_id, :seq, :ts, "
            ":author_kind, :author_name, :kind, :title, :body, :evidence, :ref, :trace_id, :attrs, "
            ":prev_hash, :hash, :evidence_text)",
            params,
        )
        if backends:
            c.executemany(
                "INSERT INTO outbox (entry_id, case_id, seq, backend, next_attempt_at, created_at) "
                "VALUES (?,?,?,?,?,?)",
                [(entry.id, entry.case_id, entry.seq, b, now_epoch, now_epoch) for b in backends],
            )
        new = next_status(r[2], status)
        ts = params["ts"]
        resolved_at = r[3] or (ts if new == "resolved" else None)
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
        cases, in case then sequence order: what history search ranks a case on, without Entry objects."""
        out: list[tuple[Any, ...]] = []
        ids = list(dict.fromkeys(case_ids))
        for i in range(0, len(ids), 200):
            chunk = ids[i : i + 200]
            out.extend(tuple(r) for r in self._q(
                "SELECT case_id, id, kind, author_kind, author_name, title, body, ref, attrs FROM entries "
                f"WHERE case_id IN ({','.join('?' * len(chunk))}) ORDER BY case_id, seq", chunk))
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

    # -- outbox -----------------------------------------------------------------------------------
    def _delivery(self, r: Sequence[Any]) -> Delivery:
        return Delivery(
            id=r[0],
            entry_id=r[1],
            case_id=r[2],
            seq=r[3],
            backend=r[4],
            state=r[5],
            attempts=r[6],
            next_attempt_at=_dt(r[7]),
            last_error=r[8],
            last_error_kind=r[9],
            external=_json(r[10]) if r[10] else None,
            created_at=_dt(r[11]),
            delivered_at=_dt(r[12]) if r[12] else None,
            lease_token=int(r[13] or 0),
            sent_possibly=bool(r[14]),
        )

    def claim(self, backend: str, owner: str, limit: int, lease_seconds: float) -> list[Delivery]:
        """Lease up to `limit` deliveries that are each the head of their (case, backend) line.

        Every claim bumps the row's `lease_token` (the fencing token): whoever held an expired lease
        on it before can no longer change its state (see `_fenced`)."""
        now = time.time()
        with self._tx() as c:
            rows = c.execute(
                f"""UPDATE outbox SET lease_until = :lease, lease_owner = :owner, attempts = attempts + 1,
                    lease_token = lease_token + 1
                WHERE id IN (
                    SELECT o.id FROM outbox o WHERE {CLAIMABLE}
                    ORDER BY o.next_attempt_at, o.id LIMIT :limit{self.SKIP_LOCKED})
                RETURNING {DELIVERY_COLS}""",
                {"lease": now + lease_seconds, "owner": owner, "backend": backend, "now": now, "limit": limit},
            ).fetchall()
        return sorted((self._delivery(r) for r in rows), key=lambda d: d.id)

    def has_due(self, backend: str) -> bool:
        """Would `claim` find anything? A read, so idle lanes never take the write lock to find out."""
        rows = self._q(
            f"SELECT 1 FROM outbox o WHERE {CLAIMABLE} LIMIT 1", {"backend": backend, "now": time.time()}
        )
        return bool(rows)

    def _update(self, sql: str, params: Any) -> int:
        with self._tx() as c:
            return int(c.execute(sql, params).rowcount)

    def _fenced(self, sql: str, params: Sequence[Any], delivery_id: int, token: int | None) -> bool:
        """Run a state change on one delivery, only while `token` is still its lease token.

        The one choke point for outbox state changes: True if the row changed, False if the lease was
        lost (another worker claimed the row since) or the row is no longer pending. `token=None` is for
        operators' tools acting outside any lease."""
        where = " WHERE id=? AND state='pending'"
        args = [*params, delivery_id]
        if token is not None:
            where += " AND lease_token=?"
            args.append(token)
        return self._update(sql + where, args) == 1

    def mark_attempted(self, delivery_id: int, token: int) -> bool:
        """Commit "this delivery may have been sent" before any network I/O for it (see migration 0004)."""
        return self._fenced("UPDATE outbox SET sent_possibly=1", (), delivery_id, token)

    def renew_lease(self, delivery_id: int, token: int, lease_seconds: float) -> bool:
        """Heartbeat: push the lease out while the delivery is in flight; False if it was lost."""
        return self._fenced("UPDATE outbox SET lease_until=?", (time.time() + lease_seconds,), delivery_id, token)

    def mark_delivered(self, delivery_id: int, external: dict[str, Any], *, token: int | None = None) -> bool:
        return self._fenced(
            "UPDATE outbox SET state='delivered', delivered_at=?, external=?, lease_until=NULL, last_error=NULL",
            (time.time(), json.dumps(self.redactor.sanitize(external))), delivery_id, token,
        )  # fmt: skip

    def reschedule(
        self, delivery_id: int, *, error: str, kind: str, delay: float, token: int | None = None
    ) -> bool:
        return self._fenced(
            "UPDATE outbox SET next_attempt_at=?, last_error=?, last_error_kind=?, lease_until=NULL",
            (time.time() + delay, self._clean(error), kind), delivery_id, token,
        )  # fmt: skip

    def mark_dead(self, delivery_id: int, *, error: str, kind: str, token: int | None = None) -> bool:
        return self._fenced(
            "UPDATE outbox SET state='dead', last_error=?, last_error_kind=?, lease_until=NULL",
            (self._clean(error), kind), delivery_id, token,
        )  # fmt: skip

    def release(self, delivery_id: int, *, error: str, kind: str, token: int | None = None) -> bool:
        """Give a claimed delivery back without counting the attempt (e.g. its backend was stopped)."""
        return self._fenced(
            "UPDATE outbox SET attempts=CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, "
            "lease_until=NULL, last_error=?, last_error_kind=?",
            (self._clean(error), kind), delivery_id, token,
        )  # fmt: skip

    def outbox_counts(self) -> dict[str, dict[str, int]]:
        """Per backend: pending, held (pending until a human decides), delivered, dead; and `declined`, the
        dead letters a human declined on purpose (a subset of dead)."""
        out: dict[str, dict[str, int]] = {}
        rows = self._q(
            "SELECT backend, CASE WHEN state = 'pending' AND last_error_kind = 'held' THEN 'held' "
            "ELSE state END AS st, count(*), "
            "sum(CASE WHEN last_error_kind = 'declined' THEN 1 ELSE 0 END) FROM outbox GROUP BY 1, 2"
        )
        for backend, state, n, declined in rows:
            c = out.setdefault(backend, {"pending": 0, "held": 0, "delivered": 0, "dead": 0, "declined": 0})
            c[state] = n
            if state == "dead":
                c["declined"] = int(declined or 0)
        return out

    def outbox_health(self) -> dict[str, OutboxHealth]:
        """Per backend with live rows: pending / held / dead / declined counts and the oldest pending time."""
        return {
            b: OutboxHealth(backend=b, pending=int(p or 0), held=int(h or 0), dead=int(d or 0),
                            declined=int(x or 0), oldest_pending_at=float(o) if o is not None else None)
            for b, p, h, d, x, o in self._q(OUTBOX_HEALTH_SQL)
        }  # fmt: skip

    def ping(self) -> None:
        """Raise if the store cannot answer a query (for `/readyz`)."""
        self._q(PING_SQL)

    def list_deliveries(
        self, *, state: str | None = None, backend: str | None = None, limit: int = 100
    ) -> list[Delivery]:
        where, params = equal_to(state=state, backend=backend)
        rows = self._q(f"SELECT {DELIVERY_COLS} FROM outbox WHERE {where} ORDER BY id LIMIT ?", [*params, limit])
        return [self._delivery(r) for r in rows]

    def requeue_dead(self, *, backend: str | None = None, ids: Sequence[int] | None = None) -> int:
        sql = "UPDATE outbox SET state='pending', attempts=0, next_attempt_at=?, lease_until=NULL WHERE state='dead'"
        params: list[Any] = [time.time()]
        if backend:
            sql += " AND backend=?"
            params.append(backend)
        if ids:
            sql += f" AND id IN ({','.join('?' * len(ids))})"
            params.extend(ids)
        with self._tx() as c:
            return c.execute(sql, params).rowcount

    def next_due(self, backend: str) -> float | None:
        r = self._q("SELECT min(next_attempt_at) FROM outbox WHERE state='pending' AND backend=?", (backend,))
        return float(r[0][0]) if r and r[0][0] is not None else None

    # -- backend state, cursors -------------------------------------------------------------------
    def get_backend_state(self, name: str) -> BackendState:
        rows = self._q("SELECT state, reason, since FROM backend_state WHERE name=?", (name,))
        if not rows:
            return BackendState(name=name)
        st, reason, since = rows[0]
        return BackendState(name=name, state=st, reason=reason, since=parse_ts(since) if since else None)

    def backend_states(self) -> list[BackendState]:
        """Every backend with a recorded state (running or stopped)."""
        return [
            BackendState(name=n, state=st, reason=reason, since=parse_ts(since) if since else None)
            for n, st, reason, since in self._q("SELECT name, state, reason, since FROM backend_state ORDER BY name")
        ]

    def set_backend_state(self, name: str, state: str, reason: str | None) -> None:
        self._update(
            "INSERT INTO backend_state (name, state, reason, since) VALUES (?,?,?,?) "
            "ON CONFLICT(name) DO UPDATE SET state=excluded.state, reason=excluded.reason, since=excluded.since",
            (name, state, self._clean(reason), format_ts(utcnow())),
        )

    def get_cursor(self, backend: str, case_id: str) -> str | None:
        rows = self._q("SELECT cursor FROM cursors WHERE backend=? AND case_id=?", (backend, case_id))
        return rows[0][0] if rows else None

    def set_cursor(self, backend: str, case_id: str, cursor: str | None) -> None:
        self._update(
            "INSERT INTO cursors (backend, case_id, cursor, updated_at) VALUES (?,?,?,?) "
            "ON CONFLICT(backend, case_id) DO UPDATE SET cursor=excluded.cursor, updated_at=excluded.updated_at",
            (backend, case_id, self._clean(cursor), format_ts(utcnow())),
        )

    # -- human actions taken in (dedupe across webhook and polling, replay protection) -------------
    def claim_action(self, scope: str, key: str, case_id: str | None = None) -> bool:
        """Claim `(scope, key)`; True only for the first caller, in any process (primary key)."""
        key = self._clean(key) or key
        with self._tx() as c:
            cur = c.execute(
                "INSERT INTO human_actions (scope, key, case_id, seen_at) VALUES (?,?,?,?) "
                "ON CONFLICT(scope, key) DO NOTHING",
                (scope, key, case_id, format_ts(utcnow())),
            )
            return bool(cur.rowcount == 1)

    def link_action(self, scope: str, key: str, entry_id: str) -> None:
        self._update("UPDATE human_actions SET entry_id=? WHERE scope=? AND key=?", (entry_id, scope, self._clean(key)))

    def action_entry(self, scope: str, key: str) -> str | None:
        rows = self._q("SELECT entry_id FROM human_actions WHERE scope=? AND key=?", (scope, self._clean(key)))
        return rows[0][0] if rows else None

    def release_action(self, scope: str, key: str) -> None:
        """Forget a claim whose recording failed, so the next delivery or poll can take it again."""
        self._update("DELETE FROM human_actions WHERE scope=? AND key=?", (scope, self._clean(key)))

