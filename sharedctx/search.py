"""Operational history search: "how was this handled last time?" for people and agents alike.

`search(store, text)` ranks earlier work and `similar_cases(store, case_id)` finds earlier cases like an
open one. Both use only the journal's own full-text index (FTS5 BM25 on SQLite, `ts_rank` on PostgreSQL)
plus structured signals — no separate vector database.

Ranking, in order:

1. **Candidates** come from the store's full-text index. The query's words (stop words and "intent"
   words such as *fix*, *how*, *last time* removed; a few ops synonyms added, e.g. db ~ database) are
   OR-ed and ranked by BM25 when that matches at most `BUDGET` entries. Past that (large journals,
   common words), a bounded plan runs instead: the words' groups, rarest first, are AND-ed and then
   relaxed one group at a time until enough candidates are found; a group too common to rank whole is
   ranked over its most recent `BUDGET` matches. `strategy` in the result says which plan ran.
2. **Entry relevance** = 0.6 x (text score / best text score of its query) + 0.4 x (share of the query's
   word groups the entry contains), times a weight per entry kind (findings, remediations, resolutions
   and human decisions count more than notes; when the query asks how something was fixed,
   remediations and resolutions count more still).
3. **Cases**: entries are grouped by case; a case's text score is its best entry + 0.3 x its second +
   0.15 x its third, normalised to the best case. Then signals add to it: same service (the query names
   the case's service) +0.35, same alert (the query names the case's `alertname`) +0.25, resolved +0.08,
   remediation verified +0.07, a human overrode or rejected something +0.04, recency up to +0.05 (half
   life 90 days). Every result lists the signals that fired (`reasons`) and highlighted snippets.

Outcome conventions this module reads (written by the humans-in-the-loop code and by agents):

- `decision` entry, `attrs.outcome` in `approved | rejected | overridden`, `ref` = the decision-request;
  for an override, `attrs.instead` (optional) says what to do instead (else the body does).
- `correction` entry: a human correction of an earlier entry (`ref`); counts as an override.
- a verdict on a finding: any entry with `attrs.verdict` in `verified | disputed` and `ref` = the finding.
- `verification` entry: `attrs.verdict` (or `attrs.outcome`) in `verified | passed | ok | success` means the
  remediation it refers to worked; `failed | not-verified` means it did not.
- `action` entry with `attrs.result` in `no-effect | failed | worse`: something tried that did not help.
- a `resolution` entry resolves the case; time to resolve = case resolved_at - created_at.

Query language (operators' queries; anything else is a word): `service:x kind:y[,z] author:human|name
outcome:resolved|verified|overridden|rejected|approved|disputed status:open|mitigated|resolved
case:<id> since:7d until:2026-01-31 "exact phrase"` plus words. FTS operators (AND, OR, NOT, NEAR, `*`,
`^`, parentheses, `col:`) are never passed to the index: every word is quoted, and the result's `notice`
says when the input held syntax that was taken literally or ignored.
"""

from __future__ import annotations

import functools
import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from .decisions import counts
from .errors import StoreError
from .model import Entry, EntryKind, utcnow
from .store.base import Candidate, CandidateQuery, EntryMatch, SearchFilters, Store, literal_terms

BUDGET = 4000  # most entries the store ranks for one query (bounded latency at any journal size)
DF_CAP = 100_000  # counting a word's matches stops here
CANDIDATES = 150  # entries retrieved per query
MAX_TERMS = 24  # words kept from a query
MAX_QUERY_CHARS = 2000

AUTHOR_KINDS = ("primary", "partner", "human", "system")
OUTCOMES = ("resolved", "verified", "overridden", "rejected", "approved", "disputed")
STATUSES = ("open", "mitigated", "resolved")
VERIFIED = ("verified", "passed", "ok", "success")
FAILED = ("failed", "not-verified", "no-effect", "worse", "disputed")

STOPWORDS = frozenset(
    """a an the and or but if then else of on in at to for from by with without into onto over under
    about after before again ever still is are was were be been being am do does did done doing have has
    had having i we you he she it they our ours us my me your them their this that these those there here
    what when where which who whom whose why how can could should would will shall may might must not no
    nor so too very just also any some all each other such only own same than s t out up down off
    last time times previous previously earlier happened happen happens thing things something someone
    anyone one get got please show tell find look looking see seen""".split()  # noqa: SIM905
)
INTENT_FIX = frozenset(
    """fix fixed fixes fixing resolve resolved resolving solve solved handle handled handling deal dealt
    mitigate mitigated remediate remediated repair repaired recover recovered""".split()  # noqa: SIM905
)
# generic ops vocabulary: words that name the same thing (each word expands to its whole group)
SYNONYMS: tuple[frozenset[str], ...] = tuple(
    frozenset(g.split())
    for g in (
        # one spelling per stem: the index stems plurals and tenses itself
        "db database postgres mysql",
        "conn connection",
        "oom oomkilled memory",
        "restart bounce reboot",
        "rollback revert",
        "latency slow",
        "5xx error failure",
        "cert certificate tls ssl x509",
        "dns coredns",
        "disk volume storage",
        "lag backlog",
        "deploy release rollout",
        "config configuration misconfiguration",
        "429 throttled quota",
        "replica replication",
        "k8s kubernetes",
    )
)
_SYN: dict[str, frozenset[str]] = {w: g for g in SYNONYMS for w in g}
_SYN.update({w + "s": g for g in SYNONYMS for w in g if not w.endswith("s")})  # plurals find their group

