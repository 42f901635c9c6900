"""The data model: cases, entries, evidence, and the hash chain that makes the journal tamper-evident.

Entries are immutable (frozen pydantic models) and carry everything needed to rebuild and verify
a case's history from any copy of it — the local store or an external backend's embedded copies.

Every model here (and in store/base.py, backends/base.py) says `defer_build=True`: pydantic builds a model's
validator on its first use instead of at import. A command touches a few of them; building all of them cost
`sharedctx case list` ~40 ms of CPU (issue 13, "Fast CLI").
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
import unicodedata
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

GENESIS_HASH = "0" * 64

# -- limits: every field a caller can fill has one, here and nowhere else --------------------------------
# They bound what one request can make the journal, the backends and every reader carry, and they are
# checked on the *input* models (EntryDraft, CaseDraft) only: redaction may lengthen a value a little
# (a placeholder is longer than a short password), and a stored entry must always read back.
MAX_TITLE_CHARS = 300
MAX_BODY_BYTES = 256 * 1024
MAX_EVIDENCE_ITEMS = 100
MAX_AUTHOR_NAME_CHARS = 200
MAX_ID_CHARS = 64  # case ids, entry ids (`ref`); ours are 26-character ULIDs
MAX_SOURCE_CHARS = 200  # evidence.source
MAX_SUMMARY_CHARS = 4096  # evidence.summary
MAX_QUERY_CHARS = 16 * 1024  # evidence.query
MAX_URL_CHARS = 4096  # evidence.url
MAX_DATA_BYTES = 64 * 1024  # evidence.data, as compact JSON (UTF-8)
MAX_ATTRS_BYTES = 64 * 1024  # attrs, as compact JSON (UTF-8)
MAX_JSON_DEPTH = 16  # nesting of attrs and evidence.data
MAX_SERVICE_CHARS = 64
MAX_SEVERITY_CHARS = 32
MAX_FINGERPRINT_CHARS = 256
MAX_LABELS = 64
MAX_LABEL_KEY_CHARS = 128
MAX_LABEL_VALUE_CHARS = 1024

# A W3C trace-id: 32 lowercase hex digits, not all zero (https://www.w3.org/TR/trace-context/#trace-id).
TRACE_ID_RE = re.compile(r"^(?!0{32}$)[0-9a-f]{32}$")
# A service is a slug: lowercase ASCII letters, digits, `.`, `_`, `-`, starting with a letter or digit, at most
# 64 characters. Edges that take free text (the alert intake) normalise it with `service_slug`.
SERVICE_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
SERVICE_RE = re.compile(SERVICE_PATTERN)
_NOT_SLUG = re.compile(r"[^a-z0-9._-]+")


def service_slug(text: str) -> str:
    """`"Checkout API"` -> `"checkout-api"`, `"zahlungsdienst-ä"` -> `"zahlungsdienst-a"`: the slug form of a
    free-text service name ("" if nothing is left). Always matches `SERVICE_PATTERN` or is empty."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return _NOT_SLUG.sub("-", ascii_text.lower()).lstrip("-._")[:63].rstrip("-")


def json_size(value: Any, what: str, *, max_bytes: int, max_depth: int = MAX_JSON_DEPTH) -> int:
    """The size of `value` as compact JSON in UTF-8, after checking its nesting depth; ValueError naming
    `what` and the limit if it is too deep, too big, or not JSON at all (sets, NaN, objects)."""
    if type(value) is dict and not value:  # `{}`: most attrs and evidence data; json.dumps costs µs on record()
        return 2
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:  # iterative: a 10,000-deep payload must get an error, not a RecursionError
        item, depth = stack.pop()
        if isinstance(item, dict | list | tuple):
            if depth > max_depth:
                raise ValueError(f"{what} is nested deeper than {max_depth} levels; the limit is {max_depth}")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((c, depth + 1) for c in children)
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be plain JSON (objects, arrays, strings, finite numbers, booleans, "
                         f"null): {exc}") from None
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise ValueError(f"{what} is {size:,} bytes as JSON; the limit is {max_bytes:,} bytes")
    return size


