"""Operational history search: "how was this handled last time?" for people and agents alike.

`search(store, text)` ranks earlier cases and `similar_cases(store, case_id)` finds earlier cases with
the symptoms of an open one. Both use only the journal's own full-text index (FTS5 on SQLite, a
`tsvector` on PostgreSQL) plus ranking in Python — no separate vector database, no model.

Seams (one module each):

- `query`: the query language — filters, phrases, words, negation, time phrases ("last week").
- `words`: tokenizing, stemming, the synonym *data file* (`data/synonyms.txt` + $SHAREDCTX_SYNONYMS).
- `candidates`: bounded retrieval from the store's index, typo correction from the index's own
  vocabulary, `service:` prefix/alias resolution.
- `ranking`: case-level BM25F (title, alert, findings, fix, human notes), RM3 pseudo-relevance
  feedback, structured signals as small factors, explanations.
- `outcome`: what worked / was tried / was overridden, read from a case's entries.
- `engine`: `search()`; `similar`: `similar_cases()` and `describe()`.

Outcome conventions (written by the humans-in-the-loop code and by agents):

- `decision` entry, `attrs.outcome` in `approved | rejected | overridden`, `ref` = the decision-request;
  for an override, `attrs.instead` (optional) says what to do instead (else the body does).
- `correction` entry: a human correction of an earlier entry (`ref`); counts as an override.
- a verdict on a finding: any entry with `attrs.verdict` in `verified | disputed` and `ref` = the finding.
- `verification` entry: `attrs.verdict` (or `attrs.outcome`) in `verified | passed | ok | success` means the
  remediation it refers to worked; `failed | not-verified` means it did not.
- `action` entry with `attrs.result` in `no-effect | failed | worse`: something tried that did not help.
- a `resolution` entry resolves the case; time to resolve = case resolved_at - created_at.
"""

from __future__ import annotations

from .candidates import (
    _DF_CACHE,
    BUDGET,
    CANDIDATES,
    DF_CAP,
    Retrieval,
    clear_caches,
    correct,
    resolve_services,
    retrieve,
)
from .engine import search
from .models import CaseResult, Hit, Outcome, ParsedQuery, SearchResult
from .outcome import OUTCOME_KINDS, summarize
from .query import (
    AUTHOR_KINDS,
    FAILED,
    MAX_QUERY_CHARS,
    MAX_TERMS,
    OUTCOMES,
    STATUSES,
    VERIFIED,
    outcome_matches,
    parse_query,
    parse_since,
)
from .similar import SIMILAR_KINDS, describe, similar_cases
from .words import INTENT_FIX, NEGATORS, STOPWORDS, coverage, groups_for, highlight, stem, synonym_groups

__all__ = [
    "AUTHOR_KINDS",
    "BUDGET",
    "CANDIDATES",
    "DF_CAP",
    "FAILED",
    "INTENT_FIX",
    "MAX_QUERY_CHARS",
    "MAX_TERMS",
    "NEGATORS",
    "OUTCOMES",
    "OUTCOME_KINDS",
    "SIMILAR_KINDS",
    "STATUSES",
    "STOPWORDS",
    "VERIFIED",
    "_DF_CACHE",
    "CaseResult",
    "Hit",
    "Outcome",
    "ParsedQuery",
    "Retrieval",
    "SearchResult",
    "clear_caches",
    "correct",
    "coverage",
    "describe",
    "groups_for",
    "highlight",
    "outcome_matches",
    "parse_query",
    "parse_since",
    "resolve_services",
    "retrieve",
    "search",
    "similar_cases",
    "stem",
    "summarize",
    "synonym_groups",
]  # fmt: skip
