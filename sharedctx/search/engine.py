"""`search()`: parse, retrieve candidates, rank cases, explain. The one path every caller uses (CLI,
Python API, MCP tools, the primary agent), so every promise about results holds in one place."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..errors import StoreError
from ..model import Entry, utcnow
from ..store.base import Candidate, CandidateQuery, SearchFilters, Store
from . import semantic
from .candidates import CANDIDATES, Retrieval, correct, df, idf, resolve_services, retrieve, title_candidates
from .models import CaseResult, Hit, SearchResult
from .query import outcome_matches, parse_query
from .ranking import (
    EXPAND_BELOW,
    FEEDBACK_WEIGHT,
    POOL,
    CaseDoc,
    Evidence,
    Row,
    Term,
    apply_outcome,
    bm25f,
    build_doc,
    feedback_terms,
    hits,
    outcome_of,
    score_cases,
)
from .words import groups_for, highlight, stem, tokens


def _store(ctx_or_store: Any) -> Store:
    store: Store = getattr(ctx_or_store, "store", ctx_or_store)
    return store


def _keeps(f: SearchFilters | None) -> Any:
    """Entry-level filters (kind, author) also decide which of a case's entries its text is ranked on."""
    if f is None or not (f.kinds or f.author_kind or f.author):
        return None
    return lambda kind, author_kind, author: ((not f.kinds or kind in f.kinds)
                                              and (not f.author_kind or author_kind == f.author_kind)
                                              and (not f.author or author == f.author))


def pool_docs(store: Store, cands: Sequence[Candidate], size: int | None = None,
              filters: SearchFilters | None = None) -> list[CaseDoc]:
    """The best `size` candidate cases (by their best entries' index scores), each with all its entries
    (only those passing the entry-level filters, when there are some)."""
    by_case: dict[str, list[Candidate]] = {}
    for c in cands:
        by_case.setdefault(c.entry.case_id, []).append(c)

    def first(cs: list[Candidate]) -> float:
        s = sorted((c.score for c in cs), reverse=True)
        return s[0] + 0.3 * sum(s[1:3])

    order = list(by_case) if all(c.score == 0 for c in cands) else \
        sorted(by_case, key=lambda k: -first(by_case[k]))
    order = order[: size or POOL]
    keep = _keeps(filters)
    rows: dict[str, list[Row]] = {}
    for r in store.case_texts(order):
        row = Row(*r)
        if keep is None or keep(row.kind, row.author_kind, row.author_name):
            rows.setdefault(row.case_id, []).append(row)
    docs = []
    for k in order:
        d = build_doc(by_case[k][0], rows.get(k, []))
        d.first_score = first(by_case[k])
        docs.append(d)
    return docs


def weak_match(docs: Sequence[CaseDoc], text: dict[str, float], terms: Sequence[Term]) -> bool:
    """Selective expansion: only when the best cases hold less than EXPAND_BELOW of the query's weight
    (idf x weight of the words they contain) is the query worth expanding; a query the journal already
    answers in its own words only drifts when words from the top cases are added."""
    top = sorted(docs, key=lambda d: -text.get(d.case_id, 0.0))[:3]
    total = sum(t.idf * t.weight for t in terms) or 1.0
    best = 0.0
    for d in top:
        have: set[str] = set()
        for c in d.tf.values():
            have.update(c)
        best = max(best, sum(t.idf * t.weight for t in terms if t.stems & have) / total)
    return best < EXPAND_BELOW


def rank_docs(docs: list[CaseDoc], terms: list[Term], ev: Evidence, *, expand: bool, fix_intent: bool = False,
              fields: dict[str, float] | None = None) -> tuple[list[CaseResult], list[Term]]:
    """BM25F, then RM3 expansion from the best cases, then structured evidence. Returns (ranked, expansions)."""
    text = bm25f(docs, terms, boost_fix=fix_intent, fields=fields)
    extra: list[Term] = []
    if expand and terms and weak_match(docs, text, terms):
        extra = feedback_terms(docs, text, terms)
        if extra:
            more = bm25f(docs, extra, fields=fields)
            t1, t2 = max(text.values()) or 1.0, max(more.values()) or 1.0
            text = {k: (1 - FEEDBACK_WEIGHT) * v / t1 + FEEDBACK_WEIGHT * more.get(k, 0.0) / t2
                    for k, v in text.items()}
    ranked = score_cases(docs, text, ev, [*terms, *extra])
    return ranked, extra


