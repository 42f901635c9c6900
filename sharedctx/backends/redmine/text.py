"""How an entry reads in a Redmine note: Textile (Redmine's default) or Markdown, plus the machine copy.

The copy goes in Redmine's `{{collapse(...)}}` macro, titled with the marker: both formatters show it as
one folded "sharedctx:entry:<id> part k/n" line, so the note reads like a person's, and the raw note text
the API returns holds the copy verbatim (the macro only changes the rendering).
"""

from __future__ import annotations

import re

from ...model import Entry
from ...render import FENCE, HEADING, REDMINE_COPY, meta_line

COPY = REDMINE_COPY  # defined in render.py, beside the other forms `is_own_echo` knows
BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
ORDERED = re.compile(r"^\s*\d+[.)]\s+(.*)$")


def note_part(entry: Entry, k: int, n: int, human: str, data: str, text_format: str) -> str:
    """One note: lead line, the human text, then the folded machine copy."""
    lead = meta_line(entry) + (f" · part 1/{n}" if n > 1 else "") if k == 1 else f"(continued: {entry.id} part {k}/{n})"
    title = f"sharedctx:entry:{entry.id} part {k}/{n}"
    if text_format == "markdown":
        return f"**{lead}**\n\n{human}\n\n{{{{collapse({title})\n```\n{data}\n```\n}}}}"
    return f"*{lead}*\n\n{markdown_to_textile(human)}\n\n{{{{collapse({title})\n<pre>\n{data}\n</pre>\n}}}}"


def markdown_to_textile(md: str) -> str:
    """Markdown -> Redmine Textile, the subset agents write (the same one `markdown_to_adf` knows):
    headings, lists, fenced code, bold, inline code, links. Anything else stays literal text."""
    out: list[str] = []
    in_code = False
    for line in md.split("\n"):
        if fm := FENCE.match(line):
            if in_code:
                out.append("</code></pre>")
            else:
                out.append(f'<pre><code class="{fm.group(1)}">' if fm.group(1) else "<pre><code>")
            in_code = not in_code
            continue
        if in_code:
            out.append(line)
            continue
        if hm := HEADING.match(line):
            line = f"h{len(hm.group(1))}. {hm.group(2)}\n"
        elif bm := BULLET.match(line):
            line = f"* {bm.group(1)}"
        elif om := ORDERED.match(line):
            line = f"# {om.group(1)}"
        line = re.sub(r"\*\*([^*\n]+)\*\*", r"*\1*", line)
        line = re.sub(r"`([^`\n]+)`", r"@\1@", line)
        line = re.sub(r"\[([^\]\n]+)\]\(([^)\s]+)\)", r'"\1":\2', line)
        out.append(line)
    if in_code:
        out.append("</code></pre>")
    return "\n".join(out)