KIND_WEIGHT = {
    "finding": 1.2, "remediation": 1.25, "resolution": 1.25, "decision": 1.15, "correction": 1.15,
    "triage": 1.0, "alert": 1.0, "action": 0.95, "decision-request": 0.95, "verification": 0.75,
    "handoff": 0.7, "note": 0.6,
}  # fmt: skip
FIX_KINDS = ("remediation", "resolution", "decision", "correction", "action")
# `note` and `finding` are here because a human verdict on a finding (👍 / `/verify`, 👎 / `/dispute`) is a
# note with `attrs.verdict` whose `ref` is the finding: both are needed to say which findings people confirmed.
OUTCOME_KINDS = ("action", "remediation", "verification", "decision", "decision-request", "correction", "resolution",
                 "note", "finding")

W_SERVICE, W_ALERT, W_FAMILY, W_RESOLVED, W_VERIFIED, W_HUMAN, W_RECENT = 0.35, 0.25, 0.15, 0.08, 0.07, 0.04, 0.05
HALF_LIFE_DAYS = 90.0

_FILTER = re.compile(r'(?<![\w])(service|kind|author|outcome|since|until|status|case):(?:"([^"]*)"|(\S*))', re.I)
_FTS_SYNTAX = re.compile(r'\b(AND|OR|NOT|NEAR)\b|[*^(){}+\-]|\w+:(?!//)')


# -- result model ------------------------------------------------------------------------------------
class Hit(BaseModel):
    """One matching entry of a case: what it says, with the query's words highlighted."""

    entry_id: str
    seq: int
    kind: str
    author: str
    ts: datetime
    title: str
    text: str  # the window of title/body shown
    spans: list[tuple[int, int]] = Field(default_factory=list)  # highlighted [start, end) in `text`
    score: float

    @property
    def snippet(self) -> str:
        """`text` with highlights marked `[like this]`."""
        out, pos = [], 0
        for a, b in self.spans:
            out.append(self.text[pos:a] + "[" + self.text[a:b] + "]")
            pos = b
        return "".join(out) + self.text[pos:]


class Outcome(BaseModel):
    """How a case went: what was tried, what worked, what humans overrode or rejected."""

    resolved: bool = False
    resolved_at: datetime | None = None
    time_to_resolve_minutes: float | None = None
    tried: list[str] = Field(default_factory=list)  # actions/remediations that did not help
    worked: list[str] = Field(default_factory=list)  # remediations (verified ones first) and the resolution
    verified: bool = False  # a remediation was verified
    overridden: list[str] = Field(default_factory=list)  # "proposal → what the human said instead"
    rejected: list[str] = Field(default_factory=list)
    approved: list[str] = Field(default_factory=list)
    findings_verified: list[str] = Field(default_factory=list)
    findings_disputed: list[str] = Field(default_factory=list)


class CaseResult(BaseModel):
    case_id: str
    title: str
    service: str
    status: str
    created_at: datetime
    score: float
    signals: dict[str, float] = Field(default_factory=dict)  # signal -> what it added to the score
    reasons: list[str] = Field(default_factory=list)  # the same, in words
    hits: list[Hit] = Field(default_factory=list)
    outcome: Outcome | None = None

    @property
    def why(self) -> str:
        return "; ".join(self.reasons)

    @property
    def resolution(self) -> str | None:
        """What ended the case (its resolution text), if it was resolved."""
        return self.outcome.worked[-1] if self.outcome and self.outcome.resolved and self.outcome.worked else None

    @property
    def summary(self) -> str:
        """One line for an agent's triage note: what it was, what worked, what a human overrode."""
        parts = [f"{self.title} ({self.service or 'no service'}, {self.status}"]
        o = self.outcome
        if o and o.time_to_resolve_minutes is not None:
            parts[0] += f" in {o.time_to_resolve_minutes:.0f} min"
        parts[0] += ")"
        if o:
            if o.worked:
                parts.append("fix: " + o.worked[0])
            if o.tried:
                parts.append("tried without effect: " + "; ".join(o.tried[:2]))
            if o.rejected:
                parts.append("human rejected: " + o.rejected[0])
            if o.overridden:
                parts.append("human overrode: " + o.overridden[0])
        return " — ".join(parts)


