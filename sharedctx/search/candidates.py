"""Candidates: which entries (and so which cases) a query can rank, fetched from the store's own
full-text index within a fixed budget, plus typo correction and `service:` resolution, both from what
the store actually holds (its index vocabulary and its service names).

Plan: the query's word groups are OR-ed and ranked by the index (BM25 / ts_rank) when that matches at
most `BUDGET` entries. Past that (large journals, common words) the groups, rarest first, are AND-ed and
relaxed one group at a time until enough cases were found; a group too common to rank whole is ranked
over its most recent `BUDGET` matches. `strategy` in the result says which plan ran.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import StoreError
from ..store.base import Candidate, CandidateQuery, Store
from .words import edit_distance, stem

BUDGET = 4000  # most entries the store ranks for one query (bounded latency at any journal size)
BUDGET_PG = 1500  # PostgreSQL's ts_rank reads each match's tsvector: a smaller budget for interactive search
# (same search quality on the tuning set); similar_cases keeps BUDGET on both stores (see similar.py)
DF_CAP = 100_000  # counting a word's matches stops here
CANDIDATES = 200  # entries retrieved per query (one ranked OR)
STEP = 100  # entries retrieved per step of the bounded plan (large journals)
AND_COUNT_CAP = 4  # the bounded plan counts an AND of two groups up to this many budgets (then bounds it)

_DF_CACHE: dict[tuple[str, tuple[str, ...]], tuple[float, int]] = {}
_DF_TTL = 300.0


def df(store: Store, group: Sequence[str], base: CandidateQuery | None = None) -> int:
    """Entries matching any word of `group` (capped at DF_CAP), cached for a few minutes per store."""
    key = (store.url, tuple(group))
    hit = _DF_CACHE.get(key)
    now = time.monotonic()
    if hit and now - hit[0] < _DF_TTL:
        return hit[1]
    n = store.count_matches(CandidateQuery(match=[[list(group)]]), DF_CAP)  # the whole index: idf ignores filters
    if len(_DF_CACHE) > 10_000:
        _DF_CACHE.clear()
    _DF_CACHE[key] = (now, n)
    return n


@dataclass
class Retrieval:
    candidates: list[Candidate] = field(default_factory=list)
    strategy: str = ""
    dfs: list[int] = field(default_factory=list)  # per group: entries matching it (0 = not in the index)
    total: int = 1  # entries in the journal (for idf)




def retrieve(store: Store, groups: list[list[str]], phrases: list[str], base: CandidateQuery,
             limit: int = CANDIDATES, *, count: bool = True, budget: int | None = None) -> Retrieval:
    """Candidates for the word groups (OR-ed, BM25) within the budget (the store's, unless given); see the
    module doc for the plan."""
    span = store.entry_rowid_range()  # read once per search: idf's total and every recency window use it
    out = Retrieval(total=max(1, span[1] - span[0] + 1))
    budget = budget or budget_of(store)
    must = [[p] for p in phrases]  # explicit phrases are required
    if count:
        out.dfs = [df(store, g, base) for g in groups]
    if not groups and not must:
        out.candidates = store.search_candidates(base, limit)
        out.strategy = "filters"
        return out
    if not groups:
        q = base.model_copy(update={"match": [must]})
        n = store.count_matches(q, budget + 1)
        if n > budget:
            q = _window(span, q, n, budget)
        out.candidates = store.search_candidates(q, limit)
        out.strategy = "phrases" + (" (recent window)" if n > budget else "")
        return out
    live = [g for g, d in zip(groups, out.dfs, strict=True) if d > 0] if count else groups
    if not live:
        out.strategy = "no-match"
        return out
    full = base.model_copy(update={"match": [[*must, g] for g in live]})
    live_dfs = [d for g, d in zip(groups, out.dfs, strict=True) if g in live] if count else []
    n = sum(live_dfs) if count else budget + 1
    if n > budget and (not live_dfs or max(live_dfs) <= budget):  # one group over the budget: so is the OR
        n = store.count_matches(full, budget + 1)
    if n <= budget:
        out.candidates = store.search_candidates(full, limit)
        out.strategy = "bm25-or"
        return out
    # too many matches to rank whole: AND the rarest groups, relaxing one group at a time
    dfs = out.dfs or [df(store, g, base) for g in groups]
    order = sorted((i for i in range(len(groups)) if dfs[i] > 0), key=lambda i: dfs[i])
    seen: set[int] = set()
    cases: set[str] = set()
    steps: list[str] = []
    want_cases = max(12, limit // 8)
    for size in range(len(order), 0, -1):
        chosen = [groups[i] for i in order[:size]]
        q = base.model_copy(update={"match": [[*must, *chosen]]})
        # an AND of 3+ groups is small in practice: rank it without counting first. An AND of two is counted
        # past the budget (counting is a fraction of ranking's cost per match), so that its recency window can
        # hold about `budget` of its matches
        est = (min(dfs[i] for i in order[:size]) if size == 1
               else store.count_matches(q, AND_COUNT_CAP * budget + 1) if size == 2 else 1)
        if est == 0:
            continue
        windowed = est > budget
        if windowed:  # a count stopped at its cap says only "more than that": size the window by the most the
            # AND can match (its rarest group's count), so the window never holds more than the budget
            bound = est if est <= AND_COUNT_CAP * budget else max(est, min(dfs[i] for i in order[:size]))
            q = _window(span, q, bound, budget)
        got = store.search_candidates(q, STEP)
        steps.append(f"and{size}" + ("w" if windowed else ""))
        for c in got:
            if c.rowid not in seen:
                seen.add(c.rowid)
                out.candidates.append(c)
                cases.add(c.entry.case_id)
        if len(cases) >= want_cases or windowed:
            break
    out.strategy = "bounded:" + ",".join(steps)
    return out


def title_candidates(store: Store, groups: list[list[str]], dfs: Sequence[int], base: CandidateQuery,
                     limit: int = 40) -> list[Candidate]:
    """Cases found by their title (case titles have their own index): the OR of the query's words, or when
    that matches too many titles, the AND of all of them."""
    if not groups:
        return []
    try:
        # a word in more than the cap of titles makes the OR too wide: skip it (known from a cached probe)
        wide = any(_titles_over_cap(store, g) for g in groups)
        got = None if wide else store.search_case_titles(base.model_copy(update={"match": [[g] for g in groups]}),
                                                         limit)
        if got is None and len(groups) > 1:
            got = store.search_case_titles(base.model_copy(update={"match": [groups]}), limit)
    except (StoreError, AttributeError, NotImplementedError):
        return []
    return got or []


_WIDE_CACHE: dict[tuple[str, tuple[str, ...]], tuple[float, bool]] = {}


def _titles_over_cap(store: Store, group: Sequence[str]) -> bool:
    """Does this word group alone match more case titles than a title search ranks (cached like `df`)?
    On a large journal most query words do, and probing the OR of them first cost a whole scan per search."""
    key, now = (store.url, tuple(group)), time.monotonic()
    hit = _WIDE_CACHE.get(key)
    if hit and now - hit[0] < _DF_TTL:
        return hit[1]
    wide = store.search_case_titles(CandidateQuery(match=[[list(group)]]), 0) is None
    if len(_WIDE_CACHE) > 10_000:
        _WIDE_CACHE.clear()
    _WIDE_CACHE[key] = (now, wide)
    return wide


def budget_of(store: Store) -> int:
    return BUDGET_PG if store.url.startswith(("postgresql://", "postgres://")) else BUDGET


def _window(span: tuple[int, int], q: CandidateQuery, estimate: int, budget: int = BUDGET) -> CandidateQuery:
    """Restrict `q` to the most recent stretch of the journal (`span`: its first and last rowid) expected to
    hold about `budget` matches."""
    lo, hi = span
    width = max(1, hi - lo + 1)
    share = min(1.0, budget / max(estimate, DF_CAP if estimate >= DF_CAP else estimate))
    return q.model_copy(update={"min_rowid": max(lo, hi - int(width * share))})


# -- typo tolerance ----------------------------------------------------------------------------------
# what an index stemmer strips from a word's end (porter on FTS5, english on PostgreSQL)
_SUFFIXES = ("", "e", "s", "es", "ed", "ing", "ion", "ions", "ation", "ations", "ate", "ated", "icate", "y", "ies",
             "ied", "er", "ers", "ly", "ity", "ment", "ness", "al")


def _distance(word: str, term: str) -> int:
    """How far a typed word is from an index term. Index terms are stems ("certif", "expir"), so the word
    is compared with the term plus a suffix the stemmer would have removed (allowing the typo there too)."""
    d = edit_distance(stem(word), term, 3)
    if len(word) > len(term) >= 4:
        rest = word[len(term):]
        suffix = min((edit_distance(rest, x, 2) for x in _SUFFIXES), default=3)
        d = min(d, edit_distance(word[: len(term)], term, 3) + suffix)
    return d


_FIX_CACHE: dict[tuple[str, str], tuple[float, str | None]] = {}


def correct(store: Store, word: str, *, alone: bool = True) -> str | None:
    """The index term the store holds that `word` most likely meant, or None (no close term, or the store
    cannot list its vocabulary). Only for words the index does not contain; a short word (< 8 letters) is
    corrected only when `alone` (nothing else in the query matched), because short real words missing from
    a journal ("broken") are often one letter from a word it holds ("broker")."""
    if len(word) < 4 or word.isdigit() or not re.fullmatch(r"[a-z][a-z0-9_]*", word):
        return None
    if not alone and len(word) < 8:
        return None
    key, now = (store.url, word), time.monotonic()
    hit = _FIX_CACHE.get(key)
    if hit and now - hit[0] < _DF_TTL:
        return hit[1]
    try:
        near = store.index_terms(word, 400)
    except (StoreError, AttributeError, NotImplementedError):
        return None
    if len(_FIX_CACHE) > 10_000:
        _FIX_CACHE.clear()
    _FIX_CACHE[key] = (now, _nearest(word, near))
    return _FIX_CACHE[key][1]


def _nearest(word: str, near: list[tuple[str, int]]) -> str | None:
    best: tuple[int, int, str] | None = None
    allowed = 1 if len(word) < 8 else 2
    for term, docs in near:
        if term == word or len(term) < 3 or docs <= 0 or term.isdigit():
            continue
        d = _distance(word, term)
        if d <= allowed and (best is None or (d, -docs) < (best[0], best[1])):
            best = (d, -docs, term)
    return best[2] if best else None


def clear_caches() -> None:
    """Forget cached match counts and corrections (tests that reuse a database; after bulk loads)."""
    _DF_CACHE.clear()
    _FIX_CACHE.clear()
    _WIDE_CACHE.clear()


def resolve_services(store: Store, value: str) -> tuple[list[str], str | None]:
    """`service:` value -> the services it names: exact, else token prefix ("payments" -> payments-api),
    else substring; and a notice when it was widened or matched nothing."""
    try:
        known = store.services()
    except (StoreError, AttributeError, NotImplementedError):
        return [value], None
    v = value.lower()
    if value in known:
        return [value], None
    exact = [s for s in known if s.lower() == v]
    if exact:
        return exact, None
    parts = re.compile(r"[-_.\s/]+")
    vt = [t for t in parts.split(v) if t]
    pref = [s for s in known if s.lower().startswith(v) or
            (vt and parts.split(s.lower())[: len(vt)] == vt)]
    if not pref:
        pref = [s for s in known if any(t == vt[0] for t in parts.split(s.lower()))] if vt else []
    if pref:
        names = ", ".join(sorted(pref)[:8]) + ("…" if len(pref) > 8 else "")
        return sorted(pref), f"service:{value} matched no service exactly; searched {names}"
    close = sorted(known, key=lambda s: edit_distance(v, s.lower(), 6))[:3]
    hint = f" (services with a similar name: {', '.join(close)})" if close else ""
    return [value], f"service:{value} matches no service{hint}"


def idf(dfv: int, total: int) -> float:
    """Robertson–Spärck Jones idf, floored so a word in most entries still counts a little."""
    return max(0.05, math.log(1 + (total - dfv + 0.5) / (dfv + 0.5)))
