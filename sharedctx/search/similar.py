"""`similar_cases`: earlier cases with the same symptoms as an open case, and what was done about them.

The open case's symptoms (its title, alert and findings, minus findings a person disputed) are the
query; candidates are ranked on their own symptoms (title, alert, findings weigh most) with BM25F and
pseudo-relevance feedback. Same service, same alert and same fingerprint family are evidence (small
factors), never the ranking itself: many different faults share a service and an alert.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

from ..errors import StoreError
from ..model import EntryKind
from ..store.base import Candidate, CandidateQuery, SearchFilters
from .candidates import BUDGET, df, idf, retrieve, title_candidates
from .engine import _store, finish, pool_docs, rank_docs
from .models import CaseResult
from .query import MAX_TERMS
from .ranking import Evidence, Term, family, hits
from .words import INTENT_FIX, NEGATORS, STOPWORDS, groups_for, stem, tokens

# PostgreSQL's 'english' stop list (tsearch_data/english.stop): words its index never holds. SQLite's porter
# tokenizer keeps them, so a symptom such as "while" or "between" was a query word (with its idf and its matches)
# on SQLite and silently nothing on PostgreSQL; the open case's symptoms leave them out on both stores.
INDEX_STOPWORDS = frozenset(
    """i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers
    herself it its itself they them their theirs themselves what which who whom this that these those am is are
    was were be been being have has had having do does did doing a an the and but if or because as until while
    of at by for with about against between into through during before after above below to from up down in out
    on off over under again further then once here there when where why how all any both each few more most
    other some such no nor not only own same so than too very s t can will just don should now""".split()  # noqa: SIM905
)
# candidates found by their case title: enough that the title index's own rank (FTS5 bm25 or ts_rank, which
# disagree) rarely decides which cases are ranked; `_pool_scores` orders them the same way on both stores
TITLE_CANDIDATES = 200
# the candidates' pool order: BM25 with FTS5's constants and its 4x title weight (see `_pool_scores`)
POOL_K1, POOL_B, POOL_TITLE = 1.2, 0.75, 4.0

SYMPTOM_KINDS = ("alert", "triage", "finding")
SIMILAR_KINDS = SYMPTOM_KINDS  # old name
# symptoms weigh most; what was done matters less for "is this the same problem?"
SYMPTOM_FIELDS = {"title": 2.0, "alert": 1.5, "findings": 2.0, "fix": 0.8, "human": 0.8, "other": 0.3}


def symptom_terms(texts: Iterable[str]) -> Counter[str]:
    """Content words of the open case's symptoms with their counts (ids, numbers and stop words removed)."""
    words: Counter[str] = Counter()
    for text in texts:
        for w in tokens(text):
            if (w in STOPWORDS or w in INDEX_STOPWORDS or w in NEGATORS or w in INTENT_FIX or len(w) < 3
                    or any(ch.isdigit() for ch in w) or len(w) > 30):
                continue
            words[w] += 1
    return words


