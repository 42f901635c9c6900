"""The Store protocol, one protocol per seam, with the models that cross it; and how a store is opened.

A store is the local, durable half of "investigate first, persist second": `append()` writes the
entry, its full-text row and one outbox row per backend in ONE transaction and returns. Nothing in
this interface updates or deletes an entry.

Building entries onto a case's hash chain and verifying it is `sharedctx.store.chain`.
"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from ..errors import ConfigError
from ..model import (
    BackendState,
    CaseRecord,
    CaseStatus,
    Delivery,
    Entry,
    EntryDraft,
)
from ..redact import Redactor

# The entry/chain helpers lived in this module; re-exported so `from sharedctx.store.base import ...` still works.
from .chain import PreparedEntry as PreparedEntry
from .chain import build_entry as build_entry
from .chain import checkpoint_hash
from .chain import construct_entry as construct_entry
from .chain import trusted as trusted
from .chain import verify_entries as verify_entries


class SearchFilters(BaseModel):
    """Structured filters every search understands (CLI `service:x kind:y`, API, MCP)."""

    model_config = ConfigDict(defer_build=True)

    service: str | None = None
    services: list[str] | None = None  # any of these (what `service:pay` resolved to; see sharedctx.search)
    kinds: list[str] | None = None
    author_kind: str | None = None
    author: str | None = None
    case_id: str | None = None
    case_status: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class SearchRow(BaseModel):
    """One full-text match: the entry, its case's service/status, a raw relevance score, a snippet."""

    model_config = ConfigDict(defer_build=True)

    entry: Entry
    service: str
    case_title: str
    case_status: str
    score: float
    snippet: str


class EntryMatch(BaseModel):
    """An entry condition for history search: its kind, author kind and/or `attrs[attr]` in `values`."""

    model_config = ConfigDict(defer_build=True)

    kind: str | None = None
    author_kind: str | None = None
    attr: str | None = Field(default=None, pattern=r"^\w{1,64}$")
    values: list[str] = Field(default_factory=list)


class CandidateQuery(BaseModel):
    """What `search_candidates` retrieves: full-text `match` (see `MatchExpr`), filters, case conditions.

    `match` is OR over clauses; a clause is AND over groups; a group is OR over alternatives; an
    alternative is one word or a phrase (words separated by spaces). Words must be `literal_terms`.
    """

    model_config = ConfigDict(defer_build=True)

    match: list[list[list[str]]] = Field(default_factory=list)
    filters: SearchFilters = Field(default_factory=SearchFilters)
    case_has: list[EntryMatch] = Field(default_factory=list)  # the case has an entry matching any of these
    entry_is: list[EntryMatch] = Field(default_factory=list)  # the entry itself matches one of these
    min_rowid: int | None = None  # only entries at or after this storage position (recency window)


class Candidate(BaseModel):
    """One entry a history search retrieved, with what ranking needs of its case."""

    model_config = ConfigDict(defer_build=True)

    entry: Entry
    rowid: int
    service: str
    case_title: str
    case_status: str
    fingerprint: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    case_created_at: datetime
    case_resolved_at: datetime | None = None
    score: float = 0.0  # full-text relevance, higher is better; 0 without text


class Checkpoint(BaseModel):
    """Case heads at a moment, chained to the previous checkpoint (see `SQLStore.write_checkpoint`)."""

    model_config = ConfigDict(defer_build=True)

    id: int
    at: str
    heads: dict[str, tuple[int, str]]  # case id -> (last seq, last hash) for the cases that moved since
    prev_hash: str
    hash: str

    def expected_hash(self) -> str:
        return checkpoint_hash(self.prev_hash, self.at, self.heads)


class OutboxHealth(BaseModel):
    """One backend's outbox as `/metrics` reports it (`SQLStore.outbox_health`)."""

    model_config = ConfigDict(defer_build=True)

    backend: str
    pending: int = 0  # due or backing off, not held
    held: int = 0  # waiting for a human decision
    dead: int = 0  # dead letters an operator must look at (declined ones excluded)
    declined: int = 0
    oldest_pending_at: float | None = None  # epoch seconds the oldest pending (not held) row was created


class InvestigationLease(BaseModel):
    """One investigation as a replica holds it (`Investigations`): the fencing token that proves the lease,
    the next step, what the finished steps learned, and a resolved alert waiting to be verified."""

    model_config = ConfigDict(defer_build=True)

    case_id: str
    token: int
    owner: str | None  # None when read back (`get_investigation`) while no replica holds it
    step: str
    state: dict[str, Any] = Field(default_factory=dict)
    resolved: dict[str, Any] | None = None


