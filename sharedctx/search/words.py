"""Words: how query and journal text are cut, stemmed, expanded with a team's synonym file, and marked.

Ranking happens in Python over candidate cases, so one tokenizer/stemmer is used on both sides (query
and case text); it does not need to agree with the store's index stemmer, only with itself.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path

STOPWORDS = frozenset(
    """a an the and or but if then else of on in at to for from by with into onto over under
    about after before again ever still is are was were be been being am do does did done doing have has
    had having i we you he she it they our ours us my me your them their this that these those there here
    what when where which who whom whose why how can could should would will shall may might must
    so too very just also any some all each other such only own same than s t out up down off
    last time times previous previously earlier happened happen happens thing things something someone
    anyone one get got please show tell find look looking see seen""".split()  # noqa: SIM905
)
# kept as words: "errors without any deploy" must not rank bad-deploy cases first (see `negated_terms`)
NEGATORS = frozenset(
    ["no", "not", "without", "never", "nothing", "none", "nobody", "nor", "cannot", "didn", "doesn", "don", "isn",
     "wasn", "weren", "aren", "hasn", "haven", "hadn", "wouldn", "couldn", "shouldn", "won"]
)
NEGATION_SCOPE = 3  # words after a negator that it negates
INTENT_FIX = frozenset(
    """fix fixed fixes fixing resolve resolved resolving solve solved handle handled handling deal dealt
    mitigate mitigated remediate remediated repair repaired recover recovered""".split()  # noqa: SIM905
)

_WORD = re.compile(r"\w+", re.UNICODE)


def tokens(text: str) -> list[str]:
    """Lower-cased words of `text`."""
    return [w.lower() for w in _WORD.findall(text)]


@functools.lru_cache(maxsize=131072)
def stem(word: str) -> str:
    """A light English stem (plurals, tenses, -ation/-ing); the same function is used for query and text."""
    w = word.lower()
    for suffix in ("ations", "ation", "ings", "ing", "ions", "ion", "edly", "ed", "es", "s", "ly", "e"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            return w[: -len(suffix)]
    return w


def stems(text: str) -> list[str]:
    return [stem(w) for w in _WORD.findall(text)]


# -- synonyms: data files, not code ------------------------------------------------------------------
def _read_groups(text: str) -> list[frozenset[str]]:
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip().lower()
        ws = frozenset(tokens(line))
        if len(ws) > 1:
            out.append(ws)
    return out


@functools.lru_cache(maxsize=8)
def synonym_groups(extra: str | None = None) -> tuple[frozenset[str], ...]:
    """The shipped abbreviation groups plus every file named in `extra` (default: $SHAREDCTX_SYNONYMS)."""
    groups = _read_groups((resources.files("sharedctx.search") / "data" / "synonyms.txt").read_text("utf-8"))
    for p in (extra if extra is not None else os.environ.get("SHAREDCTX_SYNONYMS", "")).split(os.pathsep):
        if p.strip() and Path(p).is_file():
            groups.extend(_read_groups(Path(p).read_text("utf-8")))
    return tuple(groups)


def _synonyms() -> dict[str, frozenset[str]]:
    by_word: dict[str, set[str]] = {}
    for g in synonym_groups():
        for w in g:
            by_word.setdefault(stem(w), set()).update(g)
    return {k: frozenset(v) for k, v in by_word.items()}


def groups_for(terms: Sequence[str]) -> list[list[str]]:
    """Each query word with its synonyms: one OR-group per word; words of one synonym group share a group."""
    syn = _synonyms()
    groups: list[list[str]] = []
    seen: set[str] = set()
    for t in terms:
        if stem(t) in seen:
            continue
        g = [t, *sorted(w for w in syn.get(stem(t), ()) if stem(w) != stem(t))]
        seen.update(stem(w) for w in g)
        groups.append(g)
    return groups


def group_stems(groups: Sequence[Sequence[str]]) -> list[set[str]]:
    return [{stem(w) for alt in g for w in _WORD.findall(alt)} for g in groups]


def negated_terms(words: Sequence[str]) -> set[str]:
    """Stems of the words a negator governs: "errors without any recent deploy" -> {deploy, recent}."""
    out: set[str] = set()
    for i, w in enumerate(words):
        if w in NEGATORS:
            for v in words[i + 1 : i + 1 + NEGATION_SCOPE]:
                if v in NEGATORS:
                    break
                if v not in STOPWORDS:
                    out.add(stem(v))
    return out


def negated_positions(toks: Sequence[str]) -> set[int]:
    """Positions in `toks` (lower-cased words) that a negator governs."""
    out: set[int] = set()
    for i, w in enumerate(toks):
        if w in NEGATORS:
            out.update(range(i + 1, min(len(toks), i + 1 + NEGATION_SCOPE + 1)))
    return out


def coverage(text: str, stem_sets: Sequence[set[str]], weights: Sequence[float]) -> float:
    """Weighted share of the query's word groups present in `text`."""
    if not stem_sets:
        return 0.0
    have = set(stems(text))
    total = sum(weights) or 1.0
    return sum(wt for s, wt in zip(stem_sets, weights, strict=True) if s & have) / total


def highlight(title: str, body: str, stem_sets: Iterable[set[str]],
              width: int = 180) -> tuple[str, list[tuple[int, int]]]:
    """A window of `title — body` around the first query word, and the spans of every query word in it."""
    full = f"{title} — {body}" if body else title
    full = re.sub(r"\s+", " ", full)
    wanted: set[str] = set().union(*stem_sets)
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


def edit_distance(a: str, b: str, cap: int = 3) -> int:
    """Levenshtein distance with adjacent transpositions, giving up (returning cap+1) past `cap`."""
    if abs(len(a) - len(b)) > cap:
        return cap + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > cap:
            return cap + 1
        prev2, prev = prev, cur
    return prev[-1]
