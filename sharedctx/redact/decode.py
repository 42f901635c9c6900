"""Decoded views of a text, so a secret is found however it was escaped on its way in.

A credential rarely arrives as plain text. A log line that holds JSON carries `{\\"password\\":\\"…\\"}`, a log
shipper that wraps that line in JSON again doubles every backslash, a query string percent-encodes it,
a terminal or a mail client wraps a long token onto two lines. The detectors in `detectors/` look at one
string as it is; this module gives them the same text *decoded*, and maps what they find back to the
characters of the original, so the redactor replaces the escaped form where it actually sits.

A view is built by replacing tokens (an escape sequence, a percent run, a line break inside a token) with
their decoded text. Between tokens the view and the original are the same characters shifted by a
constant, so the map back is a sorted list of replaced tokens and a binary search: no per-character table,
and nothing at all is built for text without an escape (almost all journal text).
"""

from __future__ import annotations

import bisect
import json
import re
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import unquote

__all__ = ["View", "views"]

# A run of JSON string escapes: `\"`, `\\`, `\n`, `\u00e9`, … (decoded together so surrogate pairs work).
_ESC = r'\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})'
_JSON_ESCAPES = re.compile(f"{_ESC}(?:{_ESC})*")  # not `(?:…)+`: a literal first item lets `re` skip ahead
# A run of percent-encoded bytes (decoded together so multi-byte UTF-8 works).
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}(?:%[0-9A-Fa-f]{2})*")
# A line break *inside* a token: a secret-body character right before it (after an optional shell `\`
# continuation), and right after it — past indentation — a secret-body run that is not the key of the next
# `key: value` / `key=value` line. Joining only such breaks keeps ordinary lines (YAML, logs) apart.
_BODY = r"[A-Za-z0-9+/=_\-.~%]"
_END = r"(?:[\s\"',;)\]}@/?#&<>]|:(?!\s)|$)"  # what may follow the continuation (not `key:` + space)
_WRAP = re.compile(rf"\n[ \t]*(?![A-Za-z0-9_.\-]+=[^\s=])(?={_BODY}+{_END})")  # `\r`, `\\` before: see _rewrite
_BODY_CHARS = frozenset(string.ascii_letters + string.digits + "+/=_-.~%")
_MAX_DEPTH = 3  # JSON escaping applied more than three times over is not something logs do


@dataclass
class View:
    """`text` decoded from an original string; `span()` maps a range of `text` back to the original."""

    text: str
    # (view_start, view_end, orig_start, orig_end) of every replaced token, in order
    tokens: list[tuple[int, int, int, int]] = field(default_factory=list)
    parent: View | None = None
    joins: bool = False  # only line breaks were removed: the text is the parent's, minus a few characters
    _starts: list[int] = field(default_factory=list, repr=False)

    def around_changes(self, reach: int = 64) -> list[str]:
        """The text around each change (`reach` characters either side): where this view can differ."""
        return [self.text[max(0, vs - reach) : ve + reach] for vs, ve, _, _ in self.tokens]

    def _char(self, c: int) -> tuple[int, int]:
        """The original range that produced character `c` of `text` (one layer down)."""
        if not self.tokens:
            return c, c + 1
        if not self._starts:
            self._starts = [t[0] for t in self.tokens]
        k = bisect.bisect_right(self._starts, c) - 1
        if k < 0:
            return c, c + 1
        _, ve, os_, oe = self.tokens[k]
        if c < ve:  # inside a replaced token: the whole token
            return os_, oe
        return oe + (c - ve), oe + (c - ve) + 1

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original range that produced `text[start:end]` (non-empty), through every decoding layer."""
        s, e = self._char(start)[0], self._char(end - 1)[1]
        if self.parent is not None:
            return self.parent.span(s, e)
        return s, e


def _rewrite(
    view: View, pattern: re.Pattern[str], decode: Callable[[str], str | None], after: frozenset[str] | None = None
) -> View | None:
    """A child view of `view` with every match of `pattern` replaced by `decode(match)`; None if unchanged.

    `after`: only matches right after one of these characters (a look-behind, done here because `re`
    tries a leading look-behind at every position of the text).
    """
    text = view.text
    parts: list[str] = []
    tokens: list[tuple[int, int, int, int]] = []
    pos = vpos = 0
    for m in pattern.finditer(text):
        start, end = m.span()
        if after is not None:  # a line break: take a `\r` and a shell `\` continuation before it along
            start -= text.endswith("\r", 0, start)
            start -= text.endswith("\\", 0, start)
            if start <= pos or text[start - 1] not in after:
                continue
        new = decode(text[start:end])
        if new is None or new == text[start:end]:
            continue
        parts.append(text[pos:start])
        vpos += start - pos
        parts.append(new)
        tokens.append((vpos, vpos + len(new), start, end))
        vpos += len(new)
        pos = end
    if not tokens:
        return None
    parts.append(text[pos:])
    return View("".join(parts), tokens, parent=view)


def _json_unescape(run: str) -> str | None:
    try:
        out = json.loads(f'"{run}"')
    except ValueError:  # e.g. a lone `\ud800`: decode each escape that can be decoded on its own
        out = re.sub(r'\\u[0-9a-fA-F]{4}', "\ufffd", run)
        try:
            out = json.loads(f'"{out}"')
        except ValueError:
            return None
    return out if isinstance(out, str) else None


def _url_unquote(run: str) -> str:
    return unquote(run, errors="replace")


def _unwrap(_: str) -> str:
    return ""


def _decodings(view: View, depth: int) -> Iterator[View]:
    """Every decoded view below `view`: JSON-unescaped (repeatedly), percent-decoded, lines joined."""
    text = view.text
    if "\\" in text and depth < _MAX_DEPTH:
        child = _rewrite(view, _JSON_ESCAPES, _json_unescape)
        if child is not None:
            yield child
            yield from _decodings(child, depth + 1)
    if "%" in text and depth < _MAX_DEPTH:
        child = _rewrite(view, _PERCENT, _url_unquote)
        if child is not None:
            yield child
            yield from _decodings(child, depth + 1)
    if "\n" in text:
        child = _rewrite(view, _WRAP, _unwrap, _BODY_CHARS)
        if child is not None:
            child.joins = True
            yield child


def views(text: str) -> Iterator[View]:
    """The decoded views of `text` (not `text` itself), each at most `_MAX_DEPTH` decodings deep.

    Lazily: the redactor scans each one and stops building nothing for text without escapes.
    """
    yield from _decodings(View(text), 0)