class Journal(Protocol):
    """Cases and the append-only journal: the only writes an agent makes (redacted in `SQLStore`)."""

    url: str
    redactor: Redactor  # every value is sanitised with it before it is written (see SQLStore)

    def migrate(self) -> None: ...
    def close(self) -> None: ...

    # cases
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
    ) -> tuple[CaseRecord, bool]: ...
    def get_case(self, case_id: str) -> CaseRecord: ...
    def find_open_case(self, fingerprint: str) -> CaseRecord | None: ...
    def list_cases(
        self, *, status: str | None = None, service: str | None = None, limit: int = 100
    ) -> list[CaseRecord]: ...
    def set_binding(self, case_id: str, backend: str, thread: dict[str, Any]) -> None: ...

    # journal
    def append(
        self, draft: EntryDraft, backends: Sequence[str], status: CaseStatus | None = None
    ) -> Entry: ...
    def entries(
        self,
        case_id: str,
        *,
        since_seq: int = 0,
        kinds: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[Entry]: ...
    def get_entry(self, entry_id: str) -> Entry: ...
    def case_entries(self, case_ids: Sequence[str], kinds: Sequence[str] | None = None) -> list[Entry]: ...
    # truncation evidence
    def write_checkpoint(self) -> Checkpoint | None: ...
    def checkpoints(self) -> list[Checkpoint]: ...



class Outbox(Protocol):
    """Deliveries to backends, their fenced leases, backend state and read-back cursors."""

    # outbox
    def claim(self, backend: str, owner: str, limit: int, lease_seconds: float) -> list[Delivery]: ...
    def has_due(self, backend: str) -> bool: ...
    # Every state change below is fenced: with `token` (the claim's lease token) it applies only while
    # that claim still holds the row, and returns False when the lease was lost (see SQLStore._fenced).
    def mark_attempted(self, delivery_id: int, token: int) -> bool: ...
    def renew_lease(self, delivery_id: int, token: int, lease_seconds: float) -> bool: ...
    def mark_delivered(self, delivery_id: int, external: dict[str, Any], *, token: int | None = None) -> bool: ...
    def reschedule(
        self, delivery_id: int, *, error: str, kind: str, delay: float, token: int | None = None
    ) -> bool: ...
    def mark_dead(self, delivery_id: int, *, error: str, kind: str, token: int | None = None) -> bool: ...
    def release(self, delivery_id: int, *, error: str, kind: str, token: int | None = None) -> bool: ...
    def outbox_counts(self) -> dict[str, dict[str, int]]: ...
    def outbox_health(self) -> dict[str, OutboxHealth]: ...
    def backend_states(self) -> list[BackendState]: ...
    def ping(self) -> None: ...
    def list_deliveries(
        self, *, state: str | None = None, backend: str | None = None, limit: int = 100
    ) -> list[Delivery]: ...
    def requeue_dead(self, *, backend: str | None = None, ids: Sequence[int] | None = None) -> int: ...
    def next_due(self, backend: str) -> float | None: ...

    # backend state and read-back cursors
    def get_backend_state(self, name: str) -> BackendState: ...
    def set_backend_state(self, name: str, state: str, reason: str | None) -> None: ...
    def get_cursor(self, backend: str, case_id: str) -> str | None: ...
    def set_cursor(self, backend: str, case_id: str, cursor: str | None) -> None: ...



class SearchIndex(Protocol):
    """What history search (`sharedctx.search`) retrieves candidates through."""

    def search(self, text: str, filters: SearchFilters | None = None, limit: int = 20) -> list[SearchRow]: ...
    def rebuild_index(self) -> int: ...
    def count_matches(self, query: CandidateQuery, cap: int) -> int: ...
    def search_candidates(self, query: CandidateQuery, limit: int = 200) -> list[Candidate]: ...
    def entry_rowid_range(self) -> tuple[int, int]: ...
    def index_terms(self, near: str, limit: int = 400) -> list[tuple[str, int]]: ...
    def search_case_titles(self, query: CandidateQuery, limit: int = 50, cap: int = 2000) -> list[Candidate] | None: ...
    def services(self) -> list[str]: ...
    def case_texts(self, case_ids: Sequence[str]) -> list[tuple[Any, ...]]: ...



class HumanActions(Protocol):
    """Human actions already taken in, so a webhook and a poll never record one twice."""

    # human actions already taken in (see migrations 0003_human_actions)
    def claim_action(self, scope: str, key: str, case_id: str | None = None) -> bool: ...
    def link_action(self, scope: str, key: str, entry_id: str) -> None: ...
    def action_entry(self, scope: str, key: str) -> str | None: ...
    def release_action(self, scope: str, key: str) -> None: ...


class RateLimits(Protocol):
    """Rate budgets shared by every process on the store (see `sharedctx.store.sql.limits`)."""

    def take_slot(self, key: str, limits: Sequence[tuple[int, float]], clock: Callable[[], float]) -> float: ...
    def hold_budget(self, key: str, until: float, reason: str | None = None) -> None: ...
    def budget_state(self, key: str, period: float, now: float) -> tuple[float, int]: ...


class Bindings(Protocol):
    """Which case a thread, an external reference or a label belongs to, through an index (never a scan
    of the cases): what webhooks, the poller and `find_case` look cases up by. `set_binding` (Journal)
    writes the index with the binding, in one transaction."""

    def case_of_thread(self, backend: str, key: str, scope: str | None = None,
                       home: str | None = None) -> str | None: ...
    def live_bindings(self, backend: str, resolved_since: datetime) -> list[tuple[str, dict[str, Any]]]: ...
    def cases_matching(self, ref: str, limit: int = 10) -> list[tuple[str, CaseRecord]]: ...


class Investigations(Protocol):
    """The primary agent's investigations, one owner at a time (see `sharedctx.store.sql.investigations`).

    Every method that changes an owned investigation names `(owner, token)` and returns False/None when
    the lease was lost; `advance_investigation` is the one place a step's entries are recorded."""

    def begin_investigation(
        self,
        case_id: str,
        owner: str,
        lease_seconds: float,
        *,
        step: str,
        state: dict[str, Any],
        resolved: dict[str, Any] | None = None,
    ) -> InvestigationLease | None: ...
    def take_investigation(self, case_id: str, owner: str, lease_seconds: float) -> InvestigationLease | None: ...
    def orphaned_investigations(self, limit: int = 50) -> list[str]: ...
    def renew_investigation(self, case_id: str, owner: str, token: int, lease_seconds: float) -> bool: ...
    def advance_investigation(
        self,
        case_id: str,
        owner: str,
        token: int,
        *,
        step: str,
        state: dict[str, Any],
        entries: Sequence[tuple[EntryDraft, Sequence[str], CaseStatus | None]],
        clear_resolved: bool = False,
        lease_seconds: float,
    ) -> list[Entry] | None: ...
    def release_investigation(self, case_id: str, owner: str, token: int) -> bool: ...
    def note_resolved(self, case_id: str, alert: dict[str, Any]) -> bool: ...
    def get_investigation(self, case_id: str) -> InvestigationLease | None: ...


class Store(Journal, Outbox, SearchIndex, HumanActions, RateLimits, Bindings, Investigations, Protocol):
    """The whole store as `SharedContext` holds it; a component that needs one seam takes that protocol."""


def read_migrations(dialect: str) -> list[tuple[int, str, str]]:
    """(version, name, sql) for every `NNNN_name.sql` in store/migrations/<dialect>/, in order."""
    folder = importlib.resources.files("sharedctx.store") / "migrations" / dialect
    found = []
    for item in folder.iterdir():
        m = re.fullmatch(r"(\d{4})_(\w+)\.sql", item.name)
        if m:
            found.append((int(m.group(1)), m.group(2), item.read_text(encoding="utf-8")))
    return sorted(found)


def open_store(url: str) -> Store:
    """`postgresql://…` → PostgresStore; anything else is a SQLite file path (or `:memory:`)."""
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(url)
    if "://" in url:
        raise ConfigError(f"store: unsupported URL {url!r}; use a file path (SQLite) or postgresql://…")
    from .sqlite import SQLiteStore

    return SQLiteStore(url)


_FTS_TOKEN = re.compile(r"\w+", re.UNICODE)


def literal_terms(text: str, max_terms: int = 32) -> list[str]:
    """Words of a user query with every operator stripped: the safe fallback for any FTS syntax."""
    return _FTS_TOKEN.findall(text)[:max_terms]