def _max_chars(value: str | None, what: str, limit: int) -> None:
    if value is not None and len(value) > limit:
        raise ValueError(f"{what} is {len(value):,} characters; the limit is {limit:,}")


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


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # every 10-bit value as its two characters
_SHIFTS = range(120, -1, -10)
_last_id = [0, 0]  # the last id's milliseconds and randomness, for ids minted within the same millisecond
_id_lock = threading.Lock()


def _forget_ids_in_child() -> None:
    """After `os.fork`: a child continuing its parent's `last + 1` would mint the parent's next ids, and a lock
    held by another thread at the fork would stay held. Start over with fresh randomness and a new lock."""
    global _id_lock
    _last_id[:] = [0, 0]
    _id_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_ids_in_child)


def new_id() -> str:
    """A ULID: unique, and sorts by creation time, so ids double as a coarse clock.

    The ULID spec written out (48 bits of Unix milliseconds, 80 random bits, Crockford base32), monotonic
    within a millisecond like python-ulid's default generator: the next id of the same millisecond is the
    last one's randomness + 1. python-ulid built an object, took its lock and read its package metadata
    at import for the same 26 characters (~4 µs of every append, ~10 ms of a CLI command's start-up);
    a test checks that `ulid.ULID` parses what this mints and that ids sort in minting order."""
    ms = time.time_ns() // 1_000_000
    with _id_lock:
        last_ms, last_rand = _last_id
        if ms <= last_ms and last_rand < (1 << 80) - 1:
            ms, rand = last_ms, last_rand + 1
        else:
            ms, rand = ms if ms > last_ms else last_ms + 1, int.from_bytes(os.urandom(10), "big")
        _last_id[0], _last_id[1] = ms, rand
    value = (ms << 80) | rand  # 128 bits, written as 26 characters of 5 bits (the first holds 3), 2 at a time
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def format_ts(value: datetime) -> str:
    """The one textual form of a timestamp used in hashes and storage (UTC, microseconds, `Z`)."""
    if value.tzinfo is UTC and value.year >= 1000:  # what `utcnow()` makes: one C call (on record()'s path)
        return value.isoformat(timespec="microseconds")[:-6] + "Z"
    utc = value.astimezone(UTC)
    if utc.year >= 1000:  # the same text as the strftime below, a few times faster (it is on record()'s path)
        return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(value: str | datetime) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


