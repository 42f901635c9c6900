"""What the SQLite and PostgreSQL stores share: every query that is the same SQL on both.

Queries are written with `?` / `:name` placeholders; the PostgreSQL store translates them. The two
stores differ only in connections and transactions, migrations, the claim's `SKIP LOCKED`, and
full-text search (FTS5 BM25 vs `ts_rank`).

The shared SQL is split along the `Store` protocol's seams (see `sharedctx.store.base`): one module
each for the journal, the outbox, human actions, search, shared rate budgets and the bindings index,
over the common rows and the redacting base in `common`.
"""

from __future__ import annotations

from .actions import HumanActionsSQL
from .bindings import BindingsSQL
from .common import (
    CASE_COLS,
    DELIVERY_COLS,
    ENTRY_COLS,
    Conn,
    PreparedAppend,
    SQLBase,
    entry_params,
    evidence_text,
    head_after,
    next_status,
    row_to_entry,
    stored_entry,
)
from .investigations import InvestigationsSQL
from .journal import JournalSQL
from .limits import RateLimitsSQL
from .outbox import OutboxSQL
from .search import (
    CANDIDATE_CASE_COLS,
    candidate_conditions,
    entry_match_clause,
    filter_clauses,
    json_text,
    row_to_candidate,
    title_query,
)


class SQLStore(JournalSQL, OutboxSQL, HumanActionsSQL, RateLimitsSQL, BindingsSQL, InvestigationsSQL):
    """Shared implementation; subclasses provide `_tx`, `_q`, `migrate`, `search`, `rebuild_index`."""


__all__ = [
    "CANDIDATE_CASE_COLS",
    "CASE_COLS",
    "DELIVERY_COLS",
    "ENTRY_COLS",
    "BindingsSQL",
    "Conn",
    "HumanActionsSQL",
    "InvestigationsSQL",
    "JournalSQL",
    "OutboxSQL",
    "PreparedAppend",
    "RateLimitsSQL",
    "SQLBase",
    "SQLStore",
    "candidate_conditions",
    "entry_match_clause",
    "entry_params",
    "evidence_text",
    "filter_clauses",
    "head_after",
    "json_text",
    "next_status",
    "row_to_candidate",
    "row_to_entry",
    "stored_entry",
    "title_query",
]
