"""Entries as Slack messages: Block Kit for people, a readable `mrkdwn` text fallback, and the machine copy
in message `metadata` (`event_type: sharedctx_entry`) where no one sees it.

Why metadata: a thread is read by people at 2 AM; a block of base64 in it is noise. Slack keeps message
metadata with the message and returns it from `conversations.replies` with `include_all_metadata=true`.
Fallback (`machine_copy = "text"`, for workspaces or proxies that drop metadata): the copy rides at the end
of the `text` field in the plain-text marker format; when `blocks` are present Slack shows the blocks, so the
copy stays out of the thread view (it can show in a notification preview only after the human lead).
"""

from __future__ import annotations

import json
import re
from typing import Any

from ...model import Entry, EntryKind
from ...render import CopyPart, _lead, is_own_echo, parse_plain, split_lines

ENTRY_EVENT = "sharedctx_entry"
CASE_EVENT = "sharedctx_case"
RESOLVED_EVENT = "sharedctx_resolved"
MAX_SECTION = 3000  # Slack: a section block's text is at most 3,000 characters
MAX_BLOCKS = 50
APPROVE, REJECT = "sharedctx_approve", "sharedctx_reject"

_LINK = re.compile(r"\[([^\]\n]+)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*([^*\n]+)\*\*")
_HEADING = re.compile(r"^#{1,6}\s+(.*)$", re.M)


def escape(text: str) -> str:
    """Slack treats `&`, `<` and `>` as control characters in mrkdwn; everything else is literal."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def mrkdwn(md: str) -> str:
    """The Markdown agents write -> Slack mrkdwn: headings and **bold** become *bold*, links <url|text>.
    Code spans and fences are the same in both; anything else stays literal (escaped)."""
    out = escape(md)
    out = _HEADING.sub(lambda m: f"*{m.group(1)}*", out)
    out = _BOLD.sub(r"*\1*", out)
    return _LINK.sub(lambda m: f"<{m.group(2)}|{m.group(1)}>", out)


def _sections(text: str) -> list[dict[str, Any]]:
    return [{"type": "section", "text": {"type": "mrkdwn", "text": chunk}}
            for chunk in split_lines(text, MAX_SECTION - 100) if chunk.strip()]


def buttons(entry: Entry) -> dict[str, Any]:
    """Approve/Reject buttons for a decision request (only when the app has interactivity)."""
    return {"type": "actions", "block_id": f"sharedctx:{entry.id}", "elements": [
        {"type": "button", "action_id": APPROVE, "value": entry.id, "style": "primary",
         "text": {"type": "plain_text", "text": "Approve"}},
        {"type": "button", "action_id": REJECT, "value": entry.id, "style": "danger",
         "text": {"type": "plain_text", "text": "Reject"}},
    ]}


def message_part(entry: Entry, k: int, n: int, human: str, data: str, *, copy_in: str = "metadata",
                 interactive: bool = False) -> dict[str, Any]:
    """One part as `chat.postMessage` arguments (without channel/thread_ts)."""
    lead = _lead(entry, k, n)
    body = mrkdwn(human)
    text = f"*{escape(lead)}*\n{body}" if k == 1 else f"_{escape(lead)}_\n{body}"
    blocks: list[dict[str, Any]] = [{"type": "context", "elements": [{"type": "mrkdwn", "text": escape(lead)}]}]
    blocks += _sections(body)
    if interactive and k == 1 and entry.kind == EntryKind.DECISION_REQUEST:
        blocks.append(buttons(entry))
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"entry `{entry.id}`"}]})
    msg: dict[str, Any] = {"text": text, "blocks": blocks[:MAX_BLOCKS]}
    marker = f"sharedctx:entry:{entry.id} part {k}/{n}"
    if copy_in == "metadata":
        msg["metadata"] = {"event_type": ENTRY_EVENT,
                           "event_payload": {"marker": marker, "entry": entry.id, "part": k, "of": n, "copy": data}}
    else:
        msg["text"] = (f"{text}\n\n--- {marker} (machine copy, do not edit) ---\n{data}\n--- end sharedctx ---")
    return msg


def size(msg: dict[str, Any]) -> int:
    """What counts against our per-message budget: the whole request, as Slack would receive it."""
    return len(json.dumps(msg, ensure_ascii=False))


def parse_message(msg: dict[str, Any]) -> CopyPart | None:
    """Our machine copy in a message (metadata first, then the text fallback), or None."""
    meta = msg.get("metadata") or {}
    ts = str(msg.get("ts", ""))
    if meta.get("event_type") == ENTRY_EVENT:
        p = meta.get("event_payload") or {}
        try:
            k, n = int(p["part"]), int(p["of"])
            if 1 <= k <= n:
                return CopyPart(str(p["entry"]), k, n, str(p.get("copy") or ""), external_id=ts, position=ts)
        except (KeyError, TypeError, ValueError):
            return None
        return None
    text = unescape(str(msg.get("text") or ""))
    got = parse_plain(text) if is_own_echo(text) else None  # a person quoting a copy is a person
    return CopyPart(*got, external_id=ts, position=ts) if got else None


def is_ours(msg: dict[str, Any], bot_user: str | None) -> bool:
    """Anything the bot posted, anything carrying our metadata, or a text that ends with our copy or resolution
    marker (`render.is_own_echo`, the one test for the text forms) is not a person speaking."""
    meta = (msg.get("metadata") or {}).get("event_type", "")
    return (bool(bot_user) and msg.get("user") == bot_user) or str(meta).startswith("sharedctx_") or (
        is_own_echo(unescape(str(msg.get("text") or ""))))
