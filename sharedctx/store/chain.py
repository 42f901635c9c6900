"""The hash chain every store writes and `verify` reads: entries built onto a case's chain, and checked.

An entry's hash covers its canonical JSON and the previous entry's hash (`model.entry_payload`); this is
the one place a store turns a draft into such an entry (`PreparedEntry`, `build_entry`), reads a stored
row back without re-validating it (`trusted`, `construct_entry`), chains its checkpoints of case heads
(`checkpoint_hash`), and checks a chain end to end (`verify_entries`). The `Store` protocol is in `base`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from ..model import (
    GENESIS_HASH,
    ChainIssue,
    Entry,
    EntryDraft,
    VerifyReport,
    entry_payload,
    format_ts,
    new_id,
    utcnow,
)


def checkpoint_hash(prev_hash: str, at: str, heads: dict[str, tuple[int, str]]) -> str:
    body = json.dumps({"at": at, "heads": {k: list(v) for k, v in sorted(heads.items())}},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(prev_hash.encode("ascii") + body.encode("utf-8")).hexdigest()


# The top-level keys of `entry_payload` whose values depend on where an entry lands on its chain (known only
# inside the append's transaction); everything else is serialised before the transaction starts.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PLACED_KEYS = frozenset({"id", "seq", "ts", "prev_hash"})
_encode_str = json.encoder.encode_basestring  # what `json.dumps(ensure_ascii=False)` writes for a str
_canonical_json = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


class _Probe:
    """What `entry_payload` reads of an entry, for a draft not yet on its chain: a plain object instead of an
    `Entry` (building a pydantic model only to read its attributes back cost ~7 µs per append)."""

    __slots__ = ("attrs", "author", "body", "case_id", "evidence", "hash", "id", "kind", "prev_hash", "ref", "seq",
                 "title", "trace_id", "ts")

    def __init__(self, draft: EntryDraft) -> None:
        self.id, self.seq, self.ts, self.prev_hash, self.hash = "", 0, EPOCH, "", ""
        self.case_id, self.author, self.kind, self.title = draft.case_id, draft.author, draft.kind, draft.title
        self.body, self.evidence, self.ref, self.trace_id = draft.body, draft.evidence, draft.ref, draft.trace_id
        self.attrs = draft.attrs


M = TypeVar("M", bound=BaseModel)


def trusted(cls: type[M], fields: dict[str, Any]) -> M:
    """`cls.model_construct(**fields)` for a dict that holds every one of the model's fields: the same instance
    (checked by tests against `model_construct`), without `model_construct`'s per-field alias and default
    handling, which was most of the cost of reading a stored entry (~20 us a row; a search reads hundreds) and
    ~6 µs of an append's ~170 µs of Python. Only for models without aliases, post-init hooks or extra fields,
    from data already valid (validated when it was stored, or built from a validated draft)."""
    m = cls.__new__(cls)
    object.__setattr__(m, "__dict__", fields)
    object.__setattr__(m, "__pydantic_fields_set__", set(fields))
    object.__setattr__(m, "__pydantic_extra__", None)
    object.__setattr__(m, "__pydantic_private__", None)
    return m


_ENTRY_FIELDS = tuple(Entry.model_fields)


def construct_entry(values: dict[str, Any]) -> Entry:
    """`trusted(Entry, ...)` with the fields in the model's order, whatever order `values` has."""
    return trusted(Entry, {name: values[name] for name in _ENTRY_FIELDS})