def finish(store: Store, docs: Sequence[CaseDoc], ranked: list[CaseResult], limit: int,
           filters: SearchFilters | None = None, *, keep_order: bool = False) -> list[CaseResult]:
    """Read the entries of the best cases (a few more than shown), add their outcome's evidence, cut."""
    head = ranked[: limit + 10]
    by_id = {d.case_id: d for d in docs}
    keep = _keeps(filters)
    ents: dict[str, list[Entry]] = {}
    for e in store.case_entries([r.case_id for r in head]):
        ents.setdefault(e.case_id, []).append(e)
    for r in head:
        d = by_id[r.case_id]
        d.entries = ents.get(r.case_id, [])
        apply_outcome(r, outcome_of(d))  # outcome from every entry, even when filters narrow the text
        if keep is not None:
            d.entries = [e for e in d.entries if keep(e.kind.value, e.author.kind, e.author.name)]
    if not keep_order:
        head.sort(key=lambda r: -r.score)
    return head[:limit]


def search(ctx_or_store: Any, text: str, filters: SearchFilters | None = None, *, limit: int = 20,
           with_outcomes: bool = True, now: datetime | None = None, expand: bool = True) -> SearchResult:
    """Search every case's history; results grouped by case, best first, each saying why it matched.

    `now` anchors time phrases ("yesterday") and recency; `expand=False` turns off pseudo-relevance feedback.
    """
    t0 = time.perf_counter()
    store = _store(ctx_or_store)
    limit = max(1, min(int(limit), 500))
    now = now or utcnow()
    pq = parse_query(text, filters, now=now)
    notices = list(pq.notices)
    # the optional embedding half starts first: the query's vector is computed while the words are retrieved
    sem, sem_note = semantic.start(store, " ".join([*pq.words, *pq.phrases]))
    if sem_note:
        notices.append(sem_note)
    f = pq.filters.model_copy()
    if f.service:
        names, note = resolve_services(store, f.service)
        if note:
            notices.append(note)
        if names != [f.service]:
            f.services, f.service = names, None
    if "resolved" in pq.outcomes:
        f.case_status = "resolved"
    outcome_conds = [m for o in pq.outcomes for m in outcome_matches(o)]
    groups = groups_for(pq.terms)
    corrections: dict[str, str] = {}
    prefixes: set[str] = set()
    try:
        counts = [df(store, g) for g in groups]
    except StoreError:
        counts = [1] * len(groups)
    for i, g in enumerate(groups):
        if counts[i] == 0:
            fixed = correct(store, g[0], alone=not any(counts))
            if fixed:
                corrections[g[0]] = fixed
                groups[i] = [fixed]
                prefixes.add(fixed)
    no_text = not groups and not pq.phrases
    base = CandidateQuery(filters=f, case_has=[] if no_text else outcome_conds,
                          entry_is=outcome_conds if no_text else [])
    try:
        got = retrieve(store, groups, pq.phrases, base, CANDIDATES)
    except StoreError as exc:  # never let odd input crash a search: retry with the plainest query
        notices.append(f"the search index refused the query ({exc}); searched the words literally instead")
        plain = [[[w]] for w in pq.terms[:8]]
        try:
            got = Retrieval(candidates=store.search_candidates(base.model_copy(update={"match": plain}), CANDIDATES),
                            strategy="literal-fallback", dfs=[1] * len(groups))
        except StoreError as exc2:
            notices.append(f"the literal search failed too: {exc2}")
            got = Retrieval(strategy="failed")
    titled = title_candidates(store, groups, got.dfs, base) if groups and not no_text else []
    if titled:  # a case is found by its title too; it joins the pool with its first entry
        seen = {c.entry.case_id for c in got.candidates}
        got.candidates.extend(c for c in titled if c.entry.case_id not in seen)
    docs = pool_docs(store, got.candidates, filters=f)
    negated = {stem(w) for w in pq.negated}
    terms: list[Term] = []
    dfs = got.dfs if len(got.dfs) == len(groups) else [1] * len(groups)
    for g, d in zip(groups, dfs, strict=True):
        st = {stem(w) for alt in g for w in tokens(alt)}
        if g[0] in prefixes:  # a corrected word is an index stem: every case word that starts with it counts
            st = {x for doc in docs for c in doc.tf.values() for x in c if x.startswith(g[0][:-1] or g[0])} or st
        terms.append(Term(word=g[0], stems=frozenset(st), idf=idf(d, got.total), negated=bool(st & negated)))
    for p in pq.phrases:
        for w in tokens(p):
            terms.append(Term(word=w, stems=frozenset({stem(w)}), idf=idf(1, 10), weight=0.5))
    shown = {typed: _shown(docs, fixed) for typed, fixed in corrections.items()}
    for typed, word in shown.items():
        notices.append(f"“{typed}” is not in the index; searched for “{word}” instead")
    ev = Evidence(words=pq.words, now=now)
    fused: dict[str, float] = {}
    if terms:
        ranked, extra = rank_docs(docs, terms, ev, expand=expand, fix_intent=pq.fix_intent)
        if sem is not None:  # reciprocal rank fusion with the nearest cases (sharedctx.search.semantic)
            ranked, docs, fused = semantic.fuse(store, sem, ranked, docs, base, ev, terms)
    else:
        ranked, extra = rank_docs(docs, [], ev, expand=False)
        order = {d.case_id: i for i, d in enumerate(docs)}
        ranked.sort(key=lambda r: order[r.case_id])  # no words: newest first, as retrieved
    ranked = finish(store, docs, ranked, limit, f, keep_order=not terms or bool(fused))
    by_id = {d.case_id: d for d in docs}
    for r in ranked:
        r.hits = hits(by_id[r.case_id], [*terms, *extra]) if terms else \
            [_plain_hit(c.entry) for c in got.candidates if c.entry.case_id == r.case_id][:3]
        if fused:
            r.score = fused[r.case_id]
            r.hits = r.hits or [_plain_hit(e) for e in by_id[r.case_id].entries[:2]]
        if extra:
            r.reasons.append("query expanded from the best cases with: " + ", ".join(t.word for t in extra))
        if corrections:
            r.reasons.append("corrected: " + ", ".join(f"{a} → {b}" for a, b in shown.items()))
        if not with_outcomes:
            r.outcome = None
    return SearchResult(query=pq, cases=ranked, strategy=got.strategy, fallback=bool(notices),
                        notice="; ".join(notices) or None, candidates=len(got.candidates),
                        corrections=shown,
                        expansions=[t.word for t in extra],
                        elapsed_ms=round((time.perf_counter() - t0) * 1000, 2))


def _plain_hit(e: Entry) -> Hit:
    """A retrieved entry shown as is (a search with filters only has no words to highlight)."""
    text, _ = highlight(e.title, e.body, [])
    return Hit(entry_id=e.id, seq=e.seq, kind=e.kind.value, author=str(e.author), ts=e.ts, title=e.title,
               text=text, score=0.0)


def _shown(docs: Sequence[CaseDoc], prefix: str) -> str:
    """The word people would recognise for an index stem: the most common case word starting with it."""
    seen: dict[str, int] = {}
    for d in docs:
        for e in d.entries[:20]:
            for w in tokens(f"{e.title} {e.body}"):
                if w.startswith(prefix):
                    seen[w] = seen.get(w, 0) + 1
    return max(seen, key=lambda w: (seen[w], -len(w))) if seen else prefix
