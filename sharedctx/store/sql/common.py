"""Rows, columns and helpers every part of the shared SQL store uses (see `sharedctx.store.sql`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ...model import (
    Author,
    CaseStatus,
    Entry,
    EntryDraft,
    EntryKind,
    Evidence,
    _evidence_payload,
    format_ts,
    parse_ts,
)
from ...redact import Redactor, default_redactor
from ..chain import PreparedEntry, trusted

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
    if isinstance(value, str):  # most entries' evidence and attrs are empty: no parse for them
        return [] if value == "[]" else {} if value == "{}" else json.loads(value)
    return json.loads(value) if isinstance(value, bytes) else value


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


_AUTHORS: dict[tuple[str, str], Author] = {}


def _author(kind: str, name: str) -> Author:
    """One shared (frozen, immutable) Author per writer: a journal has few, and a search reads hundreds of
    entries."""
    a = _AUTHORS.get((kind, name))
    if a is None:
        if len(_AUTHORS) >= 4096:
            _AUTHORS.clear()
        a = _AUTHORS[(kind, name)] = trusted(Author, {"kind": kind, "name": name})
    return a


def stored_entry(r: Sequence[Any]) -> Entry:
    """An Entry from a row of ENTRY_COLS without re-validation: history search reads hundreds of stored
    entries per query, and what the store holds was validated when it was recorded (and is hash-checked
    by `verify`, not here)."""
    return trusted(Entry, {
        "id": r[0], "case_id": r[1], "seq": r[2], "ts": parse_ts(r[3]),
        "author": _author(r[4], r[5]), "kind": EntryKind(r[6]), "title": r[7],
        "body": r[8], "evidence": tuple(Evidence.model_construct(**x) for x in (_json(r[9]) or ())),
        "ref": r[10], "trace_id": r[11], "attrs": _json(r[12]) or {}, "prev_hash": r[13], "hash": r[14],
    })


def evidence_text(entry: Entry | EntryDraft) -> str:
    """What of the evidence is worth searching: summaries, queries, sources."""
    return " ".join(" ".join(filter(None, (e.summary, e.query, e.source))) for e in entry.evidence)


def entry_params(entry: Entry) -> dict[str, Any]:
    return placed_entry_params(entry, static_entry_params(entry))


def static_entry_params(entry: Entry | EntryDraft, prepared: PreparedEntry | None = None) -> dict[str, Any]:
    """The stored columns that do not depend on where the entry lands on its chain (serialised before the
    append's transaction). With `prepared`, evidence and attrs are stored as the very JSON text that was
    hashed (canonical: sorted keys, compact) instead of being serialised a second time; readers parse it."""
    if prepared is not None:
        evidence, attrs = prepared.json["evidence"], prepared.json["attrs"]
    else:
        evidence = json.dumps([_evidence_payload(e) for e in entry.evidence], ensure_ascii=False)
        attrs = json.dumps(entry.attrs, ensure_ascii=False, sort_keys=True)
    return {
        "case_id": entry.case_id,
        "author_kind": entry.author.kind,
        "author_name": entry.author.name,
        "kind": entry.kind.value,
        "title": entry.title,
        "body": entry.body,
        "evidence": evidence,
        "ref": entry.ref,
        "trace_id": entry.trace_id,
        "attrs": attrs,
        "evidence_text": evidence_text(entry),
    }


def placed_entry_params(entry: Entry, static: dict[str, Any], ts_text: str | None = None) -> dict[str, Any]:
    """`static` plus the columns the chain position decides: the row `INSERT INTO entries` writes. `ts_text` is
    `format_ts(entry.ts)` when the caller has it already (`PreparedEntry.place` formatted it for the hash)."""
    return {**static, "id": entry.id, "seq": entry.seq, "ts": ts_text or format_ts(entry.ts),
            "prev_hash": entry.prev_hash, "hash": entry.hash}


@dataclass(frozen=True, slots=True)
class PreparedAppend:
    """One append, prepared outside the transaction (see `JournalSQL._prepare_append`)."""

    entry: PreparedEntry
    backends: tuple[str, ...]
    status: CaseStatus | None
    params: dict[str, Any]


def next_status(current: str, requested: CaseStatus | None) -> str:
    """Status only moves forward (open → mitigated → resolved); a late note never reopens a case."""
    if requested is None:
        return current
    return requested.value if requested.rank > CaseStatus(current).rank else current


def head_after(status: str, resolved_at: str | None, requested: CaseStatus | None, ts: str) -> tuple[str, str | None]:
    """A case's status and `resolved_at` after an entry stamped `ts` that asked for `requested`: the one rule
    for both ways of writing appends (`JournalSQL._write_append`, SQLite's `GroupCommit._place`)."""
    new = next_status(status, requested)
    return new, resolved_at or (ts if new == "resolved" else None)


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def equal_to(**columns: str | None) -> tuple[str, list[Any]]:
    """`col = ?` for each column given a value (None or empty: no condition), AND-ed; "1=1" for none."""
    given = {k: v for k, v in columns.items() if v}
    return " AND ".join(f"{k}=?" for k in given) or "1=1", list(given.values())


class Conn:
    """The few methods both drivers' connections offer, as the shared code uses them."""

    def execute(self, sql: str, params: Any = ...) -> Any: ...
    def executemany(self, sql: str, params: Any) -> Any: ...


class SQLBase:
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

    def _update(self, sql: str, params: Any, *, durable: bool = True) -> int:
        """One writing statement; the number of rows it changed. `durable=False` lets PostgreSQL answer
        before the commit is flushed to disk, for a change that is safe to lose in a database crash
        (see `OutboxSQL.mark_delivered`); SQLite commits as it is configured either way."""
        with self._tx() as c:
            return int(c.execute(sql, params).rowcount)

    def _one(self, sql: str, params: Any) -> list[Any]:
        """Run one writing statement that returns rows (atomic on its own; PostgreSQL skips BEGIN/COMMIT)."""
        with self._tx() as c:
            return list(c.execute(sql, params).fetchall())

