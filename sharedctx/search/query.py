"""The query language: filters (`service:x kind:y since:7d`), phrases, words, and time phrases.

`parse_query` never raises: anything odd becomes a notice in the result. Time phrases people type
("yesterday", "last week", "in March", "past 3 days") become `since`/`until` filters, through the one
time parser `parse_since` (also used by `since:`/`until:`) and `time_phrase`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from ..model import EntryKind, utcnow
from ..store.base import EntryMatch, SearchFilters, literal_terms
from .models import ParsedQuery
from .words import INTENT_FIX, NEGATORS, STOPWORDS, negated_terms, stem

MAX_TERMS = 24  # words kept from a query
MAX_QUERY_CHARS = 2000

AUTHOR_KINDS = ("primary", "partner", "human", "system")
OUTCOMES = ("resolved", "verified", "overridden", "rejected", "approved", "disputed")
STATUSES = ("open", "mitigated", "resolved")
VERIFIED = ("verified", "passed", "ok", "success")
FAILED = ("failed", "not-verified", "no-effect", "worse", "disputed")

_FILTER = re.compile(r'(?<![\w])(service|kind|author|outcome|since|until|status|case):(?:"([^"]*)"|(\S*))', re.I)
_FTS_SYNTAX = re.compile(r'\b(AND|OR|NOT|NEAR)\b|[*^(){}+\-]|\w+:(?!//)')

MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")
_MONTH = {m: i + 1 for i, m in enumerate(MONTHS)} | {m[:3]: i + 1 for i, m in enumerate(MONTHS)} | {"sept": 9}
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_UNIT = {"minute": "minutes", "min": "minutes", "hour": "hours", "hr": "hours", "day": "days", "week": "weeks",
         "month": "months", "year": "years"}
_NUM = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "ten": 10,
        "couple": 2, "few": 3}
_N = r"(\d{1,4}|a|an|one|two|three|four|five|six|seven|ten|couple of|few)"
_TIME = re.compile(
    r"\b(?:"
    r"(?P<today>today|this morning|tonight)"
    r"|(?P<yesterday>yesterday|last night)"
    r"|(?:in |during |over )?(?:the )?(?P<rel>last|past|previous|this) (?P<relunit>week|month|year|weekend)"
    r"|(?:in |within |over |during )?(?:the )?(?:last|past) " + _N
    + r" ?(?P<nunit>minute|min|hour|hr|day|week|month|year)s?"
    r"|" + r"(?P<agon>\d{1,4}|a|an|one|two|three|four|five|six|seven|ten|couple of|few)"
    r" (?P<agounit>hour|day|week|month)s? ago"
    r"|(?:in|during|since|from|back in|early|late|mid) (?:early |late |mid )?(?P<month>" + "|".join(MONTHS)
    + r"|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec)(?:,? (?P<year>20\d\d))?"
    r"|(?P<month2>" + "|".join(MONTHS) + r") (?P<year2>20\d\d)"
    r"|(?P<since_wd>since|on|last) (?P<weekday>" + "|".join(_WEEKDAYS) + r")"
    r")\b",
    re.I,
)


def _day(dt: datetime) -> datetime:
    return dt.replace(hour=0, minute=0, second=0, microsecond=0)


def _month_start(year: int, month: int) -> datetime:
    while month < 1:
        month, year = month + 12, year - 1
    while month > 12:
        month, year = month - 12, year + 1
    return datetime(year, month, 1, tzinfo=UTC)


def _ago(now: datetime, n: int, unit: str) -> datetime:
    if unit == "months":
        start = _month_start(now.year, now.month - n)
        return start.replace(day=min(now.day, 28), hour=now.hour, minute=now.minute)
    if unit == "years":
        return now.replace(year=now.year - n)
    return now - timedelta(**{unit: n})


def time_phrase(m: re.Match[str], now: datetime) -> tuple[datetime | None, datetime | None]:
    """The [since, until) window a matched time phrase means, relative to `now` (UTC)."""
    g = m.groupdict()
    today = _day(now)
    if g["today"]:
        return today, None
    if g["yesterday"]:
        return today - timedelta(days=1), today
    if g["rel"]:
        unit, rel = g["relunit"].lower(), g["rel"].lower()
        if unit in ("week", "weekend"):
            monday = today - timedelta(days=today.weekday())
            # "last week": the previous calendar week and the days since (people mean either)
            return (monday, None) if rel == "this" else (monday - timedelta(days=7), None)
        if unit == "month":
            return (_month_start(now.year, now.month), None) if rel == "this" else \
                (_month_start(now.year, now.month - 1), None)
        return (datetime(now.year, 1, 1, tzinfo=UTC), None) if rel == "this" else (_ago(now, 1, "years"), None)
    if g["nunit"]:
        n = 1
        raw = re.search(r"\b" + _N + r"\b", m.group(0), re.I)
        if raw:
            key = raw.group(1).lower().replace(" of", "")
            n = int(key) if key.isdigit() else _NUM.get(key, 1)
        return _ago(now, max(n, 1), _UNIT[g["nunit"].lower()]), None
    if g["agon"]:
        key = g["agon"].lower().replace(" of", "")
        n = int(key) if key.isdigit() else _NUM.get(key, 1)
        unit = _UNIT[g["agounit"].lower()]
        centre = _ago(now, n, unit)
        slack = {"hours": timedelta(hours=max(1, n // 2)), "days": timedelta(days=max(1, n // 3)),
                 "weeks": timedelta(days=4 + 2 * n), "months": timedelta(days=15 * n)}[unit]
        return centre - slack, centre + slack
    if g["month"] or g["month2"]:
        mon = _MONTH[(g["month"] or g["month2"]).lower()]
        year_s = g["year"] or g["year2"]
        year = int(year_s) if year_s else (now.year if mon <= now.month else now.year - 1)
        start = _month_start(year, mon)
        if (g["since_wd"] or "").lower() == "since" or m.group(0).lower().startswith(("since", "from")):
            return start, None
        return start, _month_start(year, mon + 1)
    if g["weekday"]:
        wd = _WEEKDAYS.index(g["weekday"].lower())
        back = (today.weekday() - wd) % 7 or (7 if g["since_wd"].lower() == "last" else 0)
        start = today - timedelta(days=back)
        return (start, None) if g["since_wd"].lower() == "since" else (start, start + timedelta(days=1))
    return None, None


def parse_since(value: str, *, now: datetime | None = None) -> datetime | None:
    """`30m`, `2h`, `7d`, `2w` ago, an ISO date/time (UTC when no zone), or a time phrase ("yesterday",
    "last week", "march"); None if not understood. The one time parser of the query language."""
    value = value.strip()
    now = now or utcnow()
    m = re.fullmatch(r"(\d{1,6})\s*([smhdw])", value, re.I)
    if m:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m.group(2).lower()]
        return now - timedelta(**{unit: int(m.group(1))})
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        phrase = value.replace("-", " ").replace("_", " ")
        if phrase.lower() in _MONTH:
            phrase = "in " + phrase
        tm = _TIME.fullmatch(phrase)
        return time_phrase(tm, now)[0] if tm else None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _fmt(dt: datetime | None) -> str:
    return "now" if dt is None else (f"{dt:%Y-%m-%d}" if dt == _day(dt) else f"{dt:%Y-%m-%d %H:%M} UTC")


def parse_query(text: str, filters: SearchFilters | None = None, *, now: datetime | None = None) -> ParsedQuery:
    """Split an operator's query into filters, time phrases, phrases and words. Never raises; odd input ->
    notices. `now` anchors relative time ("yesterday") and defaults to the current time."""
    notices: list[str] = []
    text = text or ""
    now = (now or utcnow()).astimezone(UTC)
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
            when = parse_since(value, now=now)
            if when is None:
                notices.append(f"`{key}:{value}` is not a time (use 30m, 2h, 7d or 2026-01-31) and was ignored")
            else:
                setattr(f, key, when)
        return " "

    rest = _FILTER.sub(take, text)

    def when(m: re.Match[str]) -> str:
        since, until = time_phrase(m, now)
        if since is None and until is None:
            return m.group(0)
        if since is not None and (f.since is None or since > f.since):
            f.since = since
        if until is not None and (f.until is None or until < f.until):
            f.until = until
        notices.append(f"time phrase “{m.group(0).strip()}” became a filter: {_fmt(since)} to {_fmt(until)}")
        return " "

    rest = _TIME.sub(when, rest)
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
            if _FTS_SYNTAX.search(chunk.replace("n't", "nt")):
                found = sorted({m.group(0) for m in _FTS_SYNTAX.finditer(chunk)})[:6]
                notices.append("search syntax " + ", ".join(f"`{s}`" for s in found) + " was taken literally "
                               "(words only; use \"quotes\" for phrases and service:/kind:/since: filters)")
            words.extend(literal_terms(chunk, 10_000))
    words = [w.lower() for w in words]
    fix_intent = any(w in INTENT_FIX for w in words) or bool({"roll", "back"} <= set(words))
    neg = negated_terms(words)
    terms: list[str] = []
    for w in words:
        if w in STOPWORDS or w in NEGATORS or w in INTENT_FIX or w in terms or (len(w) == 1 and not w.isdigit()):
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
    negated = [t for t in terms if stem(t) in neg]
    return ParsedQuery(text=text, words=words, terms=terms, negated=negated, phrases=phrases, filters=f,
                       outcomes=outcomes, fix_intent=fix_intent, notices=notices)


def _has_filters(f: SearchFilters, outcomes: Sequence[str]) -> bool:
    return bool(outcomes) or any(v is not None for v in f.model_dump().values())


def outcome_matches(outcome: str) -> list[EntryMatch]:
    """Entry conditions that make a case have `outcome` (see the conventions in the package doc)."""
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