def similar_cases(ctx_or_store: Any, case_id: str, limit: int = 5, *, expand: bool = True) -> list[CaseResult]:
    """Earlier cases ranked by similarity of symptoms to `case_id` (its title, alert and findings so far).

    Each result carries `outcome`: what worked (the resolution text, verified remediations), verified
    findings, what was tried without effect, what a human overrode or rejected, and the time to resolve.
    """
    store = _store(ctx_or_store)
    case = store.get_case(case_id)
    entries = store.entries(case_id)
    disputed = {e.ref for e in entries if e.attrs.get("verdict") == "disputed" and e.ref}
    basis = [e for e in entries if e.kind.value in SYMPTOM_KINDS and e.id not in disputed]
    alert = case.labels.get("alertname") or next(
        (str(e.attrs["alertname"]) for e in entries if e.kind == EntryKind.ALERT and e.attrs.get("alertname")), None
    )
    counts = symptom_terms([case.title, *(f"{e.title} {e.body}" for e in basis)])
    by_stem: dict[str, tuple[str, int]] = {}
    for w, n in counts.most_common():
        s = stem(w)
        if s not in by_stem:
            by_stem[s] = (w, n)
        else:
            by_stem[s] = (by_stem[s][0], by_stem[s][1] + n)
    picked = sorted(by_stem.values(), key=lambda x: -x[1])[: MAX_TERMS * 2]
    words = [w for w, _ in picked]
    tf = {w: n for w, n in picked}
    groups = groups_for(words)
    try:
        dfs = [df(store, g) for g in groups]
    except StoreError:
        dfs = [1] * len(groups)
    lo, hi = store.entry_rowid_range()
    total = max(1, hi - lo + 1)
    weighted = sorted(
        ((tf.get(g[0], 1), d, g) for g, d in zip(groups, dfs, strict=True) if d > 0),
        key=lambda x: -(1 + math.log(x[0])) * idf(x[1], total),
    )[:MAX_TERMS]
    groups = [g for _, _, g in weighted]
    base = CandidateQuery(filters=SearchFilters(until=case.created_at))
    # The full budget on both stores: an open case's symptoms make a long query of common words, and the smaller
    # PostgreSQL budget (an interactive-search latency concession) sent it to the narrower AND plan where SQLite
    # ranked the whole OR, so the two stores ranked different candidates (tuning set P@5 0.93 vs 0.95).
    got = retrieve(store, groups, [], base, budget=BUDGET) if groups else None
    found = list(got.candidates) if got else []
    titled = title_candidates(store, groups, [], base, limit=TITLE_CANDIDATES)
    found.extend(titled)
    if case.service:  # the same service's recent cases are candidates too (a case title is not in the index);
        # they still rank by their symptoms, the service is only a factor
        found.extend(store.search_candidates(
            base.model_copy(update={"filters": SearchFilters(service=case.service, until=case.created_at)}), 60))
    cands = [c for c in found if c.entry.case_id != case_id and c.case_created_at < case.created_at]
    _pool_scores(cands, {id(c) for c in titled}, weighted, total)
    # equal scores (the same fault's identical texts) in journal order, not in the order the store's plan
    # happened to return them
    cands.sort(key=lambda c: (-c.score, c.rowid))
    docs = pool_docs(store, cands)
    terms = [Term(word=g[0], stems=frozenset(stem(w) for alt in g for w in tokens(alt)), idf=idf(d, total),
                  weight=1 + math.log(n)) for n, d, g in weighted]
    ev = Evidence(service=case.service or None, alertname=alert, family=family(case.fingerprint))
    ranked, extra = rank_docs(docs, terms, ev, expand=expand, fields=SYMPTOM_FIELDS)
    ranked = finish(store, docs, ranked, limit)
    by_id = {d.case_id: d for d in docs}
    for r in ranked:
        r.hits = hits(by_id[r.case_id], terms)
        if extra:
            r.reasons.append("symptoms expanded from the closest cases with: " + ", ".join(t.word for t in extra))
    return ranked


def _pool_scores(cands: list[Candidate], titled: set[int], weighted: list[tuple[int, int, list[str]]],
                 total: int) -> None:
    """Replace each candidate's index score by one computed here, so that the POOL cases ranked at case level
    are the same on both stores.

    The index scores were not comparable: FTS5's bm25 has idf and length normalisation, PostgreSQL's ts_rank
    has neither and scores a case title (unlabelled, weight D) at a tenth of an entry title, so the two stores
    filled the pool with different cases (tuning set: three inspected cases' pools shared 36 of 49, 46 of 60
    and 55 of 60 cases; 47 of 60 top-5 lists were equal). BM25 over the candidate's own text (its case title
    when it was found by its title), with the query's idf from `df`, is the same number on both."""
    groups = [(idf(d, total), {stem(w) for alt in g for w in tokens(alt)}) for _, d, g in weighted]
    texts: list[tuple[Counter[str], Counter[str], int]] = []
    for c in cands:
        by_title = id(c) in titled
        head = Counter(stem(w) for w in tokens(c.case_title if by_title else c.entry.title))
        body = Counter() if by_title else Counter(stem(w) for w in tokens(c.entry.body))
        texts.append((head, body, sum(head.values()) + sum(body.values())))
    avg = max(1.0, sum(n for _, _, n in texts) / max(1, len(texts)))
    for c, (head, body, n) in zip(cands, texts, strict=True):
        norm = POOL_K1 * (1 - POOL_B + POOL_B * n / avg)
        score = 0.0
        for w, st in groups:
            f = POOL_TITLE * sum(head[x] for x in st) + sum(body[x] for x in st)
            if f:
                score += w * f * (POOL_K1 + 1) / (f + norm)
        c.score = score


def describe(results: Iterable[CaseResult]) -> str:
    """One line an agent can record: "seen 3 times; last fix: …; human rejected … on …"."""
    rs = list(results)
    if not rs:
        return "no similar earlier cases"
    parts = [f"seen {len(rs)} time{'s' if len(rs) != 1 else ''}"]
    last = max(rs, key=lambda r: r.created_at)
    if last.outcome and (last.outcome.resolution or last.outcome.worked):
        parts.append(f"last fix: {last.outcome.resolution or last.outcome.worked[0]}")
    for r in rs:
        if r.outcome and (r.outcome.rejected or r.outcome.overridden):
            parts.append("human " + ("rejected " + r.outcome.rejected[0] if r.outcome.rejected
                                      else "overrode " + r.outcome.overridden[0]))
            break
    return "; ".join(parts)