class Author(BaseModel):
    """Who wrote an entry. `kind` says which side (primary/partner agent, a human, sharedctx itself)."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")
    kind: AuthorKind
    name: str = Field(min_length=1, max_length=MAX_AUTHOR_NAME_CHARS)

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

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")
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
    """What a caller asks to record; the store turns it into an `Entry` (id, seq, time, chain).

    Every limit is checked here, so every path that records (API, CLI, MCP, intake, webhooks, read-back)
    gets the same clear error naming the field and its limit.
    """

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")
    case_id: str = Field(max_length=MAX_ID_CHARS)  # "" for the first entry of a case not yet opened
    kind: EntryKind
    title: str = Field(min_length=1)
    body: str = ""
    author: Author = SYSTEM
    evidence: tuple[Evidence, ...] = ()
    ref: str | None = Field(None, max_length=MAX_ID_CHARS)
    trace_id: str | None = None
    attrs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("title")
    @classmethod
    def _title(cls, v: str) -> str:
        _max_chars(v, "title", MAX_TITLE_CHARS)
        return v

    @field_validator("body")
    @classmethod
    def _body(cls, v: str) -> str:
        size = len(v.encode("utf-8", "surrogatepass"))
        if size > MAX_BODY_BYTES:
            raise ValueError(f"body is {size:,} bytes; the limit is {MAX_BODY_BYTES:,} bytes (UTF-8). Put large "
                             "data in evidence links, or split it into several entries")
        return v

    @field_validator("trace_id")
    @classmethod
    def _trace_id(cls, v: str | None) -> str | None:
        if v is not None and not TRACE_ID_RE.match(v):  # never echo the value: it may be anything
            raise ValueError("trace_id must be a W3C trace-id: exactly 32 lowercase hex digits, not all zero "
                             f"(got {len(v)} characters)")
        return v

    @field_validator("attrs")
    @classmethod
    def _attrs(cls, v: dict[str, Any]) -> dict[str, Any]:
        json_size(v, "attrs", max_bytes=MAX_ATTRS_BYTES)
        return v

    @field_validator("evidence")
    @classmethod
    def _evidence(cls, v: tuple[Evidence, ...]) -> tuple[Evidence, ...]:
        if len(v) > MAX_EVIDENCE_ITEMS:
            raise ValueError(f"evidence has {len(v)} items; the limit is {MAX_EVIDENCE_ITEMS} per entry")
        for i, ev in enumerate(v):
            where = f"evidence[{i}]"
            _max_chars(ev.source, f"{where}.source", MAX_SOURCE_CHARS)
            _max_chars(ev.summary, f"{where}.summary", MAX_SUMMARY_CHARS)
            _max_chars(ev.query, f"{where}.query", MAX_QUERY_CHARS)
            _max_chars(ev.url, f"{where}.url", MAX_URL_CHARS)
            json_size(ev.data, f"{where}.data", max_bytes=MAX_DATA_BYTES)
        return v


class CaseDraft(BaseModel):
    """What a caller asks to open a case with; the store validates, sanitises and stores it.

    Like `EntryDraft`, the one place the case fields' limits and formats are checked.
    """

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")
    title: str = Field(min_length=1)
    service: str = ""
    severity: str = Field("warning", min_length=1)
    fingerprint: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("title")
    @classmethod
    def _title(cls, v: str) -> str:
        _max_chars(v, "title", MAX_TITLE_CHARS)
        return v

    @field_validator("service")
    @classmethod
    def _service(cls, v: str) -> str:
        if v and not SERVICE_RE.match(v):  # no "did you mean": the value is never echoed (it may be a secret)
            raise ValueError(
                f"service must be a slug of at most {MAX_SERVICE_CHARS} characters: lowercase letters, digits, "
                "'.', '_' and '-', starting with a letter or digit (e.g. 'checkout-api')"
            )
        return v

    @field_validator("severity")
    @classmethod
    def _severity(cls, v: str) -> str:
        _max_chars(v, "severity", MAX_SEVERITY_CHARS)
        return v

    @field_validator("fingerprint")
    @classmethod
    def _fingerprint(cls, v: str | None) -> str | None:
        _max_chars(v, "fingerprint", MAX_FINGERPRINT_CHARS)
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > MAX_LABELS:
            raise ValueError(f"labels has {len(v)} entries; the limit is {MAX_LABELS}")
        for key, value in v.items():
            if not key or len(key) > MAX_LABEL_KEY_CHARS:
                raise ValueError(f"labels: a key is {len(key)} characters; keys must be 1–{MAX_LABEL_KEY_CHARS}")
            _max_chars(value, f"labels.{key}" if len(key) <= 40 else "labels", MAX_LABEL_VALUE_CHARS)
        return v


class Entry(BaseModel):
    """An immutable journal entry. `hash = sha256(canonical(entry) + prev_hash)`."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")
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

    model_config = ConfigDict(defer_build=True, frozen=True, extra="allow")
    backend: str
    id: str
    url: str | None = None


class CaseRecord(BaseModel):
    """A case (one incident) as stored. Bindings map a backend name to its thread (filled by connectors)."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")
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

    model_config = ConfigDict(defer_build=True, frozen=True)
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

    model_config = ConfigDict(defer_build=True)

    name: str
    state: Literal["running", "stopped"] = "running"
    reason: str | None = None
    since: datetime | None = None


class ChainIssue(BaseModel):
    model_config = ConfigDict(defer_build=True)

    case_id: str
    seq: int | None
    entry_id: str | None
    problem: str


class VerifyReport(BaseModel):
    model_config = ConfigDict(defer_build=True)

    case_id: str
    entries: int
    ok: bool
    issues: list[ChainIssue] = Field(default_factory=list)
