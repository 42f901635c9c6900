"""Case-level ranking: BM25F over each candidate case's fields, pseudo-relevance feedback (RM3) from
the best cases, then structured signals as proportional evidence.

Why case-level: a case is what a person wants back, and its evidence is spread over many entries;
scoring entries one by one lets a one-line note sharing one common word beat a case whose findings
match a rare word. Why multiplicative signals: a same-service or resolved case should win among
equally good text matches, never lift a weak text match over a strong one, so each signal is a small
factor (at most `MAX_BOOST` together) on the text score, not an addend.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from ..model import Entry, utcnow
from ..store.base import Candidate
from .models import CaseResult, Hit, Outcome
from .outcome import summarize
from .words import NEGATORS, STOPWORDS, highlight, negated_positions, stem, tokens

# field weights and length normalisation, chosen on the tuning set (bench/eval_queries.json)
FIELD_WEIGHT = {"title": 2.5, "alert": 1.5, "findings": 1.5, "fix": 1.3, "human": 1.3, "other": 0.6}
FIELD_B = 0.6
K1 = 1.5
NEG_UNNEGATED = 0.2  # a negated query word ("without a deploy") found un-negated counts this much
POOL = 60  # candidate cases ranked at case level
FEEDBACK_CASES = 5  # RM3: cases the expansion is learned from
FEEDBACK_TERMS = 8  # RM3: words added
FEEDBACK_WEIGHT = 0.15  # RM3: share of the final text score that comes from the added words
EXPAND_BELOW = 0.6  # RM3 runs only when the best cases hold less than this share of the query's weight
HALF_LIFE_DAYS = 90.0
# structured evidence: factors on the text score
F_SERVICE, F_SERVICE_HEAD, F_ALERT, F_FAMILY = 1.15, 1.07, 1.10, 1.05
F_RESOLVED, F_VERIFIED, F_HUMAN, F_RECENT = 1.04, 1.03, 1.02, 1.03
MAX_BOOST = 1.35

_SPLIT = re.compile(r"[-_.\s/:]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


_FIELD_OF_KIND = {"alert": "alert", "finding": "findings", "triage": "findings", "remediation": "fix",
                  "resolution": "fix", "verification": "fix", "correction": "fix", "decision": "fix", "action": "fix"}


def field_of(kind: str, author_kind: str) -> str:
    """Which BM25F field an entry's text belongs to."""
    return _FIELD_OF_KIND.get(kind) or ("human" if author_kind == "human" else "other")


class Row(NamedTuple):
    """An entry as ranking reads it (`Store.case_texts`): no Entry object is built for the whole pool."""

    case_id: str
    id: str
    kind: str
    author_kind: str
    author_name: str
    title: str
    body: str
    ref: str | None
    attrs: Any  # JSON text (SQLite) or a dict (PostgreSQL)

    def attr(self, key: str) -> Any:
        a = self.attrs
        if isinstance(a, str):
            if f'"{key}"' not in a:
                return None
            a = json.loads(a)
        return a.get(key) if isinstance(a, dict) else None


@dataclass
class Term:
    """One query word group: the stems that count as it, its idf, its weight, and whether it is negated."""

    word: str
    stems: frozenset[str]
    idf: float
    weight: float = 1.0
    negated: bool = False
    expansion: bool = False


@dataclass
class CaseDoc:
    case_id: str
    meta: Candidate  # any retrieved entry of the case: carries the case's title, service, status, dates
    rows: list[Row] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)  # filled for the cases shown (hits, outcome)
    tf: dict[str, dict[str, int]] = field(default_factory=dict)  # field -> stem counts
    neg: dict[str, int] = field(default_factory=dict)  # stem -> negated occurrences (all fields)
    length: dict[str, int] = field(default_factory=dict)
    first_score: float = 0.0  # the index's score of its best entry (pool order)
    alertname: str | None = None


def alert_of(meta: Candidate, rows: Iterable[Row]) -> str | None:
    a = (meta.labels or {}).get("alertname")
    if a:
        return a
    return next((str(r.attr("alertname")) for r in rows if r.kind == "alert" and r.attr("alertname")), None)


_TERMS_CACHE: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
_TERMS_CACHE_MAX = 200_000


