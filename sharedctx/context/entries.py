"""Input checks of one entry, shared by the two places that build one (`Case.record` through
`SharedContext._draft`, and `open_case`'s title and `first=` entry).

Why a module: these are plain functions over values, with no journal behind them. Kept apart from
`SharedContext`, they are what an entry's text, kind and evidence must be in one place, and the error each
bad input gets says what was wrong and that nothing was recorded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from ..errors import InvalidEntry, validation_problems
from ..model import EntryKind, Evidence

# where a held entry keeps the case status it asked for until a person approves it
DEFERRED_STATUS_ATTR = "status_on_approval"

_ID_RE = re.compile(r"^[0-9A-Za-z_-]{1,64}$")  # what an entry id can look like (ours are ULIDs)


def _text(value: str | bytes, what: str) -> str:
    """Accept str or UTF-8 bytes; refuse invalid UTF-8 (including lone surrogates) by name."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidEntry(f"{what} is not valid UTF-8 (byte {exc.start}); nothing was recorded") from None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidEntry(f"{what} is not valid UTF-8 (position {exc.start}); nothing was recorded") from None
    return value


def _kind(kind: str | EntryKind) -> EntryKind:
    try:
        return EntryKind(kind)
    except ValueError:
        valid = ", ".join(k.value for k in EntryKind)
        raise InvalidEntry(f"unknown entry kind {kind!r}; valid kinds: {valid}") from None


def _evidence(items: Iterable[Evidence | Mapping[str, Any]]) -> tuple[Evidence, ...]:
    out = []
    for i, item in enumerate(items):
        if isinstance(item, Evidence):
            out.append(item)
            continue
        try:
            out.append(Evidence.model_validate(item))
        except ValidationError as exc:
            problems = validation_problems(exc, prefix=f"evidence[{i}]", unknown="unknown field")
            raise InvalidEntry("; ".join(problems) + "; nothing was recorded") from None
    return tuple(out)
