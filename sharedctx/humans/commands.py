"""What people type in the services they already use: `/approve`, `/reject why`, 👍/👎, and near-miss typos.

Parsing only: what a command *means* for a case is decided in `humans.ingest` (and, for decisions, who
may give it in `sharedctx.decisions`).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

COMMANDS = ("approve", "reject", "override", "note", "verify", "dispute")
VERDICTS = {"verify": "verified", "dispute": "disputed"}
UP, DOWN = "+1", "-1"


@dataclass(frozen=True)
class Command:
    """A slash command read from a comment. `guess` is set (and `name` is None) for a near-miss typo."""

    name: str | None
    arg: str = ""
    typed: str = ""
    guess: str | None = None


SLASH = re.compile(r"^\s*/([A-Za-z][\w-]*)\b[ \t]*(.*)$", re.M)


def parse_command(text: str) -> Command | None:
    """The first line that starts with `/word`; None when the comment has no command at all.

    Anything after the command, including further lines, is its argument (`/reject the p99 is still up`).
    A word that is not a command but close to one (`/aprove`) comes back with `guess`, so the caller
    can reply with what it understood instead of silently ignoring or guessing.
    """
    m = SLASH.search(text or "")
    if not m:
        return None
    word = m.group(1).lower()
    rest = (m.group(2) + text[m.end():]).strip()
    if word in COMMANDS:
        return Command(word, rest, typed=word)
    close = difflib.get_close_matches(word, COMMANDS, n=1, cutoff=0.6)
    return Command(None, rest, typed=word, guess=close[0] if close else None)
