"""Slack: a case is a thread in one configured channel; each entry is a reply (several numbered replies when long).

Binding, in order: the thread recorded in `case.bindings[<name>]`; `case.labels["slack.thread"]` (the root
message's `ts`, or its permalink); a root we posted earlier for this case (found by its `sharedctx_case`
metadata among the channel's recent messages, so `bind` is safe to repeat after an ambiguous post); otherwise
a new root message summarising the case. The Web API calls, errors and pacing are in `api.py`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import httpx

from ...errors import MessageTooLong, Rejected
from ...model import Author, CaseRecord, Entry, EntryKind, ExternalRef
from ...render import CopyPart, assemble, human_markdown, render_parts
from ..base import Hit, HumanItem, ReadBack, ThreadRef
from .api import SlackApi, SlackOptions, plain, reaction_id, reaction_sign, ts_iso, ts_key
from .render import CASE_EVENT, RESOLVED_EVENT, escape, is_ours, message_part, parse_message, size

if TYPE_CHECKING:
    from ...store.base import RateLimits

PERMALINK_TS = re.compile(r"/p(\d{10})(\d{6})")
PERMALINK_CHANNEL = re.compile(r"/archives/([A-Z0-9]+)/p\d")  # the channel a message permalink names
CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{8,}")  # as `SlackOptions.channel`


class SlackBackend(SlackApi):
    """Entries as thread replies in a Slack channel; the machine copy rides in message metadata."""

    type: ClassVar[str] = "slack"
    Options = SlackOptions
    shares_budgets: ClassVar[bool] = True  # make_backend passes the store as `limits`

    def __init__(self, name: str, options: SlackOptions, *, client: httpx.Client | None = None,
                 limits: RateLimits | None = None, clock: Callable[[], float] | None = None,
                 sleep: Callable[[float], None] | None = None) -> None:
        """`limits`: the store that counts shared budgets; `clock`/`sleep` drive the pacers (tests and
        benches run them on a scaled clock)."""
        super().__init__(name, options, client=client, limits=limits, clock=clock, sleep=sleep)
        # (channel, message ts) -> (thread ts, entry id) of ours: a ts names a message only within its channel
        self._located: dict[tuple[str, str], tuple[str, str | None]] = {}

    @property
    def home_scope(self) -> str:
        """Where a thread whose binding recorded no channel lives (`_channel_of`'s fallback): the webhook
        receiver scopes such bindings, and events that name no channel, to it."""
        return self.options.channel

    def _channel_of(self, thread: ThreadRef) -> str:
        """The channel a thread lives in: the one recorded when the case was bound. After `channel` changes in
        the config, new cases open in the new channel, while the older cases' threads stay where they are; a
        thread ts names a message only within its channel, so the configured channel would name another
        thread (or none, and a reply there is `thread_not_found`)."""
        return thread.lives_in("channel", CHANNEL_ID.fullmatch, self.options.channel)

    def _messages(self, thread: ThreadRef, *, not_found: str | None = None) -> list[dict[str, Any]]:
        """Every message of the thread, root first (conversations.replies, paged, with metadata)."""
        out: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            data = self._call("conversations.replies", pacer="read", not_found=not_found or self._gone(thread),
                              channel=self._channel_of(thread), ts=thread.id, limit=200, cursor=cursor,
                              include_all_metadata="true")
            out += data.get("messages") or []
            cursor = (data.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                return out

    def _gone(self, thread: ThreadRef) -> str:
        return f"the thread {thread.id} in {self._channel_of(thread)} no longer exists (its root message was deleted)"

    # ---- Backend -----------------------------------------------------------------------------------
    def bind(self, case: CaseRecord) -> ThreadRef:
        bound = case.bindings.get(self.name)
        if bound and bound.get("id"):
            return ThreadRef.model_validate({"backend": self.name, **bound})
        given = case.labels.get("slack.thread")
        if given:
            m = PERMALINK_TS.search(given)
            named = PERMALINK_CHANNEL.search(given)
            if named and named.group(1) != self.options.channel:
                # a ts names a message only within its channel: ours with that ts would be someone else's
                # thread (or none), and the case's journal would be posted into it
                raise Rejected(f"label slack.thread={given!r} names a message in another channel ({named.group(1)}); "
                               f"this backend writes to {self.options.channel}")
            ts = f"{m.group(1)}.{m.group(2)}" if m else given.strip()
            if not re.fullmatch(r"\d{10}\.\d{6}", ts):
                raise Rejected(f"label slack.thread={given!r} is neither a message ts nor a message permalink")
            thread = self._thread(ts)
            self._messages(thread, not_found=f"the thread {ts} given for case {case.id} does not exist")
            return thread
        history = self._call("conversations.history", pacer="read", channel=self.options.channel, limit=200,
                             include_all_metadata="true")
        for msg in history.get("messages") or []:
            meta = msg.get("metadata") or {}
            if (meta.get("event_type") == CASE_EVENT and (meta.get("event_payload") or {}).get("case") == case.id) or (
                    f"sharedctx:case:{case.id}" in str(msg.get("text") or "")):
                return self._thread(str(msg["ts"]))
        title = f"[{case.severity}] {case.title}" + (f" — {case.service}" if case.service else "")
        text = (f"*{escape(title)}*\nIncident case `{case.id}`, opened by sharedctx. Agents and people reply in "
                f"this thread.")
        blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}},
                  {"type": "context", "elements": [{"type": "mrkdwn", "text": f"sharedctx:case:{case.id}"}]}]
        if self.options.machine_copy == "text":
            text += f"\nsharedctx:case:{case.id}"
        msg = self._post(None, {"text": text, "blocks": blocks,
                                "metadata": {"event_type": CASE_EVENT, "event_payload": {"case": case.id}}})
        return self._thread(str(msg["ts"]))

    def _thread(self, ts: str) -> ThreadRef:
        return ThreadRef(backend=self.name, id=ts, url=self.permalink(ts), channel=self.options.channel)

    def _post(self, thread: ThreadRef | None, msg: dict[str, Any], *, broadcast: bool = False) -> dict[str, Any]:
        channel = self._channel_of(thread) if thread is not None else self.options.channel  # None: a new root
        args: dict[str, Any] = {"channel": channel, "text": msg["text"],
                                "blocks": json.dumps(msg["blocks"], ensure_ascii=False)}
        if "metadata" in msg and self.options.machine_copy == "metadata":
            args["metadata"] = json.dumps(msg["metadata"], ensure_ascii=False)
        if thread is not None:
            args["thread_ts"] = thread.id
        if broadcast:
            args["reply_broadcast"] = "true"
        return self._call("chat.postMessage", write=True, pacer="post",
                          not_found=self._gone(thread) if thread else None, **args)

    def render(self, entry: Entry) -> list[dict[str, Any]]:
        copy_in, interactive = self.options.machine_copy, self.options.interactivity

        def part(e: Entry, k: int, n: int, human: str, data: str) -> dict[str, Any]:
            return message_part(e, k, n, human, data, copy_in=copy_in, interactive=interactive)

        return render_parts(entry, human_markdown(entry), self._limit, part, size)

    @staticmethod
    def _complete(parts: list[CopyPart]) -> list[CopyPart]:
        """Only the complete set of each entry's parts: after `msg_too_long` an entry may be re-rendered into more,
        smaller parts, and the first attempt's orphans (another `of`) must not be mixed in."""
        groups: dict[tuple[str, int], dict[int, CopyPart]] = {}
        for p in parts:
            groups.setdefault((p.entry_id, p.total), {}).setdefault(p.index, p)
        done: dict[str, list[CopyPart]] = {}
        for (eid, n), got in groups.items():
            if set(got) == set(range(1, n + 1)) and eid not in done:
                done[eid] = [got[k] for k in range(1, n + 1)]
        return [p for ps in done.values() for p in ps]

    def _parts(self, thread: ThreadRef, entry_id: str, total: int | None = None) -> dict[int, CopyPart]:
        found = [p for m in self._messages(thread) if (p := parse_message(m)) and p.entry_id == entry_id]
        if total is None:
            return {p.index: p for p in self._complete(found)}
        out: dict[int, CopyPart] = {}
        for p in found:
            if p.total == total:
                out.setdefault(p.index, p)
        return out

    def append(self, thread: ThreadRef, entry: Entry) -> ExternalRef:
        while True:
            parts = self.render(entry)
            # A multi-part entry may have been half-written before a failure: send only the missing parts.
            have = self._parts(thread, entry.id, len(parts)) if len(parts) > 1 else {}
            ids: list[str] = []
            try:
                for k, msg in enumerate(parts, 1):
                    if k in have:
                        ids.append(have[k].external_id)
                        continue
                    ids.append(str(self._post(thread, msg)["ts"]))
                    self._located[self._channel_of(thread), ids[-1]] = (thread.id, entry.id)
            except MessageTooLong:
                smaller = int(max(size(m) for m in parts) * 0.6)
                if smaller < 2_000:
                    raise
                self._limit = min(self._limit, smaller)  # keep it: the next long entry needs it too
                continue
            url = self.permalink(ids[0], thread.id, self._channel_of(thread))
            return ExternalRef(backend=self.name, id=ids[0], url=url, parts=ids)

    def lookup(self, thread: ThreadRef, entry_id: str) -> ExternalRef | None:
        found = self._parts(thread, entry_id)
        if not found:
            return None  # none, or only some parts: `append` sends the missing ones
        ids = [found[k].external_id for k in sorted(found)]
        url = self.permalink(ids[0], thread.id, self._channel_of(thread))
        return ExternalRef(backend=self.name, id=ids[0], url=url, parts=ids)

    def read_back(self, thread: ThreadRef, since: str | None = None) -> ReadBack:
        after = ts_key(since) if since else (0, 0)
        messages = self._messages(thread)
        bot = str(self.whoami().get("user_id") or "")
        parts: list[CopyPart] = []
        humans: list[HumanItem] = []
        last = since
        for m in messages:
            ts = str(m.get("ts", ""))
            if last is None or ts_key(ts) > ts_key(last):
                last = ts
            p = parse_message(m)
            if p is not None:
                parts.append(p)
                self._located[self._channel_of(thread), ts] = (thread.id, p.entry_id)
                continue
            if ts == thread.id or is_ours(m, bot) or m.get("subtype") not in (None, "thread_broadcast"):
                continue
            if ts_key(ts) > after:
                humans.append(self._human(thread, m))
        got = assemble(self._complete(parts))
        entries = [e for e in got.entries if max(ts_key(p.external_id) for p in got.refs[e.id]) > after]
        if self.options.read_reactions:
            for e in got.entries:
                first = got.refs[e.id][0]
                msg = next((m for m in messages if str(m.get("ts")) == first.external_id), {})
                humans += self._reactions(thread, msg, e)
        return ReadBack(entries=entries, humans=humans, cursor=last)

    def _human(self, thread: ThreadRef, m: dict[str, Any]) -> HumanItem:
        ts, user, channel = str(m["ts"]), str(m.get("user") or ""), self._channel_of(thread)
        return HumanItem(backend=self.name, external_id=ts, author=Author(kind="human", name=self.name_of(user)),
                         at=ts_iso(ts), text=plain(str(m.get("text") or "")),
                         url=self.permalink(ts, thread.id, channel),
                         raw={"user_id": user, "channel": channel, "thread_ts": thread.id})

    def _reactions(self, thread: ThreadRef, msg: dict[str, Any], entry: Entry) -> list[HumanItem]:
        """👍/👎 on the first part of one of our entries. Inline reaction lists in conversations.replies may
        be abridged for popular messages; for decision requests, where who reacted decides, reactions.get
        (`full=true`, Tier 2) gives every user - only when the inline list shows a thumb at all, so a quiet
        thread costs no Tier 2 budget. No cursor: every one is returned each time, deduped by id."""
        ts = str(msg.get("ts") or "")
        if not ts:
            return []
        reactions = msg.get("reactions") or []
        thumbs = any(reaction_sign(str(r.get("name") or "")) for r in reactions)
        if entry.kind == EntryKind.DECISION_REQUEST and thumbs:
            got = self._call("reactions.get", pacer="reactions", not_found=self._gone(thread),
                             channel=self._channel_of(thread), timestamp=ts, full="true")
            reactions = (got.get("message") or {}).get("reactions") or []
        items = []
        for r in reactions:
            sign = reaction_sign(str(r.get("name") or ""))
            if sign is None:
                continue
            for user in r.get("users") or []:
                if user == self.whoami().get("user_id"):
                    continue  # the bot's own reaction is not a person's
                items.append(self.reaction_item(thread.id, ts, str(user), sign, entry.id, at=ts_iso(ts),
                                                channel=self._channel_of(thread)))
        return items

    def reaction_item(self, thread_ts: str, ts: str, user: str, sign: str, entry_id: str | None,
                      *, at: str, channel: str | None = None) -> HumanItem:
        """`channel`: the thread's (default: the configured one); the id must equal the Events API's."""
        channel = channel or self.options.channel
        return HumanItem(backend=self.name, external_id=reaction_id(channel, ts, user, sign),
                         kind="reaction", author=Author(kind="human", name=self.name_of(user)), at=at, text=sign,
                         url=self.permalink(ts, thread_ts, channel), in_reply_to=entry_id,
                         raw={"user_id": user, "channel": channel, "ts": ts})

    def locate(self, ts: str) -> tuple[str, str | None] | None:
        """(thread ts, entry id) of one of our messages, for a reaction event that names only the message."""
        key = (self.options.channel, ts)
        if key in self._located:
            return self._located[key]
        try:
            messages = self._messages(ThreadRef(backend=self.name, id=ts))
        except Rejected:
            return None
        for m in messages:
            if str(m.get("ts")) == ts:
                thread_ts = str(m.get("thread_ts") or ts)
                p = parse_message(m)
                self._located[key] = (thread_ts, p.entry_id if p else None)
                return self._located[key]
        return None

    def complete_item(self, thread_id: str, item: HumanItem) -> tuple[str, HumanItem] | None:
        """Fill in what an Events API item lacks, so it equals the item polling builds (see events.py): the
        thread and entry of a reacted-to message, the person's name. None drops it: the bot itself, a reaction
        on something that is not one of our entries, or a reaction in another channel.

        A reply or a button click names its thread, and is taken from any channel: the cases bound before
        `channel` changed live in the old one, and a click is seen only here. The receiver looks the thread
        up in the channel the event names (every Slack binding records its channel), so a thread ts from an
        unrelated channel matches no case. A reaction names only its message, and finding its thread costs a
        read; outside the configured channel that is left to polling, which reads each bound thread."""
        channel = str(item.raw.get("channel") or "")
        if not channel or (channel != self.options.channel and (item.kind == "reaction" or not thread_id)):
            return None
        user = str(item.raw.get("user_id") or "")
        if user and user == self.whoami().get("user_id"):
            return None
        update: dict[str, Any] = {"author": Author(kind="human", name=self.name_of(user))}
        if item.kind == "reaction" and not thread_id:
            ts = str(item.raw.get("ts") or "")
            found = self.locate(ts)
            if found is None or found[1] is None:
                return None
            thread_id, update["in_reply_to"] = found
            update["url"] = self.permalink(ts, thread_id)
        elif not item.url:
            update["url"] = self.permalink(str(item.raw.get("ts") or thread_id), thread_id, channel)
        return thread_id, item.model_copy(update=update)

    def search(self, text: str, limit: int = 20) -> list[Hit]:
        """Slack's search.messages takes user tokens only; a bot token cannot search. Nothing to offer."""
        return []

    def resolve(self, thread: ThreadRef, summary: Entry) -> None:
        for m in self._messages(thread):
            if (m.get("metadata") or {}).get("event_type") == RESOLVED_EVENT or (
                    f"sharedctx:resolved:{summary.id}" in str(m.get("text") or "")):
                return
        text = f"✅ *Resolved* — {escape(summary.title)} (summary entry `{summary.id}`)"
        if self.options.machine_copy == "text":
            text += f"\n[sharedctx:resolved:{summary.id}]"
        self._post(thread, {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
                            "metadata": {"event_type": RESOLVED_EVENT, "event_payload": {"entry": summary.id}}},
                   broadcast=self.options.broadcast_resolution)

    # ---- who may decide / setup check ------------------------------------------------------------
    def authorize(self, item: HumanItem) -> tuple[bool, str] | None:
        """`deciders` (user IDs, or user groups whose current members count) decide; with none configured,
        `[humans.allow]` decides alone. Group membership is read when someone answers (cached `group_ttl`),
        so a change of the on-call group in Slack applies without a config change."""
        if item.backend != self.name:
            return None
        user = str(item.raw.get("user_id") or "")
        if user and user == self.whoami().get("user_id"):  # an agent holding the token could react as the bot
            return False, f"slack:{user} is the bot sharedctx posts as, not a person"
        if not self.options.deciders:
            return None
        who = user or item.author.name
        if user and user in self.options.deciders:
            return True, f"slack:deciders ({who})"
        for group in (d for d in self.options.deciders if d.startswith("S")):
            if user and user in self.group_members(group):
                return True, f"slack:deciders ({who} in user group {group})"
        return False, f"slack:deciders ({who} is not on it)"