class PreparedEntry:
    """A (redacted, validated) draft with its canonical bytes built up to the chain position.

    `canonical_bytes` is `json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)` of the
    entry's payload, i.e. its top-level keys in sorted order, each value dumped the same way. Every value
    except id, seq, ts and prev_hash is known from the draft, so this serialises them once, outside the
    append's transaction (and, for SQLite's group commit, outside its lock), and feeds the bytes before the
    first placed key into a sha256 already. `place` only adds the four small values and the tail. The result
    is byte-for-byte `canonical_bytes(entry)`: `Entry.compute_hash` (what `verify` runs) recomputes it the slow
    way, and a unit test compares the two on fuzzed entries.
    """

    __slots__ = ("_head", "_order", "_segments", "draft", "json", "ts_text")

    def __init__(self, draft: EntryDraft) -> None:
        self.draft = draft
        payload = entry_payload(_Probe(draft), with_hash=False)  # type: ignore[arg-type]  # reads attributes only
        self.json: dict[str, str] = {}  # each content value as serialised into the hash (the store reuses them)
        segments: list[str] = []
        order: list[str] = []
        part = "{"
        for key in sorted(payload):
            part += ("" if part == "{" else ",") + _encode_str(key) + ":"
            if key in _PLACED_KEYS:
                segments.append(part)
                order.append(key)
                part = ""
            else:
                value = payload[key]
                self.json[key] = text = _encode_str(value) if type(value) is str else _canonical_json(value)
                part += text
        segments.append(part + "}")
        self._order = tuple(order)
        self._segments = tuple(segments)
        self._head = hashlib.sha256(segments[0].encode("utf-8"))
        self.ts_text = ""  # the stored form of the last `place`'s timestamp (what its hash covers)

    def place(self, seq: int, prev_hash: str) -> Entry:
        """The entry at `seq` after `prev_hash`: a new id and timestamp, and its chain hash."""
        entry_id, ts = new_id(), utcnow()
        self.ts_text = ts_text = format_ts(ts)
        values = {"id": _encode_str(entry_id), "seq": str(seq), "ts": _encode_str(ts_text),
                  "prev_hash": _encode_str(prev_hash)}
        tail = "".join(values[k] + s for k, s in zip(self._order, self._segments[1:], strict=True))
        digest = self._head.copy()
        digest.update(tail.encode("utf-8") + prev_hash.encode("ascii"))
        d = self.draft
        return construct_entry({
            "id": entry_id, "case_id": d.case_id, "seq": seq, "ts": ts, "author": d.author, "kind": d.kind,
            "title": d.title, "body": d.body, "evidence": d.evidence, "ref": d.ref, "trace_id": d.trace_id,
            "attrs": d.attrs, "prev_hash": prev_hash, "hash": digest.hexdigest(),
        })  # fmt: skip


def build_entry(draft: EntryDraft, seq: int, prev_hash: str) -> Entry:
    """Place a (validated) draft on the chain. This is on `record()`'s hot path: the canonical
    bytes are built once straight from the draft, and `model_construct` skips re-validation."""
    return PreparedEntry(draft).place(seq, prev_hash)


def verify_entries(case_id: str, entries: Sequence[Entry]) -> VerifyReport:
    """Check gap-free sequence, prev-hash links and every hash; name the first entry that breaks."""
    issues: list[ChainIssue] = []
    prev = GENESIS_HASH
    expected_seq = 1
    for e in entries:
        if e.seq != expected_seq:
            problem = (
                f"sequence jumps from {expected_seq - 1} to {e.seq}: entries missing or reordered"
                if e.seq > expected_seq
                else f"sequence number {e.seq} repeats or goes backwards (expected {expected_seq})"
            )
            issues.append(ChainIssue(case_id=case_id, seq=e.seq, entry_id=e.id, problem=problem))
        if e.prev_hash != prev:
            issues.append(
                ChainIssue(
                    case_id=case_id,
                    seq=e.seq,
                    entry_id=e.id,
                    problem="prev_hash does not match the previous entry's hash (an entry before it "
                    "was removed, inserted or altered)",
                )
            )
        actual = e.compute_hash()
        if actual != e.hash:
            issues.append(
                ChainIssue(
                    case_id=case_id,
                    seq=e.seq,
                    entry_id=e.id,
                    problem=f"content does not match its hash (stored {e.hash[:12]}…, computed "
                    f"{actual[:12]}…): the entry was edited after it was recorded",
                )
            )
        prev = e.hash
        expected_seq = e.seq + 1
    return VerifyReport(case_id=case_id, entries=len(entries), ok=not issues, issues=issues)