class ParsedQuery(BaseModel):
    text: str
    words: list[str] = Field(default_factory=list)  # free words as typed (after the filters)
    terms: list[str] = Field(default_factory=list)  # searched words (stop/intent words removed)
    phrases: list[str] = Field(default_factory=list)
    filters: SearchFilters = Field(default_factory=SearchFilters)
    outcomes: list[str] = Field(default_factory=list)
    fix_intent: bool = False
    notices: list[str] = Field(default_factory=list)


class SearchResult(BaseModel):
    query: ParsedQuery
    cases: list[CaseResult] = Field(default_factory=list)
    strategy: str = ""  # which retrieval plan ran (see the module doc)
    fallback: bool = False  # the input held syntax that was taken literally or ignored
    notice: str | None = None  # what was done about odd input, in words
    candidates: int = 0
    elapsed_ms: float = 0.0

    def __iter__(self) -> Any:  # iterate over the cases, like a list of results
        return iter(self.cases)

    def __len__(self) -> int:
        return len(self.cases)


# -- query language ----------------------------------------------------------------------------------
def parse_since(value: str, *, now: datetime | None = None) -> datetime | None:
    """`30m`, `2h`, `7d`, `2w` ago, or an ISO date/time (UTC when no zone); None if not understood."""
    value = value.strip()
    m = re.fullmatch(r"(\d{1,6})\s*([smhdw])", value, re.I)
    if m:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m.group(2).lower()]
        return (now or utcnow()) - timedelta(**{unit: int(m.group(1))})
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_query(text: str, filters: SearchFilters | None = None) -> ParsedQuery:
    """Split an operator's query into filters, phrases and words. Never raises; odd input -> notices."""
    notices: list[str] = []
    text = text or ""
    if len(text) > MAX_QUERY_CHARS:
        notices.append(f"query was {len(text):,} characters; only the first {MAX_QUERY_CHARS:,} were used")
        text = text[:MAX_QUERY_CHARS]
    text = "".join(ch if ch.isprintable() or ch in "\t\n" else " " for ch in text)
    f = (filters or SearchFilters()).model_copy(deep=True)
    outcomes: list[str] = []

    def take(m: re.Match[str]) -> str:
        key, value = m.group(1).lower(), (m.group(2) if m.group(2) is not None else m.group(3)).strip()
        if not value:
            notices.append(f"`{key}:` had no value and was ignored")
            return " "
        if key == "service":
            f.service = value
        elif key == "case":
            f.case_id = value
        elif key == "kind":
            kinds = [k.strip().lower() for k in value.split(",") if k.strip()]
            valid = [k for k in kinds if k in {e.value for e in EntryKind}]
            bad = [k for k in kinds if k not in valid]
            if bad:
                valid_kinds = ", ".join(e.value for e in EntryKind)
                notices.append(f"unknown kind {', '.join(bad)} ignored (kinds: {valid_kinds})")
            if valid:
                f.kinds = sorted(set(f.kinds or []) | set(valid))
        elif key == "author":
            if value.lower() in AUTHOR_KINDS:
                f.author_kind = value.lower()
            elif ":" in value and value.split(":", 1)[0].lower() in AUTHOR_KINDS:
                f.author_kind, f.author = value.split(":", 1)[0].lower(), value.split(":", 1)[1]
            else:
                f.author = value
        elif key == "outcome":
            for o in (v.strip().lower() for v in value.split(",")):
                if o in OUTCOMES:
                    outcomes.append(o)
                elif o:
                    notices.append(f"unknown outcome {o!r} ignored (outcomes: {', '.join(OUTCOMES)})")
        elif key == "status":
            if value.lower() in STATUSES:
                f.case_status = value.lower()
            else:
                notices.append(f"unknown status {value!r} ignored (statuses: {', '.join(STATUSES)})")
        elif key in ("since", "until"):
            when = parse_since(value)
            if when is None:
                notices.append(f"`{key}:{value}` is not a time (use 30m, 2h, 7d or 2026-01-31) and was ignored")
            else:
                setattr(f, key, when)
        return " "

    rest = _FILTER.sub(take, text)
    phrases: list[str] = []
    chunks = rest.split('"')
    if len(chunks) % 2 == 0:  # odd number of quotes: the last one opens nothing
        notices.append("an unmatched double quote was ignored")
        chunks = [*chunks[:-2], chunks[-2] + " " + chunks[-1]]
    words: list[str] = []
    for i, chunk in enumerate(chunks):
        if i % 2 == 1:
            ws = literal_terms(chunk, 16)
            if len(ws) > 1:
                phrases.append(" ".join(ws).lower())
            else:
                words.extend(ws)
        else:
            if _FTS_SYNTAX.search(chunk):
                found = sorted({m.group(0) for m in _FTS_SYNTAX.finditer(chunk)})[:6]
                notices.append("search syntax " + ", ".join(f"`{s}`" for s in found) + " was taken literally "
                               "(words only; use \"quotes\" for phrases and service:/kind:/since: filters)")
            words.extend(literal_terms(chunk, 10_000))
    words = [w.lower() for w in words]
    fix_intent = any(w in INTENT_FIX for w in words) or bool({"roll", "back"} <= set(words))
    terms: list[str] = []
    for w in words:
        if w in STOPWORDS or w in INTENT_FIX or w in terms or (len(w) == 1 and not w.isdigit()):
            continue
        terms.append(w)
    if not terms and not phrases and words:  # a query of only stop words: search them anyway
        terms = list(dict.fromkeys(words))
    if len(terms) > MAX_TERMS:
        notices.append(f"only the first {MAX_TERMS} of {len(terms)} words were searched")
        terms = terms[:MAX_TERMS]
    if len(phrases) > 8:
        notices.append("only the first 8 phrases were searched")
        phrases = phrases[:8]
    if text.strip() and not terms and not phrases and not _has_filters(f, outcomes):
        notices.append("the query has no searchable words; showing the most recent entries")
    return ParsedQuery(text=text, words=words, terms=terms, phrases=phrases, filters=f, outcomes=outcomes,
                       fix_intent=fix_intent, notices=notices)


