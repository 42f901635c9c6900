"""The data model: cases, entries, evidence, and the hash chain that makes the journal tamper-evident.

Entries are immutable (frozen pydantic models) and carry everything needed to rebuild and verify
a case's history from any copy of it — the local store or an external backend's embedded copies.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from ulid import ULID

GENESIS_HASH = "0" * 64
MAX_TITLE_CHARS = 300
MAX_BODY_BYTES = 256 * 1024
MAX_EVIDENCE_ITEMS = 100


class EntryKind(StrEnum):
    ALERT = "alert"
    TRIAGE = "triage"
    FINDING = "finding"
    ACTION = "action"
    DECISION_REQUEST = "decision-request"
    DECISION = "decision"
    REMEDIATION = "remediation"
    VERIFICATION = "verification"
    RESOLUTION = "resolution"
    NOTE = "note"
    HANDOFF = "handoff"
    CORRECTION = "correction"


class CaseStatus(StrEnum):
    OPEN = "open"
    MITIGATED = "mitigated"
    RESOLVED = "resolved"

    @property
    def rank(self) -> int:
        return ("open", "mitigated", "resolved").index(self.value)


AuthorKind = Literal["primary", "partner", "human", "system"]
EvidenceType = Literal["metric", "log", "span", "query", "link"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    """A ULID: unique, and sorts by creation time, so ids double as a coarse clock."""
    return str(ULID())


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def format_ts(value: datetime) -> str:
    """The one textual form of a timestamp used in hashes and storage (UTC, microseconds, `Z`)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(value: str | datetime) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


class Author(BaseModel):
    """Who wrote an entry. `kind` says which side (primary/partner agent, a human, sharedctx itself)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: AuthorKind
    name: str = Field(min_length=1, max_length=200)

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"

    @classmethod
    def parse(cls, text: str) -> Author:
        """`"partner:telemetry"` -> Author(kind="partner", name="telemetry"); a bare name is a human."""
        kind, sep, name = text.partition(":")
        if not sep:
            return cls(kind="human", name=text)
        return cls(kind=kind, name=name)


SYSTEM = Author(kind="system", name="sharedctx")


class Evidence(BaseModel):
    """One piece of evidence behind an entry: where it came from and over which time window."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    type: EvidenceType
    source: str = Field(min_length=1, description="system the evidence came from, e.g. 'prometheus'")
    summary: str = ""
    query: str | None = None
    url: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    _norm = field_validator("start", "end")(_utc)


class EntryDraft(BaseModel):
    """What a caller asks to record; the store turns it into an `Entry` (id, seq, time, chain)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    case_id: str
    kind: EntryKind
    title: str
    body: str = ""
    author: Author = SYSTEM
    evidence: tuple[Evidence, ...] = ()
    ref: str | None = None
    trace_id: str | None = None
    attrs: dict[str, Any] = Field(default_factory=dict)


class Entry(BaseModel):
    """An immutable journal entry. `hash = sha256(canonical(entry) + prev_hash)`."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str
    case_id: str
    seq: int = Field(ge=1)
    ts: datetime
    author: Author
    kind: EntryKind
    title: str
    body: str = ""
    evidence: tuple[Evidence, ...] = ()
    ref: str | None = None
    trace_id: str | None = None
    attrs: dict[str, Any] = Field(default_factory=dict)
    prev_hash: str = GENESIS_HASH
    hash: str = ""

    _norm_ts = field_validator("ts")(_utc)

    def canonical(self) -> bytes:
        return canonical_bytes(self)

    def compute_hash(self) -> str:
        return chain_hash(self.canonical(), self.prev_hash)

    def to_json(self) -> str:
        return json.dumps(entry_payload(self, with_hash=True), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> Entry:
        return cls.model_validate(json.loads(text))


def _evidence_payload(ev: Evidence) -> dict[str, Any]:
    d = ev.model_dump(mode="json")
    d["start"] = format_ts(ev.start) if ev.start else None
    d["end"] = format_ts(ev.end) if ev.end else None
    return d


def entry_payload(entry: Entry, *, with_hash: bool) -> dict[str, Any]:
    """A plain-JSON form of the entry with one fixed textual form per value (hash input)."""
    d: dict[str, Any] = {
        "id": entry.id,
        "case_id": entry.case_id,
        "seq": entry.seq,
        "ts": format_ts(entry.ts),
        "author": {"kind": entry.author.kind, "name": entry.author.name},
        "kind": entry.kind.value,
        "title": entry.title,
        "body": entry.body,
        "evidence": [_evidence_payload(e) for e in entry.evidence],
        "ref": entry.ref,
        "trace_id": entry.trace_id,
        "attrs": entry.attrs,
        "prev_hash": entry.prev_hash,
    }
    if with_hash:
        d["hash"] = entry.hash
    return d


def canonical_bytes(entry: Entry) -> bytes:
    return json.dumps(
        entry_payload(entry, with_hash=False), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def chain_hash(canonical: bytes, prev_hash: str) -> str:
    return hashlib.sha256(canonical + prev_hash.encode("ascii")).hexdigest()


class ExternalRef(BaseModel):
    """Where a thread or an entry lives in an external system (e.g. a GitHub comment)."""

    model_config = ConfigDict(frozen=True, extra="allow")
    backend: str
    id: str
    url: str | None = None


class CaseRecord(BaseModel):
    """A case (one incident) as stored. Bindings map a backend name to its thread (filled by connectors)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str
    title: str
    service: str = ""
    severity: str = "warning"
    status: CaseStatus = CaseStatus.OPEN
    fingerprint: str | None = None
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None = None
    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    bindings: dict[str, dict[str, Any]] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)

    _norm = field_validator("created_at", "updated_at", "resolved_at")(_utc)


class Delivery(BaseModel):
    """One outbox row: deliver entry `entry_id` of case `case_id` to backend `backend`."""

    model_config = ConfigDict(frozen=True)
    id: int
    entry_id: str
    case_id: str
    seq: int
    backend: str
    state: Literal["pending", "delivered", "dead"]
    attempts: int = 0
    next_attempt_at: datetime
    last_error: str | None = None
    last_error_kind: str | None = None
    external: dict[str, Any] | None = None
    created_at: datetime | None = None
    delivered_at: datetime | None = None
    lease_token: int = 0  # fencing token of the claim that returned this row; state changes must name it
    sent_possibly: bool = False  # an earlier attempt may have reached the backend: reconcile before sending


class BackendState(BaseModel):
    """Whether a backend is running or stopped by an auth failure, and why, in plain words."""

    name: str
    state: Literal["running", "stopped"] = "running"
    reason: str | None = None
    since: datetime | None = None


class ChainIssue(BaseModel):
    case_id: str
    seq: int | None
    entry_id: str | None
    problem: str


class VerifyReport(BaseModel):
    case_id: str
    entries: int
    ok: bool
    issues: list[ChainIssue] = Field(default_factory=list)
