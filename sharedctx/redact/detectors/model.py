"""What every detector shares: a finding, a rule, and the placeholder that replaces a secret.

Kept apart because the keyword grammar, the rule table and the scan all need them and none of the three
owns them; this module imports nothing of theirs, so it can come first in any import order.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

PLACEHOLDER_PREFIX = "[REDACTED:"
_PLACEHOLDER_RE = re.compile(r"\[REDACTED:[a-z0-9][a-z0-9-]*\]")
_MAX_VALUE = 4096


def placeholder(kind: str) -> str:
    """The text that replaces a secret of type `kind` (e.g. `[REDACTED:jwt]`)."""
    return f"{PLACEHOLDER_PREFIX}{kind}]"


@dataclass(frozen=True, slots=True)
class Finding:
    """One secret found in a text: its type and where it is (the value only, not its key)."""

    type: str
    start: int
    end: int
    priority: int = 5


# A check receives the match and returns the placeholder type, or None to reject the match.
_Check = Callable[[re.Match[str], str], "str | None"]


@dataclass(frozen=True, slots=True)
class _Rule:
    """One detector. `gates`: lowercase literals, at least one of which must be in the lowered text for
    the rule to run at all (empty: run whenever the text passes the precheck)."""

    type: str
    regex: re.Pattern[str]
    group: int | str = 0
    priority: int = 0
    check: _Check | None = None
    gates: tuple[str, ...] = ()
    fmt: bool = False  # a token format whose prefix the precheck regex covers
    finder: Callable[[str], list[tuple[int, int]]] | None = None  # used instead of `regex` when set

