"""One pass over a text: user rules, the built-in rules and the keyword assignments, merged into
non-overlapping findings, with existing placeholders left alone so that redacting twice changes nothing.

This is the part `Redactor` calls for every view of a text; the detectors themselves live in `rules`
and `keywords`.
"""

from __future__ import annotations

import re

from ...errors import ConfigError
from .keywords import _keyword_findings, _stem_positions
from .model import _PLACEHOLDER_RE, PLACEHOLDER_PREFIX, Finding, _Rule
from .rules import _CONTEXT_LITERALS, _PRECHECK_LITERALS, _STEMS, _detectors

_TYPE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,40}$")


def _merge(findings: list[Finding]) -> list[Finding]:
    """Union of overlapping spans (never leave part of anything a detector flagged), typed by the most
    specific member: the lowest priority, then the shortest span (`credential: TWILIO_AUTH_TOKEN=…` is a
    twilio-key even though the outer `credential:` value covers it)."""
    findings.sort(key=lambda f: (f.start, f.priority))
    merged: list[Finding] = []
    best: list[Finding] = []
    for f in findings:
        if merged and f.start < merged[-1].end:
            last, top = merged[-1], best[-1]
            if (f.priority, f.end - f.start) < (top.priority, top.end - top.start):
                best[-1] = top = f
            merged[-1] = Finding(top.type, last.start, max(last.end, f.end), top.priority)
        else:
            merged.append(f)
            best.append(f)
    return merged


def parse_user_pattern(spec: str) -> _Rule:
    """`"name=regex"` (placeholder type `name`) or a bare `"regex"` (type `custom`).

    The secret is the group named `secret`, else the only group, else the whole match.
    """
    name, sep, rx = spec.partition("=")
    if sep and _TYPE_NAME_RE.match(name.strip()):
        kind, pattern = name.strip().replace("_", "-"), rx
    else:
        kind, pattern = "custom", spec
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(
            f"[redact] patterns: {spec!r} is not a valid regular expression ({exc}). Write it as "
            f'"name=regex", e.g. "acme-key=ACME-[0-9a-f]{{32}}".'
        ) from exc
    group: int | str = 0
    if "secret" in compiled.groupindex:
        group = "secret"
    elif compiled.groups == 1:
        group = 1
    return _Rule(kind, compiled, group, -1, None)


def _drop_placeholders(text: str, found: list[Finding]) -> list[Finding]:
    """Ignore findings that are (inside) existing placeholders, so redacting twice changes nothing."""
    holes = [m.span() for m in _PLACEHOLDER_RE.finditer(text)]
    if not holes:
        return found
    kept = []
    for f in found:
        start, end = f.start, f.end
        for hs, he in holes:  # a finding never starts or ends inside a placeholder: trim it to the text around
            if hs <= start < he:
                start = he
            if hs < end <= he:
                end = hs
        if start >= end:
            continue
        rest = _PLACEHOLDER_RE.sub("", text[start:end])
        if any(c.isalnum() for c in rest):
            kept.append(f if (start, end) == (f.start, f.end) else Finding(f.type, start, end, f.priority))
    return kept


def may_hold_secret(text: str) -> bool:
    """The precheck alone: False means no built-in detector can fire on `text` (user rules aside)."""
    if _detectors().precheck.search(text) is not None or text.startswith("sk-"):
        return True
    low = text.lower()
    for literal in _PRECHECK_LITERALS:  # noqa: SIM110 - a plain loop: `any(<generator>)` costs more than the look
        if literal in low:
            return True
    return False


def scan(text: str, user_rules: list[_Rule], *, precheck: bool = True) -> list[Finding]:
    """All secrets in `text` as it is (no decoding), merged and sorted. `precheck=False` runs every detector.

    User rules always run; the built-in ones only when the cheap precheck says the text may hold one.
    """
    found: list[Finding] = []
    for rule in user_rules:
        for m in rule.regex.finditer(text):
            if m.group(rule.group):
                found.append(Finding(rule.type, *m.span(rule.group), rule.priority))
    low = text.lower()
    if precheck:
        fmt_hit = _detectors().precheck.search(text) is not None or text.startswith("sk-")
        stems = [s for s in _STEMS if s in low]
        if not (fmt_hit or stems or any(lit in low for lit in _CONTEXT_LITERALS)):
            return _merge(found) if found else found
    else:
        fmt_hit, stems = True, list(_STEMS)
    for rule in _detectors().rules:
        if precheck and ((rule.fmt and not fmt_hit) or not any(g in low for g in rule.gates)):
            continue
        if rule.finder is not None:
            found.extend(Finding(rule.type, a, b, rule.priority) for a, b in rule.finder(text))
            continue
        for m in rule.regex.finditer(text):
            kind = rule.type if rule.check is None else rule.check(m, rule.type)
            if kind is None:
                continue
            s, e = m.span(rule.group)
            if e > s:
                found.append(Finding(kind, s, e, rule.priority))
    if stems:
        found.extend(_keyword_findings(text, _stem_positions(text, low, stems)))
    if not found:
        return found
    if PLACEHOLDER_PREFIX in text:
        found = _drop_placeholders(text, found)
    return _merge(found)
