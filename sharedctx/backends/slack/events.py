"""Slack Events API and interactivity requests, read on `sharedctx serve` at `POST /webhooks/<backend name>`.

Verification (before anything is parsed or recorded): `X-Slack-Signature: v0=<hex HMAC-SHA256(signing secret,
"v0:{X-Slack-Request-Timestamp}:{raw body}")>`; a timestamp more than `max_age` (default 5 minutes) away
from now is refused as a replay. Both are 401 and record nothing. Slack signs `url_verification` too: its
challenge is answered only once the signature checks out.

What is taken in:
- `message` events in a thread (a person's reply) -> a comment, keyed on the message `ts` (as polling does);
- `reaction_added` with 👍/👎 -> a reaction keyed on (channel, message ts, user, sign), the same key polling
  builds from `reactions.get`, so a reaction seen both ways counts once. The event names only the message;
  the backend's `complete_item` finds its thread and entry;
- interactivity `block_actions` on our Approve/Reject buttons -> `/approve <entry id>` / `/reject <entry id>`.
Retries of one event (`X-Slack-Retry-Num`) carry the same `event_id`, which the receiver dedupes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import parse_qs

from ...model import Author
from ..base import HumanItem
from .api import plain, reaction_id, reaction_sign, ts_iso
from .render import APPROVE, REJECT

ACTIONS = {APPROVE: "approve", REJECT: "reject"}


def signature(secret: str, timestamp: str, body: bytes) -> str:
    base = b"v0:" + timestamp.encode("ascii", "replace") + b":" + body
    return "v0=" + hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()


def read(name: str, body: bytes, headers: dict[str, str], secret: str, settings: Any) -> Any:
    """The `READERS["slack"]` reader (see webhooks.py): verify, then turn one request into `Parsed`."""
    from ...webhooks import Parsed, Refused, _fresh, _json, _same

    ts = headers.get("x-slack-request-timestamp", "")
    sig = headers.get("x-slack-signature", "")
    if not ts or not sig:
        raise Refused("missing X-Slack-Signature / X-Slack-Request-Timestamp (is this request from Slack?)")
    if not _same(sig, signature(secret, ts, body)):
        raise Refused("wrong X-Slack-Signature (check the app's signing secret)")
    try:
        _fresh(float(ts), settings.max_age, "X-Slack-Request-Timestamp")
    except ValueError:
        raise Refused("X-Slack-Request-Timestamp is not epoch seconds") from None
    if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return _interaction(name, body, Parsed, Refused)
    data = _json(body)
    kind = str(data.get("type") or "")
    if kind == "url_verification":
        return Parsed(None, kind, reply={"challenge": str(data.get("challenge") or "")})
    if kind != "event_callback":
        return Parsed(None, kind, ignored=True)
    ev = data.get("event") or {}
    etype = str(ev.get("type") or "")
    out = Parsed(str(data.get("event_id") or "") or None, etype)
    user = str(ev.get("user") or "")
    if etype == "message":
        thread_ts = str(ev.get("thread_ts") or "")
        msg_ts = str(ev.get("ts") or "")
        if ev.get("subtype") not in (None, "thread_broadcast"):
            out.ignored, out.event = True, f"message.{ev.get('subtype')}"
        elif ev.get("bot_id") or str((ev.get("metadata") or {}).get("event_type", "")).startswith("sharedctx_"):
            pass  # our own post coming back
        elif thread_ts and thread_ts != msg_ts:
            out.items.append((thread_ts, HumanItem(
                backend=name, external_id=msg_ts, author=Author(kind="human", name=user or "unknown"),
                at=ts_iso(msg_ts), text=plain(str(ev.get("text") or "")),
                raw={"user_id": user, "channel": ev.get("channel"), "thread_ts": thread_ts, "ts": msg_ts})))
    elif etype == "reaction_added":
        item = ev.get("item") or {}
        sign = reaction_sign(str(ev.get("reaction") or ""))
        if item.get("type") == "message" and sign is not None:
            channel, msg_ts = str(item.get("channel") or ""), str(item.get("ts") or "")
            out.items.append(("", HumanItem(
                backend=name, external_id=reaction_id(channel, msg_ts, user, sign), kind="reaction",
                author=Author(kind="human", name=user or "unknown"), at=ts_iso(str(ev.get("event_ts") or msg_ts)),
                text=sign, raw={"user_id": user, "channel": channel, "ts": msg_ts})))
    else:
        out.ignored = True
    return out


def _interaction(name: str, body: bytes, parsed: Any, refused: Any) -> Any:
    try:
        payload = json.loads(parse_qs(body.decode("utf-8")).get("payload", [""])[0])
    except (ValueError, UnicodeDecodeError):
        raise refused("the interactivity request has no JSON `payload`", status=400) from None
    kind = str(payload.get("type") or "")
    out = parsed(None, f"interactive.{kind}")
    if kind != "block_actions":
        out.ignored = True
        return out
    user = str((payload.get("user") or {}).get("id") or "")
    container = payload.get("container") or {}
    message = payload.get("message") or {}
    thread_ts = str(container.get("thread_ts") or message.get("thread_ts") or "")
    channel = str(container.get("channel_id") or (payload.get("channel") or {}).get("id") or "")
    for action in payload.get("actions") or []:
        command = ACTIONS.get(str(action.get("action_id") or ""))
        if command is None or not thread_ts:
            continue
        entry_id = str(action.get("value") or "")
        action_ts = str(action.get("action_ts") or time.time())
        out.items.append((thread_ts, HumanItem(
            backend=name, external_id=f"action:{channel}:{message.get('ts')}:{user}:{command}",
            author=Author(kind="human", name=user or "unknown"), at=ts_iso(action_ts), text=f"/{command} {entry_id}",
            in_reply_to=entry_id or None,
            raw={"user_id": user, "channel": channel, "button": command, "ts": str(message.get("ts") or thread_ts)})))
    return out