def _entry_terms(e: Row | Entry) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(stems, negated stems) of an entry's title and body. Entries never change, so this is cached by id."""
    hit = _TERMS_CACHE.get(e.id)
    if hit is None:
        hit = _text_terms(f"{e.title}. {e.body}")
        if len(_TERMS_CACHE) >= _TERMS_CACHE_MAX:
            _TERMS_CACHE.clear()
        _TERMS_CACHE[e.id] = hit
    return hit


def _text_terms(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    toks = tokens(text)
    st = tuple(stem(t) for t in toks)
    return st, tuple(st[i] for i in sorted(negated_positions(toks)))


_DOC_CACHE: dict[tuple[str, int, str, str], tuple[dict[str, dict[str, int]], dict[str, int], dict[str, int],
                                                   str | None]] = {}
_DOC_CACHE_MAX = 20_000


def build_doc(meta: Candidate, rows: Sequence[Row]) -> CaseDoc:
    """A case as BM25F fields (title, alert, findings, fix, human, other) of stem counts. Cached per case
    and per exact set of its entries (entries are append-only: a new entry makes a new key)."""
    d = CaseDoc(case_id=meta.entry.case_id, meta=meta, rows=list(rows))
    key = (d.case_id, len(rows), rows[-1].id if rows else "", meta.case_title)
    hit = _DOC_CACHE.get(key)
    if hit is not None:
        d.tf, d.neg, d.length, d.alertname = hit
        return d
    _fill(d, meta, rows)
    if len(_DOC_CACHE) >= _DOC_CACHE_MAX:
        _DOC_CACHE.clear()
    _DOC_CACHE[key] = (d.tf, d.neg, d.length, d.alertname)
    return d


def _fill(d: CaseDoc, meta: Candidate, rows: Sequence[Row]) -> None:
    """Counts are kept as plain dicts of str -> int, not Counters: CPython's cyclic collector stops tracking
    such dicts, while every Counter (a dict subclass) stays tracked, and the document cache held ~14k of them
    for every full collection to walk (a search's GC pauses, its p99)."""
    d.alertname = alert_of(meta, rows)
    title, neg = _text_terms(f"{meta.case_title}. {' '.join(_name_words(d.alertname or ''))}")
    tf: dict[str, Counter[str]] = {"title": Counter(title)}
    negs: Counter[str] = Counter(neg)
    d.length["title"] = len(title)
    disputed = {e.ref for e in rows if e.ref and e.attr("verdict") == "disputed"}
    for e in rows:
        if e.id in disputed:
            continue
        f = field_of(e.kind, e.author_kind)
        st, neg = _entry_terms(e)
        tf.setdefault(f, Counter()).update(st)
        d.length[f] = d.length.get(f, 0) + len(st)
        negs.update(neg)
    d.tf = {f: dict(c) for f, c in tf.items()}
    d.neg = dict(negs)


def _name_words(name: str) -> list[str]:
    """`KafkaConsumerLagHigh` / `payments-api` -> their words (a new list: callers compare it with lists)."""
    return list(_name_parts(name))


@functools.lru_cache(maxsize=4096)
def _name_parts(name: str) -> tuple[str, ...]:
    """The words of a service or alert name, cached: every search splits the names of its ~60 pool cases,
    and a journal has few distinct names."""
    return tuple(w.lower() for w in _SPLIT.split(_CAMEL.sub(" ", name)) if w)


def bm25f(docs: Sequence[CaseDoc], terms: Sequence[Term], *, boost_fix: bool = False,
          fields: dict[str, float] | None = None) -> dict[str, float]:
    """BM25F text score of each case for the weighted query terms."""
    if not docs or not terms:
        return {d.case_id: 0.0 for d in docs}
    avg = {f: max(1.0, sum(d.length.get(f, 0) for d in docs) / len(docs)) for f in FIELD_WEIGHT}
    weight = dict(fields or FIELD_WEIGHT)
    if boost_fix:
        weight["fix"] *= 1.3
    out: dict[str, float] = {}
    for d in docs:
        s = 0.0
        for t in terms:
            tf = 0.0
            for f, counts in d.tf.items():
                n = float(sum(counts.get(x, 0) for x in t.stems))
                if not n:
                    continue
                if t.negated:
                    negn = min(n, sum(d.neg.get(x, 0) for x in t.stems))
                    n = negn + NEG_UNNEGATED * (n - negn)
                norm = 1 - FIELD_B + FIELD_B * d.length.get(f, 0) / avg[f]
                tf += weight[f] * n / norm
            if tf:
                s += t.weight * t.idf * tf * (K1 + 1) / (K1 + tf)
        out[d.case_id] = s
    return out


def feedback_terms(docs: Sequence[CaseDoc], scores: dict[str, float], terms: Sequence[Term]) -> list[Term]:
    """RM3 over passages: words that, in the best-scoring cases, share an entry with a query word, and that
    characterise those cases rather than the pool as a whole. Service names are structured evidence, not
    words to expand with (they would pull in the same service's unrelated cases)."""
    top = sorted(docs, key=lambda d: -scores.get(d.case_id, 0.0))[:FEEDBACK_CASES]
    total = sum(scores.get(d.case_id, 0.0) for d in top)
    if total <= 0 or len(docs) < 4:
        return []
    have = set().union(*(t.stems for t in terms))
    names = {stem(w) for d in docs for w in _name_words(d.meta.service)}
    pool_df: Counter[str] = Counter()
    for d in docs:
        pool_df.update({x for f, c in d.tf.items() if f != "other" for x in c})
    n = len(docs)
    rm: dict[str, float] = {}
    for d in top:
        p = scores[d.case_id] / total
        counts: Counter[str] = Counter()
        for r in d.rows:
            st = _entry_terms(r)[0]
            if have.intersection(st):
                counts.update(st)
        length = sum(counts.values()) or 1
        for x, k in counts.items():
            rm[x] = rm.get(x, 0.0) + p * k / length
    ranked: list[tuple[float, str]] = []
    for x, v in rm.items():
        dfp = pool_df.get(x, 0)
        if (x in have or x in names or x in STOPWORDS or x in NEGATORS or len(x) < 3
                or any(ch.isdigit() for ch in x) or dfp < 2 or dfp > 0.5 * n):
            continue
        ranked.append((v * math.log(n / dfp), x))
    ranked.sort(reverse=True)
    chosen = ranked[:FEEDBACK_TERMS]
    if not chosen:
        return []
    best = chosen[0][0]
    return [Term(word=x, stems=frozenset({x}), idf=math.log(1 + (n - pool_df[x] + 0.5) / (pool_df[x] + 0.5)),
                 weight=v / best, expansion=True) for v, x in chosen]


# -- structured evidence -----------------------------------------------------------------------------
def service_named(service: str, words: Sequence[str]) -> float:
    """How clearly the query's words name `service`: its whole name as consecutive words (1.0), or its
    distinctive first word (0.5); token-exact, so "api" in a query never names "payments-api"."""
    if not service:
        return 0.0
    parts = _name_words(service)
    if not parts:
        return 0.0
    ws = list(words)
    joined = service.lower()
    if joined in ws:
        return 1.0
    for i in range(len(ws) - len(parts) + 1):
        if ws[i : i + len(parts)] == parts:
            return 1.0
    head = parts[0]
    if len(parts) > 1 and len(head) >= 4 and head not in STOPWORDS and head in ws:
        return 0.5
    return 0.0


def alert_named(alert: str | None, words: Sequence[str]) -> bool:
    """The query names the alert (its exact name as one word, or all its CamelCase words in order)."""
    if not alert:
        return False
    if alert.lower() in words:
        return True
    parts = _name_words(alert)
    return len(parts) > 1 and any(list(words[i : i + len(parts)]) == parts for i in range(len(words)))


def family(fingerprint: str | None) -> str | None:
    """A fingerprint's family: the part before a trailing instance id (`alert:svc:1234` -> `alert:svc`)."""
    if not fingerprint:
        return None
    parts = fingerprint.split(":")
    return ":".join(parts[:2]) if len(parts) > 2 else fingerprint


@dataclass
class Evidence:
    """What the structured signals compare a case with: the query's words, or (similar_cases) an open case."""

    words: list[str] = field(default_factory=list)
    service: str | None = None  # similar_cases: the open case's service
    alertname: str | None = None
    family: str | None = None
    now: datetime = field(default_factory=utcnow)


def score_cases(docs: Sequence[CaseDoc], text: dict[str, float], ev: Evidence,
                terms: Sequence[Term]) -> list[CaseResult]:
    """Final score = text score (normalised to the best case) x the product of the structured factors."""
    top = max(text.values(), default=0.0) or 1.0
    out: list[CaseResult] = []
    for d in docs:
        m = d.meta
        t = text.get(d.case_id, 0.0) / top
        signals: dict[str, float] = {}
        reasons: list[str] = []
        if t > 0:
            signals["text"] = round(t, 4)
        found: list[tuple[str, float, str]] = []
        add = found.append
        if ev.service is not None:
            if m.service and m.service == ev.service:
                add(("same_service", F_SERVICE_HEAD, f"same service: {m.service}"))
        else:
            named = service_named(m.service, ev.words)
            if named:
                add(("same_service", F_SERVICE if named >= 1 else F_SERVICE_HEAD,
                     f"service named in the query: {m.service}"))
        if d.alertname and ((ev.alertname and d.alertname == ev.alertname)
                            or (not ev.alertname and alert_named(d.alertname, ev.words))):
            add(("same_alert", F_ALERT, f"same alert: {d.alertname}"))
        if ev.family and family(m.fingerprint) == ev.family:
            add(("same_fingerprint_family", F_FAMILY, f"same fingerprint family: {ev.family}"))
        if m.case_status == "resolved":
            add(("resolved", F_RESOLVED, "resolved"))
        factor = 1.0
        for name, f, why in found:
            signals[name] = round(f, 4)
            reasons.append(why)
            factor *= f
        age = max(0.0, (ev.now - (m.case_resolved_at or m.case_created_at)).total_seconds() / 86400)
        rec = 1 + (F_RECENT - 1) * 0.5 ** (age / HALF_LIFE_DAYS)
        signals["recency"] = round(rec, 4)
        factor = min(MAX_BOOST, factor * rec)
        matched = _matched(d, terms)
        if t > 0:
            n = len(d.rows)
            orig = [w for w, e in matched if not e]
            reasons.insert(0, f"text: {', '.join(orig) or 'related words'} in {n} entr{'y' if n == 1 else 'ies'}"
                           + (f"; related: {', '.join(w for w, e in matched if e)}" if any(e for _, e in matched)
                              else ""))
        out.append(CaseResult(case_id=d.case_id, title=m.case_title, service=m.service, status=m.case_status,
                              created_at=m.case_created_at, score=round(t * factor, 4) if t > 0 else
                              round((factor - 1) * 0.01, 6), signals=signals, reasons=reasons,
                              matched=[w for w, _ in matched]))
    out.sort(key=lambda r: -r.score)
    return out


def _matched(d: CaseDoc, terms: Sequence[Term]) -> list[tuple[str, bool]]:
    have: set[str] = set()
    for c in d.tf.values():
        have.update(c)
    return [(t.word, t.expansion) for t in terms if t.stems & have]


def hits(d: CaseDoc, terms: Sequence[Term], n: int = 3) -> list[Hit]:
    """The case's entries that carry the most query weight, highlighted."""
    stem_sets = [set(t.stems) for t in terms if not t.expansion] or [set(t.stems) for t in terms]
    scored: list[tuple[float, int, Entry]] = []
    for i, e in enumerate(d.entries):
        have = set(_entry_terms(e)[0])
        s = sum(t.idf * t.weight for t in terms if t.stems & have)
        if s > 0:
            scored.append((s, -i, e))
    scored.sort(key=lambda x: (-x[0], -x[1]))
    out = []
    for s, _, e in scored[:n]:
        text, spans = highlight(e.title, e.body, stem_sets)
        out.append(Hit(entry_id=e.id, seq=e.seq, kind=e.kind.value, author=str(e.author), ts=e.ts, title=e.title,
                       text=text, spans=spans, score=round(s, 4)))
    return out


def outcome_of(d: CaseDoc) -> Outcome:
    return summarize(d.entries, d.meta.case_created_at, d.meta.case_resolved_at)


def apply_outcome(r: CaseResult, o: Outcome) -> None:
    """Add the outcome's evidence (verified fix, human verdict) to a ranked case's score and reasons."""
    r.outcome = o
    for name, f, why, on in (("verified", F_VERIFIED, "remediation verified", o.verified),
                             ("human_verdict", F_HUMAN, "a human overrode or rejected a step",
                              bool(o.overridden or o.rejected))):
        if on:
            r.signals[name] = f
            r.reasons.append(why)
    if r.signals.get("text"):
        factor = math.prod(v for k, v in r.signals.items() if k != "text")
        r.score = round(r.signals["text"] * min(MAX_BOOST, factor), 4)