def _has_filters(f: SearchFilters, outcomes: Sequence[str]) -> bool:
    return bool(outcomes) or any(v is not None for v in f.model_dump().values())


def outcome_matches(outcome: str) -> list[EntryMatch]:
    """Entry conditions that make a case have `outcome` (see the conventions in the module doc)."""
    if outcome == "overridden":  # what did a human override: rejected or overridden decisions, corrections
        return [EntryMatch(kind="decision", attr="outcome", values=["overridden", "rejected"]),
                EntryMatch(kind="correction")]
    if outcome in ("rejected", "approved"):
        return [EntryMatch(kind="decision", attr="outcome", values=[outcome])]
    if outcome == "disputed":
        return [EntryMatch(attr="verdict", values=["disputed"])]
    if outcome == "verified":
        return [EntryMatch(kind="verification", attr="verdict", values=list(VERIFIED)),
                EntryMatch(kind="verification", attr="outcome", values=list(VERIFIED))]
    return []


# -- words -------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """A rough English stem, only for highlighting and for counting which query words an entry has."""
    w = word.lower()
    for suffix in ("ations", "ation", "ings", "ing", "ions", "ion", "edly", "ed", "es", "s", "ly"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            return w[: -len(suffix)]
    return w


def groups_for(terms: Sequence[str]) -> list[list[str]]:
    """Each query word with its synonyms: one OR-group per word; words of one synonym set share a group."""
    groups: list[list[str]] = []
    seen: set[str] = set()
    for t in terms:
        if t in seen:
            continue
        g = [t, *sorted(w for w in _SYN.get(t, ()) if w != t and w + "s" != t)]
        seen.update(g)
        seen.update(w + "s" for w in g)
        groups.append(g)
    return groups


_WORD = re.compile(r"\w+", re.UNICODE)


def _group_stems(groups: Sequence[Sequence[str]]) -> list[set[str]]:
    return [{stem(w) for alt in g for w in alt.split()} for g in groups]


def coverage(text: str, stems: Sequence[set[str]], weights: Sequence[float]) -> float:
    """Weighted share of the query's word groups present in `text`."""
    if not stems:
        return 0.0
    have = {stem(w) for w in _WORD.findall(text)}
    total = sum(weights) or 1.0
    return sum(wt for s, wt in zip(stems, weights, strict=True) if s & have) / total


def highlight(title: str, body: str, stems: Sequence[set[str]], width: int = 180) -> tuple[str, list[tuple[int, int]]]:
    """A window of `title — body` around the first query word, and the spans of every query word in it."""
    full = f"{title} — {body}" if body else title
    full = re.sub(r"\s+", " ", full)
    wanted = set().union(*stems) if stems else set()
    matches = [(m.start(), m.end()) for m in _WORD.finditer(full) if stem(m.group(0)) in wanted]
    start = 0
    if matches and matches[0][0] > width // 3:
        start = max(0, matches[0][0] - width // 4)
        start = full.rfind(" ", 0, start) + 1
    end = min(len(full), start + width)
    text = ("…" if start else "") + full[start:end] + ("…" if end < len(full) else "")
    shift = 1 if start else 0
    spans = [(a - start + shift, b - start + shift) for a, b in matches if a >= start and b <= end]
    return text, spans


# -- retrieval ---------------------------------------------------------------------------------------
_DF_CACHE: dict[tuple[str, tuple[str, ...]], tuple[float, int]] = {}
_DF_TTL = 300.0


def _df(store: Store, group: Sequence[str], base: CandidateQuery) -> int:
    key = (store.url, tuple(group))
    hit = _DF_CACHE.get(key)
    now = time.monotonic()
    if hit and now - hit[0] < _DF_TTL:
        return hit[1]
    n = store.count_matches(base.model_copy(update={"match": [[list(group)]]}), DF_CAP)
    if len(_DF_CACHE) > 10_000:
        _DF_CACHE.clear()
    _DF_CACHE[key] = (now, n)
    return n


@dataclass
class Retrieval:
    candidates: list[Candidate] = field(default_factory=list)
    strategy: str = ""
    weights: list[float] = field(default_factory=list)  # per group, for coverage
    batches: list[float] = field(default_factory=list)  # best text score of each retrieval query


def retrieve(store: Store, groups: list[list[str]], phrases: list[str], base: CandidateQuery,
             limit: int = CANDIDATES) -> Retrieval:
    """Candidates for the word groups (OR-ed, BM25) within the budget; see the module doc for the plan."""
    out = Retrieval(weights=[1.0] * len(groups))
    must = [[p] for p in phrases]  # explicit phrases are required
    if not groups and not must:
        out.candidates = store.search_candidates(base, limit)
        out.strategy = "filters"
        return out
    if not groups:
        q = base.model_copy(update={"match": [must]})
        n = store.count_matches(q, BUDGET + 1)
        if n > BUDGET:
            q = _window(store, q, n)
        out.candidates = store.search_candidates(q, limit)
        out.strategy = "phrases" + (" (recent window)" if n > BUDGET else "")
        out.batches.append(max((c.score for c in out.candidates), default=0.0))
        return out
    full = base.model_copy(update={"match": [[*must, g] for g in groups]})
    n = store.count_matches(full, BUDGET + 1)
    if n <= BUDGET:
        out.candidates = store.search_candidates(full, limit)
        out.strategy = "bm25-or"
        out.batches.append(max((c.score for c in out.candidates), default=0.0))
        if len(groups) > 1 and n > 0:
            dfs = [max(1, _df(store, g, base)) for g in groups] if n > 200 else []
            if dfs:
                total = max(dfs) * 2
                out.weights = [math.log(1 + total / d) for d in dfs]
        return out
    # too many matches to rank whole: AND the rarest groups, relaxing one group at a time
    dfs = [_df(store, g, base) for g in groups]
    order = sorted((i for i in range(len(groups)) if dfs[i] > 0), key=lambda i: dfs[i])  # unmatched words drop out
    total = max(dfs) * 2 or 1
    out.weights = [math.log(1 + total / max(1, d)) for d in dfs]
    seen: set[int] = set()
    cases: set[str] = set()
    steps: list[str] = []
    want_cases = max(12, limit // 8)
    for size in range(len(order), 0, -1):
        chosen = [groups[i] for i in order[:size]]
        q = base.model_copy(update={"match": [[*must, *chosen]]})
        # an AND of 3+ groups is small in practice: rank it without counting first
        est = (min(dfs[i] for i in order[:size]) if size == 1
               else 0 if min(dfs[i] for i in order[:size]) == 0
               else store.count_matches(q, BUDGET + 1) if size == 2 else 1)
        if est == 0:
            continue
        windowed = est > BUDGET
        if windowed:
            q = _window(store, q, est)
        got = store.search_candidates(q, limit)
        steps.append(f"and{size}" + ("w" if windowed else ""))
        out.batches.append(max((c.score for c in got), default=0.0))
        for c in got:
            if c.rowid not in seen:
                seen.add(c.rowid)
                out.candidates.append(c)
                cases.add(c.entry.case_id)
        if len(cases) >= want_cases or windowed:
            break
    out.strategy = "bounded:" + ",".join(steps)
    return out


def _window(store: Store, q: CandidateQuery, estimate: int) -> CandidateQuery:
    """Restrict `q` to the most recent stretch of the journal expected to hold about BUDGET matches."""
    lo, hi = store.entry_rowid_range()
    span = max(1, hi - lo + 1)
    share = min(1.0, BUDGET / max(estimate, DF_CAP if estimate >= DF_CAP else estimate))
    return q.model_copy(update={"min_rowid": max(lo, hi - int(span * share))})


# -- ranking -----------------------------------------------------------------------------------------
def _service_named(service: str, words: set[str], text: str) -> bool:
    if not service:
        return False
    if service.lower() in text:
        return True
    head = re.split(r"[-_.\s]", service.lower())[0]
    return len(head) >= 3 and head in words


def _family(fingerprint: str | None) -> str | None:
    """A fingerprint's family: the part before a trailing instance id (`alert:svc:1234` -> `alert:svc`)."""
    if not fingerprint:
        return None
    parts = fingerprint.split(":")
    return ":".join(parts[:2]) if len(parts) > 2 else fingerprint


def summarize(entries: Sequence[Entry], created_at: datetime, resolved_at: datetime | None) -> Outcome:
    """What was tried, what worked, what humans overrode/rejected/approved, from a case's entries."""
    by_id = {e.id: e for e in entries}
    o = Outcome(resolved=resolved_at is not None, resolved_at=resolved_at)
    if resolved_at is not None:
        o.time_to_resolve_minutes = round((resolved_at - created_at).total_seconds() / 60, 1)
    failed_refs = set()
    for e in entries:
        verdict = str(e.attrs.get("verdict") or e.attrs.get("outcome") or "").lower()
        if e.kind == EntryKind.VERIFICATION and e.ref:
            if verdict in VERIFIED:
                o.verified = True
            elif verdict in FAILED:
                failed_refs.add(e.ref)
    for e in entries:
        attrs = e.attrs
        if e.kind == EntryKind.ACTION and str(attrs.get("result", "")).lower() in FAILED:
            o.tried.append(e.title)
        elif e.kind == EntryKind.REMEDIATION:
            (o.tried if e.id in failed_refs else o.worked).append(e.title)
        elif e.kind == EntryKind.DECISION and counts(e):  # an agent's "decision" is nobody's decision
            outcome = str(attrs.get("outcome", "")).lower()
            req = by_id.get(e.ref or "")
            asked = req.title if req else e.title
            if outcome == "overridden":
                instead = str(attrs.get("instead") or e.body or e.title)[:200]
                o.overridden.append(f"{asked} → {instead} ({e.author.name}, {e.ts:%Y-%m-%d})")
            elif outcome == "rejected":
                o.rejected.append(f"{asked} ({e.author.name}, {e.ts:%Y-%m-%d}): {e.body[:160]}")
            elif outcome == "approved":
                o.approved.append(f"{asked} ({e.author.name}, {e.ts:%Y-%m-%d})")
        elif e.kind == EntryKind.CORRECTION:
            target = by_id.get(e.ref or "")
            o.overridden.append(f"{target.title if target else 'an entry'} → {e.title} ({e.author.name}, "
                                f"{e.ts:%Y-%m-%d})")
        if attrs.get("verdict") in ("verified", "disputed") and e.ref and e.kind != EntryKind.VERIFICATION:
            target = by_id.get(e.ref)
            if target is not None:
                (o.findings_verified if attrs["verdict"] == "verified" else o.findings_disputed).append(target.title)
    res = [e for e in entries if e.kind == EntryKind.RESOLUTION]
    if res and res[-1].body:
        o.worked.append(res[-1].body[:240])
    return o


@dataclass
class _Ctx:
    words: set[str]
    text: str
    stems: list[set[str]]
    weights: list[float]
    fix_intent: bool
    alertname: str | None = None  # similar_cases: the open case's alert
    service: str | None = None
    family: str | None = None
    now: datetime = field(default_factory=utcnow)


def rank(store: Store, cands: Sequence[Candidate], batches: Sequence[float], ctx: _Ctx, limit: int,
         *, outcomes: bool = True, hits_per_case: int = 3, all_entries: bool = False) -> list[CaseResult]:
    """Group candidates by case, score cases (text + signals), and explain each score."""
    best = max(batches, default=0.0) or 1.0
    per_case: dict[str, list[tuple[float, Candidate]]] = {}
    for c in cands:
        kw = KIND_WEIGHT.get(c.entry.kind.value, 1.0)
        if ctx.fix_intent and c.entry.kind.value in FIX_KINDS:
            kw *= 1.2
        text_rel = (c.score / best) if c.score > 0 else 0.0
        cov = coverage(f"{c.entry.title} {c.entry.body}", ctx.stems, ctx.weights) if ctx.stems else 0.0
        rel = (0.6 * min(1.0, text_rel) + 0.4 * cov) * kw
        per_case.setdefault(c.entry.case_id, []).append((rel, c))
    scored: list[tuple[float, str]] = []
    for cid, items in per_case.items():
        items.sort(key=lambda x: -x[0])
        rels = [r for r, _ in items]
        scored.append((rels[0] + 0.3 * sum(rels[1:2]) + 0.15 * sum(rels[2:3]), cid))
    top_text = max((s for s, _ in scored), default=0.0) or 1.0
    results: list[CaseResult] = []
    for text_score, cid in scored:
        items = per_case[cid]
        c0 = items[0][1]
        signals: dict[str, float] = {}
        reasons: list[str] = []
        if text_score > 0:
            signals["text"] = round(text_score / top_text, 4)
            n = len(items)
            kinds = ", ".join(sorted({i[1].entry.kind.value for i in items}))
            reasons.append(f"text: {n} matching entr{'y' if n == 1 else 'ies'} ({kinds})")
        alert = c0.labels.get("alertname") if c0.labels else None
        if ctx.service is not None:
            if c0.service and c0.service == ctx.service:
                signals["same_service"] = W_SERVICE
                reasons.append(f"same service: {c0.service}")
        elif _service_named(c0.service, ctx.words, ctx.text):
            signals["same_service"] = W_SERVICE
            reasons.append(f"service named in the query: {c0.service}")
        if alert and ((ctx.alertname and alert == ctx.alertname) or (not ctx.alertname and alert.lower() in ctx.text)):
            signals["same_alert"] = W_ALERT
            reasons.append(f"same alert: {alert}")
        if ctx.family and _family(c0.fingerprint) == ctx.family:
            signals["same_fingerprint_family"] = W_FAMILY
            reasons.append(f"same fingerprint family: {ctx.family}")
        if c0.case_status == "resolved":
            signals["resolved"] = W_RESOLVED
            reasons.append("resolved")
        age = max(0.0, (ctx.now - (c0.case_resolved_at or c0.case_created_at)).total_seconds() / 86400)
        signals["recency"] = round(W_RECENT * 0.5 ** (age / HALF_LIFE_DAYS), 4)
        score = signals.get("text", 0.0) + sum(v for k, v in signals.items() if k != "text")
        results.append(CaseResult(
            case_id=cid, title=c0.case_title, service=c0.service, status=c0.case_status,
            created_at=c0.case_created_at, score=score, signals=signals, reasons=reasons,
        ))  # fmt: skip
    results.sort(key=lambda r: -r.score)
    if outcomes and results:
        head = results[: limit + 10]
        ents = store.case_entries([r.case_id for r in head], None if all_entries else OUTCOME_KINDS)
        by_case: dict[str, list[Entry]] = {}
        for e in ents:
            by_case.setdefault(e.case_id, []).append(e)
        rec = {c.entry.case_id: c for c in cands}
        for r in head:
            c = rec[r.case_id]
            r.outcome = summarize(by_case.get(r.case_id, []), c.case_created_at, c.case_resolved_at)
            if r.outcome.verified:
                r.signals["verified"] = W_VERIFIED
                r.reasons.append("remediation verified")
            if r.outcome.overridden or r.outcome.rejected:
                r.signals["human_verdict"] = W_HUMAN
                r.reasons.append("a human overrode or rejected a step")
            r.score = r.signals.get("text", 0.0) + sum(v for k, v in r.signals.items() if k != "text")
        head.sort(key=lambda r: -r.score)
        results = head + results[len(head):]
    results = results[:limit]
    for r in results:
        r.score = round(r.score, 4)
        r.hits = [_hit(c, rel, ctx) for rel, c in per_case[r.case_id][:hits_per_case]]
    return results


def _hit(c: Candidate, rel: float, ctx: _Ctx) -> Hit:
    text, spans = highlight(c.entry.title, c.entry.body, ctx.stems)
    return Hit(entry_id=c.entry.id, seq=c.entry.seq, kind=c.entry.kind.value, author=str(c.entry.author),
               ts=c.entry.ts, title=c.entry.title, text=text, spans=spans, score=round(rel, 4))


# -- entry points ------------------------------------------------------------------------------------
def _store(ctx_or_store: Any) -> Store:
    store: Store = getattr(ctx_or_store, "store", ctx_or_store)
    return store


def search(ctx_or_store: Any, text: str, filters: SearchFilters | None = None, *, limit: int = 20,
           with_outcomes: bool = True) -> SearchResult:
    """Search every case's history; results grouped by case, best first, each saying why it matched."""
    t0 = time.perf_counter()
    store = _store(ctx_or_store)
    limit = max(1, min(int(limit), 500))
    pq = parse_query(text, filters)
    outcome_conds = [m for o in pq.outcomes for m in outcome_matches(o)]
    f = pq.filters.model_copy()
    if "resolved" in pq.outcomes:
        f.case_status = "resolved"
    groups = groups_for(pq.terms)
    no_text = not groups and not pq.phrases
    base = CandidateQuery(filters=f, case_has=[] if no_text else outcome_conds,
                          entry_is=outcome_conds if no_text else [])
    notices = list(pq.notices)
    try:
        got = retrieve(store, groups, pq.phrases, base)
    except StoreError as exc:  # never let odd input crash a search: retry with the plainest query
        notices.append(f"the search index refused the query ({exc}); searched the words literally instead")
        plain = [[[w]] for w in pq.terms[:8]]
        try:
            got = Retrieval(candidates=store.search_candidates(base.model_copy(update={"match": plain}), CANDIDATES),
                            strategy="literal-fallback")
            got.batches.append(max((c.score for c in got.candidates), default=0.0))
        except StoreError as exc2:
            notices.append(f"the literal search failed too: {exc2}")
            got = Retrieval(strategy="failed")
    stems = _group_stems([*groups, *[[p] for p in pq.phrases]])
    weights = [*got.weights, *([1.5] * len(pq.phrases))]
    if len(weights) != len(stems):
        weights = [1.0] * len(stems)
    said = " ".join([*pq.words, *pq.phrases])
    rctx = _Ctx(words=set(pq.words), text=said, stems=stems, weights=weights, fix_intent=pq.fix_intent)
    cases = rank(store, got.candidates, got.batches, rctx, limit, outcomes=with_outcomes)
    return SearchResult(query=pq, cases=cases, strategy=got.strategy, fallback=bool(notices),
                        notice="; ".join(notices) or None, candidates=len(got.candidates),
                        elapsed_ms=round((time.perf_counter() - t0) * 1000, 2))


SIMILAR_KINDS = ("alert", "triage", "finding")


def similar_cases(ctx_or_store: Any, case_id: str, limit: int = 5) -> list[CaseResult]:
    """Earlier cases ranked by similarity to `case_id` (its alert, triage and findings so far).

    Each result carries `outcome`: what was tried, what worked, what a human overrode or rejected,
    and the time to resolve. Findings a human disputed do not count toward similarity.
    """
    store = _store(ctx_or_store)
    case = store.get_case(case_id)
    entries = store.entries(case_id)
    disputed = {e.ref for e in entries if e.attrs.get("verdict") == "disputed" and e.ref}
    basis = [e for e in entries if e.kind.value in SIMILAR_KINDS and e.id not in disputed]
    words: list[str] = []
    for e in basis:
        for w in literal_terms(f"{e.title} {e.body}", 400):
            w = w.lower()
            if w not in STOPWORDS and w not in INTENT_FIX and len(w) > 2 and not w.isdigit() and w not in words:
                words.append(w)
    for w in literal_terms(case.title, 40):
        if w.lower() not in STOPWORDS and w.lower() not in words and len(w) > 2:
            words.append(w.lower())
    groups = groups_for(words[:MAX_TERMS])
    alert = case.labels.get("alertname") or next(
        (str(e.attrs["alertname"]) for e in entries if e.kind == EntryKind.ALERT and e.attrs.get("alertname")), None
    )
    base = CandidateQuery(filters=SearchFilters(until=case.created_at))
    got = retrieve(store, groups, [], base) if groups else Retrieval(strategy="none")
    # structured candidates: the same service's recent history, even when its words differ
    if case.service:
        more = store.search_candidates(
            base.model_copy(update={"filters": SearchFilters(service=case.service, until=case.created_at)}), 60
        )
        known = {c.rowid for c in got.candidates}
        got.candidates.extend(c for c in more if c.rowid not in known)
    cands = [c for c in got.candidates if c.entry.case_id != case_id and c.case_created_at < case.created_at]
    rctx = _Ctx(words=set(words), text=" ".join(words), stems=_group_stems(groups),
                weights=got.weights if len(got.weights) == len(groups) else [1.0] * len(groups), fix_intent=False,
                alertname=alert, service=case.service or None, family=_family(case.fingerprint))
    return rank(store, cands, got.batches, rctx, limit, all_entries=True)


def describe(results: Iterable[CaseResult]) -> str:
    """One line an agent can record: "seen 3 times; last fix: …; human rejected … on …"."""
    rs = list(results)
    if not rs:
        return "no similar earlier cases"
    parts = [f"seen {len(rs)} time{'s' if len(rs) != 1 else ''}"]
    last = max(rs, key=lambda r: r.created_at)
    if last.outcome and last.outcome.worked:
        parts.append(f"last fix: {last.outcome.worked[0]}")
    for r in rs:
        if r.outcome and (r.outcome.rejected or r.outcome.overridden):
            parts.append("human " + ("rejected " + r.outcome.rejected[0] if r.outcome.rejected
                                      else "overrode " + r.outcome.overridden[0]))
            break
    return "; ".join(parts)
