"""Entries as people read them in each service, plus the hidden machine copy that lets us rebuild them.

Every rendered entry has two layers:
1. **For people**: a meta line (kind, author, time), the title, the Markdown body in the target's format
   (GitHub Markdown, Jira ADF or wiki markup, plain journal/note text) and evidence as a short list of links.
2. **For machines**: the full `entry.to_json()`, zlib-compressed and base64-encoded, behind a stable marker
   `sharedctx:entry:<id> part <k>/<n>` - in an HTML comment on GitHub (invisible), in a collapsed
   `expand` node in Jira ADF, a `{noformat}` block in Jira wiki, and a fenced trailing block in PagerDuty
   and ServiceNow text. Read-back decodes the copy and keeps it only if its hash verifies, so a timeline
   rebuilt from a backend alone is the journal, byte for byte.

An entry longer than the target's limit is split into numbered parts (`split()`), human text first, then
the machine copy; `assemble()` puts the parts back together. Nothing is ever truncated. The parser takes
the *last* marker in an item, because ours is always appended at the end and an entry body may quote one.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import ValidationError

from .model import Entry

MARKER = re.compile(r"sharedctx:entry:(?P<id>[0-9A-Za-z_-]+) part (?P<k>\d+)/(?P<n>\d+)")
GITHUB_COPY = re.compile(r"<!-- (sharedctx:entry:[0-9A-Za-z_-]+ part \d+/\d+)\s*(?P<data>[A-Za-z0-9+/=\s]*)-->")
TEXT_COPY = re.compile(
    r"--- (sharedctx:entry:[0-9A-Za-z_-]+ part \d+/\d+) \(machine copy, do not edit\) ---\s*"
    r"(?P<data>[A-Za-z0-9+/=\s]*?)\s*--- end sharedctx ---"
)
WIKI_COPY = re.compile(r"\{noformat\}\s*(sharedctx:entry:[0-9A-Za-z_-]+ part \d+/\d+)\s*(?P<data>[A-Za-z0-9+/=\s]*?)"
                       r"\{noformat\}")
# Redmine: the copy sits in a `{{collapse(<marker>)}}` macro (shown folded), its data in <pre> or a fence
REDMINE_COPY = re.compile(
    r"\{\{collapse\((sharedctx:entry:[0-9A-Za-z_-]+ part \d+/\d+)\)\s*(?:<pre>|```)?\s*"
    r"(?P<data>[A-Za-z0-9+/=\s]*?)\s*(?:</pre>|```)?\s*\}\}"
)
RESOLVED_MARK = "sharedctx:resolved"
CASE_MARK = "sharedctx:case"
DATA_LINE = 100
R = TypeVar("R")


# ---- our own echo ----------------------------------------------------------------------------------
# Every comment/note sharedctx itself writes into a thread *ends* with one of these exact forms: the
# machine copy of an entry, or the marker of its resolution note. (The hidden `sharedctx:case` marker is
# only ever in an issue's body, never in a comment, so it marks nothing here.) A person's comment that
# mentions or quotes a marker anywhere else (`/approve` under a pasted `<!-- sharedctx:case:… -->`) is a
# person's comment and is taken in like any other.
_OWN_TAILS = tuple(
    re.compile(f"(?:{p})\\s*\\Z")
    for p in (
        GITHUB_COPY.pattern,
        TEXT_COPY.pattern,
        WIKI_COPY.pattern,
        REDMINE_COPY.pattern,
        r"<!-- sharedctx:resolved:[0-9A-Za-z_-]+ -->",
        r"\[sharedctx:resolved:[0-9A-Za-z_-]+\]",
    )
)


def is_own_echo(text: str, adf: Any = None) -> bool:
    """Is this thread item something sharedctx wrote (so read-back must not take it in as a person's)?

    The one place that decides it, for every backend and webhook. `adf` is a Jira Cloud comment body
    (our copy is its last node, an `expand` titled with the marker); `text` is the item's plain text.
    """
    if isinstance(adf, dict):
        nodes = adf.get("content") or []
        last = nodes[-1] if nodes and isinstance(nodes[-1], dict) else {}
        if last.get("type") == "expand" and MARKER.fullmatch(str((last.get("attrs") or {}).get("title", ""))):
            return True
    return any(p.search(text or "") for p in _OWN_TAILS)


# ---- the machine copy ------------------------------------------------------------------------------
def encode_copy(entry: Entry) -> str:
    raw = base64.b64encode(zlib.compress(entry.to_json().encode("utf-8"), 9)).decode("ascii")
    return "\n".join(raw[i : i + DATA_LINE] for i in range(0, len(raw), DATA_LINE))


def decode_copy(data: str) -> Entry | None:
    """The entry in a copy, or None if the copy is damaged or its hash does not verify."""
    try:
        raw = zlib.decompress(base64.b64decode("".join(data.split()), validate=True))
        entry = Entry.from_json(raw)
    except (binascii.Error, zlib.error, ValueError, ValidationError):
        return None
    return entry if entry.hash and entry.compute_hash() == entry.hash else None


@dataclass(frozen=True)
class CopyPart:
    """One part of an entry's machine copy found in an external item (comment, note, journal entry)."""

    entry_id: str
    index: int
    total: int
    data: str
    external_id: str = ""
    url: str | None = None
    position: Any = None  # the item's sort key in the thread (comment id, created time)


def _part(label: str, data: str) -> tuple[str, int, int, str] | None:
    m = MARKER.fullmatch(label.strip())
    if not m or not (1 <= int(m["k"]) <= int(m["n"])):
        return None
    return m["id"], int(m["k"]), int(m["n"]), data


def parse_text(text: str, pattern: re.Pattern[str]) -> tuple[str, int, int, str] | None:
    matches = list(pattern.finditer(text or ""))
    return _part(matches[-1].group(1), matches[-1]["data"]) if matches else None


def parse_github(text: str) -> tuple[str, int, int, str] | None:
    return parse_text(text, GITHUB_COPY)


def parse_plain(text: str) -> tuple[str, int, int, str] | None:
    return parse_text(text, TEXT_COPY)


def parse_wiki(text: str) -> tuple[str, int, int, str] | None:
    return parse_text(text, WIKI_COPY)


def parse_adf(doc: Any) -> tuple[str, int, int, str] | None:
    found: tuple[str, int, int, str] | None = None
    if not isinstance(doc, dict):
        return None
    for node in doc.get("content") or []:
        if isinstance(node, dict) and node.get("type") == "expand":
            title = str((node.get("attrs") or {}).get("title", ""))
            text = "".join(t.get("text", "") for c in node.get("content") or [] for t in c.get("content") or [])
            found = _part(title, text) or found
    return found


@dataclass
class Assembled:
    entries: list[Entry] = field(default_factory=list)
    refs: dict[str, list[CopyPart]] = field(default_factory=dict)  # entry id -> its parts, in order
    incomplete: set[str] = field(default_factory=set)
    damaged: set[str] = field(default_factory=set)


def assemble(parts: Iterable[CopyPart]) -> Assembled:
    """Group parts by entry, keep the first copy of each part number, decode complete sets, sort by seq."""
    by_id: dict[str, dict[int, CopyPart]] = {}
    totals: dict[str, int] = {}
    for p in parts:
        by_id.setdefault(p.entry_id, {}).setdefault(p.index, p)
        totals.setdefault(p.entry_id, p.total)
    out = Assembled()
    for eid, got in by_id.items():
        n = totals[eid]
        if set(got) != set(range(1, n + 1)):
            out.incomplete.add(eid)
            continue
        ordered = [got[k] for k in range(1, n + 1)]
        entry = decode_copy("".join(p.data for p in ordered))
        if entry is None or entry.id != eid:
            out.damaged.add(eid)
            continue
        out.entries.append(entry)
        out.refs[eid] = ordered
    out.entries.sort(key=lambda e: (e.case_id, e.seq))
    return out


# ---- the human layer -----------------------------------------------------------------------------
def meta_line(entry: Entry) -> str:
    return f"{entry.kind.value} · {entry.author} · {entry.ts.strftime('%Y-%m-%d %H:%M:%S UTC')}"


def human_markdown(entry: Entry, *, plain: bool = False) -> str:
    """Title, body and evidence as Markdown (or near-plain text for note/journal fields)."""
    out = [entry.title if plain else f"### {entry.title}"]
    if entry.body.strip():
        out += ["", entry.body.rstrip()]
    if entry.evidence:
        out += ["", "Evidence:" if plain else "**Evidence**"]
        for ev in entry.evidence:
            what = f"{ev.type} · {ev.source}" + (f": {ev.summary}" if ev.summary else "")
            if ev.url:
                what += f" <{ev.url}>" if plain else f" — [link]({ev.url})"
            if ev.query:
                what += f" (query: {ev.query})" if plain else f" (query: `{ev.query}`)"
            out.append(f"- {what}")
    if entry.ref:
        out += ["", f"ref: {entry.ref}"]
    return "\n".join(out)


def split_lines(text: str, capacity: int) -> list[str]:
    """Split Markdown at line boundaries into chunks of <= capacity, closing/reopening code fences."""
    capacity = max(capacity, 40)
    chunks: list[str] = []
    cur: list[str] = []
    size = 0
    fence: str | None = None
    reserve = 12  # room to close a fence ("\n```") and reopen it with its info string (bounded)
    for line in text.split("\n"):
        pieces = [line[i : i + capacity - reserve - 16] for i in range(0, len(line), capacity - reserve - 16)] or [""]
        for piece in pieces:
            if cur and size + len(piece) + 1 > capacity - reserve:
                if fence is not None:
                    cur.append("```")
                chunks.append("\n".join(cur))
                cur = [fence[:12]] if fence is not None else []
                size = sum(len(x) + 1 for x in cur)
            cur.append(piece)
            size += len(piece) + 1
            stripped = piece.strip()
            if stripped.startswith("```"):
                fence = None if fence is not None else stripped
    if cur:
        chunks.append("\n".join(cur))
    return chunks or [""]


def render_parts(
    entry: Entry,
    human: str,
    limit: int,
    render: Callable[[Entry, int, int, str, str], R],
    measure: Callable[[R], int],
) -> list[R]:
    """Split and render so every part fits `limit` (never truncate): human chunks first, each re-split
    until its rendering fits (ADF grows more than text does), then the machine copy fills what is left."""

    def size(h: str, d: str) -> int:
        return measure(render(entry, 999, 999, h, d))

    empty = size("", "")
    if limit - empty < 200:
        raise ValueError(f"limit {limit} is too small to carry an entry")
    pending = split_lines(human, limit - empty)
    chunks: list[str] = []
    while pending:
        chunk = pending.pop(0)
        got = size(chunk, "")
        if got <= limit or len(chunk) <= 40:
            chunks.append(chunk)
            continue
        pending[:0] = split_lines(chunk, max(40, int(len(chunk) * (limit - empty) / got * 0.9)))
    parts = [[h, ""] for h in chunks]
    lines = encode_copy(entry).split("\n")
    room = limit - size(parts[-1][0], "") - 16
    i = 0
    while i < len(lines):
        take: list[str] = []
        used = 0
        while i < len(lines) and used + len(lines[i]) + 2 <= room:
            take.append(lines[i])
            used += len(lines[i]) + 2  # "\n" may be escaped in JSON (ADF)
            i += 1
        parts[-1][1] = "\n".join(take)
        if i < len(lines):
            parts.append(["", ""])
            room = limit - empty - 16
    return [render(entry, k, len(parts), h, d) for k, (h, d) in enumerate(parts, 1)]


def _lead(entry: Entry, k: int, n: int) -> str:
    if k == 1:
        return meta_line(entry) + (f" · part 1/{n}" if n > 1 else "")
    return f"(continued: {entry.id} part {k}/{n})"


def github_part(entry: Entry, k: int, n: int, human: str, data: str) -> str:
    lead = f"**{_lead(entry, k, n)}**" if k == 1 else f"*{_lead(entry, k, n)}*"
    return f"{lead}\n\n{human}\n\n<!-- sharedctx:entry:{entry.id} part {k}/{n}\n{data}\n-->"


def plain_part(entry: Entry, k: int, n: int, human: str, data: str) -> str:
    return (
        f"[{_lead(entry, k, n)}]\n\n{human}\n\n"
        f"--- sharedctx:entry:{entry.id} part {k}/{n} (machine copy, do not edit) ---\n{data}\n--- end sharedctx ---"
    )


def wiki_part(entry: Entry, k: int, n: int, human: str, data: str) -> str:
    copy = f"{{noformat}}\nsharedctx:entry:{entry.id} part {k}/{n}\n{data}\n{{noformat}}"
    return f"*{_lead(entry, k, n)}*\n\n{markdown_to_wiki(human)}\n\n{copy}"


def adf_part(entry: Entry, k: int, n: int, human: str, data: str) -> dict[str, Any]:
    lead = {"type": "paragraph", "content": [_text(_lead(entry, k, n), [{"type": "strong"}])]}
    copy = {
        "type": "expand",
        "attrs": {"title": f"sharedctx:entry:{entry.id} part {k}/{n}"},
        "content": [{"type": "codeBlock", "content": [_text(data)] if data else []}],
    }
    return {"type": "doc", "version": 1, "content": [lead, *markdown_to_adf(human)["content"], copy]}


def adf_size(doc: dict[str, Any]) -> int:
    return len(json.dumps(doc, ensure_ascii=False))


# ---- Markdown -> ADF (the subset agents write: paragraphs, headings, lists, code, bold, links) ----------
INLINE = re.compile(r"(`[^`\n]+`)|(\*\*[^*\n]+\*\*)|\[([^\]\n]+)\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*```(\S*)\s*$")
HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
ORDERED = re.compile(r"^\s*\d+[.)]\s+(.*)$")


def _text(text: str, marks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "text", "text": text}
    if marks:
        node["marks"] = marks
    return node


def inline_adf(text: str) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = []
    pos = 0
    for m in INLINE.finditer(text):
        if m.start() > pos:
            nodes.append(_text(text[pos : m.start()]))
        if m.group(1):
            nodes.append(_text(m.group(1)[1:-1], [{"type": "code"}]))
        elif m.group(2):
            nodes.append(_text(m.group(2)[2:-2], [{"type": "strong"}]))
        else:
            nodes.append(_text(m.group(3), [{"type": "link", "attrs": {"href": m.group(4)}}]))
        pos = m.end()
    if pos < len(text):
        nodes.append(_text(text[pos:]))
    return nodes


def _paragraph(lines: list[str]) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for i, line in enumerate(lines):
        if i:
            content.append({"type": "hardBreak"})
        content += inline_adf(line)
    return {"type": "paragraph", "content": content}


def markdown_to_adf(md: str) -> dict[str, Any]:
    """A small, predictable Markdown -> ADF converter; anything it does not know stays literal text."""
    blocks: list[dict[str, Any]] = []
    para: list[str] = []
    lines = md.split("\n")
    i = 0

    def flush() -> None:
        if para:
            blocks.append(_paragraph(para))
            para.clear()

    while i < len(lines):
        line = lines[i]
        if fm := FENCE.match(line):
            flush()
            code: list[str] = []
            i += 1
            while i < len(lines) and not FENCE.match(lines[i]):
                code.append(lines[i])
                i += 1
            node: dict[str, Any] = {"type": "codeBlock", "content": [_text("\n".join(code))] if any(code) else []}
            if fm.group(1):
                node["attrs"] = {"language": fm.group(1)}
            blocks.append(node)
        elif hm := HEADING.match(line):
            flush()
            blocks.append({"type": "heading", "attrs": {"level": len(hm.group(1))},
                           "content": inline_adf(hm.group(2))})
        elif BULLET.match(line) or ORDERED.match(line):
            flush()
            pattern = BULLET if BULLET.match(line) else ORDERED
            items = []
            while i < len(lines) and pattern.match(lines[i]):
                items.append({"type": "listItem", "content": [_paragraph([pattern.match(lines[i]).group(1)])]})  # type: ignore[union-attr]
                i += 1
            blocks.append({"type": "bulletList" if pattern is BULLET else "orderedList", "content": items})
            continue
        elif not line.strip():
            flush()
        else:
            para.append(line)
        i += 1
    flush()
    # ADF refuses empty text nodes; an empty paragraph is fine.
    for b in blocks:
        if b["type"] == "paragraph":
            b["content"] = [c for c in b["content"] if c.get("type") != "text" or c["text"]]
    return {"type": "doc", "version": 1, "content": blocks}


def markdown_to_wiki(md: str) -> str:
    """Markdown -> Jira wiki markup (v2 / Data Center), same subset as `markdown_to_adf`."""
    out: list[str] = []
    in_code = False
    for line in md.split("\n"):
        if fm := FENCE.match(line):
            out.append("{code}" if in_code or not fm.group(1) else "{code:" + fm.group(1) + "}")
            in_code = not in_code
            continue
        if in_code:
            out.append(line)
            continue
        if hm := HEADING.match(line):
            line = f"h{len(hm.group(1))}. {hm.group(2)}"
        elif bm := BULLET.match(line):
            line = f"* {bm.group(1)}"
        elif om := ORDERED.match(line):
            line = f"# {om.group(1)}"
        line = re.sub(r"\*\*([^*\n]+)\*\*", r"*\1*", line)
        line = re.sub(r"`([^`\n]+)`", r"{{\1}}", line)
        line = re.sub(r"\[([^\]\n]+)\]\(([^)\s]+)\)", r"[\1|\2]", line)
        out.append(line)
    return "\n".join(out)


# ---- read-back cursors for services whose items are ordered by creation time --------------------
class TimeCursor:
    """`{"t": newest time seen, "ids": ids seen at that time}`: items at the same second are not lost or
    repeated (PagerDuty, ServiceNow and Jira give second or millisecond times, not monotonic ids)."""

    def __init__(self, since: str | None) -> None:
        data = json.loads(since) if since and since.startswith("{") else {}
        self.t: str = data.get("t", "")
        self.ids: set[str] = set(data.get("ids", []))
        self._new_t, self._new_ids = self.t, set(self.ids)

    def is_new(self, at: str, item_id: str) -> bool:
        """Record the item; True if it comes after the cursor. `at` must be a UTC `format_ts` string."""
        if at > self._new_t:
            self._new_t, self._new_ids = at, {item_id}
        elif at == self._new_t:
            self._new_ids.add(item_id)
        return at > self.t or (at == self.t and item_id not in self.ids)

    def next(self) -> str | None:
        return json.dumps({"t": self._new_t, "ids": sorted(self._new_ids)}) if self._new_t else None
