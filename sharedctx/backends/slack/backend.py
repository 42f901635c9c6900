"""Slack: a case is a thread in one configured channel; each entry is a reply (several numbered replies when long).

Binding, in order: the thread recorded in `case.bindings[<name>]`; `case.labels["slack.thread"]` (the root
message's `ts`, or its permalink); a root we posted earlier for this case (found by its `sharedctx_case`
metadata among the channel's recent messages, so `bind` is safe to repeat after an ambiguous post); otherwise
a new root message summarising the case.

Errors: Slack answers HTTP 200 with `{"ok": false, "error": code}`; `ERRORS` below is the one table that turns
codes into the classified errors (transport failures and HTTP statuses are classified by `http.py`, as for
every connector). Rate limits: Slack's per-method tiers, each with its own pacer; a 429's `Retry-After`
holds the pacer of that method so every thread using the backend backs off together.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from ...errors import Ambiguous, AuthFailed, BackendError, MessageTooLong, Rejected, Retryable
from ...model import Author, CaseRecord, Entry, EntryKind, ExternalRef, format_ts
from ...render import CopyPart, assemble, human_markdown, render_parts
from ..base import Check, Hit, HumanItem, ReadBack, ThreadRef
from ..http import Pacer, check, json_of, new_client, parse_retry_after, secret, send
from .render import CASE_EVENT, RESOLVED_EVENT, escape, is_ours, message_part, parse_message, size

SERVICE = "Slack"
AUTH_HINT = ("Check the bot token (xoxb-...) in the configured environment variable and the app's scopes: "
             "chat:write, channels:history (groups:history for a private channel), reactions:read, users:read.")
NEEDED_SCOPES = ("chat:write", "channels:history", "reactions:read")
UP = {"+1", "thumbsup"}
DOWN = {"-1", "thumbsdown"}
PERMALINK_TS = re.compile(r"/p(\d{10})(\d{6})")

# code -> (error class, what to tell the operator). Codes not listed are `Rejected` with the code.
ERRORS: dict[str, tuple[type[BackendError], str]] = {
    "invalid_auth": (AuthFailed, "the token is not valid"),
    "not_authed": (AuthFailed, "no token was sent"),
    "account_inactive": (AuthFailed, "the token belongs to a deactivated user or workspace"),
    "token_revoked": (AuthFailed, "the token was revoked (the app was uninstalled?)"),
    "token_expired": (AuthFailed, "the token expired; rotate it"),
    "missing_scope": (AuthFailed, "the app lacks a scope this method needs; add it and reinstall the app"),
    "no_permission": (AuthFailed, "the token may not do this in this workspace"),
    "ratelimited": (Retryable, "rate limited"),
    "rate_limited": (Retryable, "rate limited"),
    "fatal_error": (Ambiguous, "Slack failed mid-operation; part of it may have been applied"),
    "internal_error": (Ambiguous, "Slack had an internal error; the message may have been posted"),
    "service_unavailable": (Retryable, "Slack is unavailable"),
    "msg_too_long": (MessageTooLong, "the message is too long"),
    "channel_not_found": (Rejected, "the configured channel does not exist or the bot cannot see it; use the "
                                    "channel ID (C...), and for a private channel invite the bot"),
    "not_in_channel": (Rejected, "the bot is not a member of the channel; invite it with /invite @<app name>"),
    "is_archived": (Rejected, "the channel is archived; unarchive it or configure another channel"),
    "thread_not_found": (Rejected, "the thread no longer exists (its root message was deleted)"),
    "message_not_found": (Rejected, "the message no longer exists"),
    "no_such_subteam": (Rejected, "a user group in `deciders` does not exist (use its ID, S...)"),
}


class SlackOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel: str = Field(pattern=r"^[CG][A-Z0-9]{8,}$", description="channel ID (C... or G...), not its name")
    token: str = Field(description='secret reference to the bot token, e.g. "env:SLACK_BOT_TOKEN"')
    base_url: str = Field("https://slack.com/api")
    machine_copy: Literal["metadata", "text"] = Field(
        "metadata", description="where the machine copy goes: message metadata (invisible) or the text fallback")
    max_message_chars: int = Field(12_000, ge=2_000, le=40_000, description="budget per message (text+blocks+copy)")
    interactivity: bool = Field(False, description="decision requests carry Approve/Reject buttons")
    broadcast_resolution: bool = Field(False, description="the resolution reply is also sent to the channel")
    deciders: list[str] = Field(default_factory=list, description="user IDs (U...) or user group IDs (S...) who "
                                "may decide; groups need the usergroups:read scope")
    group_ttl: float = Field(300.0, ge=0, description="seconds a user group's members are cached")
    posts_per_second: float = Field(1.0, gt=0, description="chat.postMessage: about 1 per second per channel")
    reads_per_minute: int = Field(50, ge=1, description="conversations.replies/history: Tier 3")
    reactions_per_minute: int = Field(20, ge=1, description="reactions.get: Tier 2")
    max_block: float = Field(2.0, ge=0, description="longest pacing wait spent blocking; longer -> Retryable")
    read_reactions: bool = Field(True, description="read 👍/👎 on our replies back (humans in the loop)")
    resolve_names: bool = Field(True, description="show people by name (users.info, users:read) instead of ID")
    timeout: float = Field(30.0, gt=0)


def ts_key(ts: str) -> tuple[int, int]:
    sec, _, micro = str(ts).partition(".")
    try:
        return int(sec), int(micro or 0)
    except ValueError:
        return 0, 0


def ts_iso(ts: str) -> str:
    sec, micro = ts_key(ts)
    return format_ts(datetime.fromtimestamp(sec + micro / 1e6, UTC))


def reaction_sign(name: str) -> str | None:
    """`+1`/`-1` for a thumbs reaction (any skin tone), None for anything else."""
    base = name.split("::")[0]
    return "+1" if base in UP else "-1" if base in DOWN else None


def reaction_id(channel: str, ts: str, user: str, sign: str) -> str:
    """The same for a reaction read by the Events API and by polling, so it is taken in once."""
    return f"reaction:{channel}:{ts}:{user}:{sign}"


class SlackBackend:
    """Entries as thread replies in a Slack channel; the machine copy rides in message metadata."""

    type: ClassVar[str] = "slack"
    Options = SlackOptions

    def __init__(self, name: str, options: SlackOptions, *, client: httpx.Client | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.name = name
        self.options = options
        self._client = client or new_client(options.timeout)
        self._owns_client = client is None
        self._api = options.base_url.rstrip("/")
        pps = options.posts_per_second
        post = (round(pps), 1.0) if pps >= 1 else (1, 1.0 / pps)

        def pacer(limit: tuple[int, float]) -> Pacer:
            return Pacer([limit], max_block=options.max_block, clock=clock, sleep=sleep)

        self.pacers = {"post": pacer(post), "read": pacer((options.reads_per_minute, 60.0)),
                       "reactions": pacer((options.reactions_per_minute, 60.0))}
        self._limit = options.max_message_chars
        self._me: dict[str, Any] | None = None
        self._names: dict[str, str] = {}
        self._groups: dict[str, tuple[float, set[str]]] = {}
        self._located: dict[str, tuple[str, str | None]] = {}  # message ts -> (thread ts, entry id) of ours

    # ---- HTTP -------------------------------------------------------------------------------------
    def _call(self, method: str, *, write: bool = False, pacer: str | None = None, not_found: str | None = None,
              **args: Any) -> dict[str, Any]:
        """One Web API call; raises the classified error for HTTP failures and for `ok: false`."""
        headers = {"Authorization": f"Bearer {secret(self.options.token, service=SERVICE)}"}
        if pacer:
            self.pacers[pacer].acquire()
        url = f"{self._api}/{method}"
        if write:
            form = {k: v for k, v in args.items() if v is not None}
            resp = send(self._client, "POST", url, service=SERVICE, headers=headers, data=form)
        else:
            resp = send(self._client, "GET", url, service=SERVICE, headers=headers,
                        params={k: v for k, v in args.items() if v is not None})
        held = self.pacers[pacer] if pacer else None

        def limited(r: httpx.Response) -> float | None:
            if r.status_code != 429:
                return None
            wait = parse_retry_after(r.headers.get("retry-after"))
            wait = 30.0 if wait is None else wait
            if held is not None:
                held.hold(wait)
            return wait

        check(resp, service=SERVICE, auth_hint=AUTH_HINT, is_rate_limited=limited)
        data = json_of(resp, service=SERVICE)
        if not isinstance(data, dict):
            what = f"{SERVICE}: {method} answered {type(data).__name__}, not an object"
            raise Ambiguous(what) if write else Retryable(what)
        if data.get("ok") is not True:
            raise self._error(method, data, not_found=not_found)
        return data

    def _error(self, method: str, data: dict[str, Any], *, not_found: str | None) -> BackendError:
        code = str(data.get("error") or "unknown_error")
        cls, says = ERRORS.get(code, (Rejected, "Slack refused the request"))
        if code in ("thread_not_found", "message_not_found") and not_found:
            says = not_found
        detail = f"{SERVICE}: {method} -> {code}: {says}"
        if data.get("needed"):
            detail += f" (needed: {data['needed']}; the token has: {data.get('provided', '?')})"
        if cls is AuthFailed:
            return AuthFailed(f"{detail}. {AUTH_HINT}")
        if cls is Retryable:
            return Retryable(detail, retry_after=30.0)
        return cls(detail)

    def whoami(self) -> dict[str, Any]:
        """auth.test, once: the bot's user id (to tell our messages from people's) and the workspace URL."""
        if self._me is None:
            self._me = self._call("auth.test")
        return self._me

    def permalink(self, ts: str, thread_ts: str | None = None) -> str:
        base = str(self.whoami().get("url") or "https://slack.com/").rstrip("/")
        link = f"{base}/archives/{self.options.channel}/p{ts.replace('.', '')}"
        return link + (f"?thread_ts={thread_ts}&cid={self.options.channel}" if thread_ts and thread_ts != ts else "")

    def name_of(self, user: str) -> str:
        if not self.options.resolve_names or not user:
            return user or "unknown"
        if user not in self._names:
            try:
                u = self._call("users.info", user=user).get("user") or {}
                prof = u.get("profile") or {}
                self._names[user] = prof.get("display_name") or u.get("real_name") or u.get("name") or user
            except (Rejected, AuthFailed):
                self._names[user] = user
        return self._names[user]

    def _messages(self, thread: ThreadRef, *, not_found: str | None = None) -> list[dict[str, Any]]:
        """Every message of the thread, root first (conversations.replies, paged, with metadata)."""
        out: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            data = self._call("conversations.replies", pacer="read", not_found=not_found or self._gone(thread),
                              channel=self.options.channel, ts=thread.id, limit=200, cursor=cursor,
                              include_all_metadata="true")
            out += data.get("messages") or []
            cursor = (data.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                return out

    def _gone(self, thread: ThreadRef) -> str:
        return f"the thread {thread.id} in {self.options.channel} no longer exists (its root message was deleted)"

    # ---- Backend -----------------------------------------------------------------------------------
    def bind(self, case: CaseRecord) -> ThreadRef:
        bound = case.bindings.get(self.name)
        if bound and bound.get("id"):
            return ThreadRef.model_validate({"backend": self.name, **bound})
        given = case.labels.get("slack.thread")
        if given:
            m = PERMALINK_TS.search(given)
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
        args: dict[str, Any] = {"channel": self.options.channel, "text": msg["text"],
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
                    self._located[ids[-1]] = (thread.id, entry.id)
            except MessageTooLong:
                smaller = int(max(size(m) for m in parts) * 0.6)
                if smaller < 2_000:
                    raise
                self._limit = min(self._limit, smaller)  # keep it: the next long entry needs it too
                continue
            return ExternalRef(backend=self.name, id=ids[0], url=self.permalink(ids[0], thread.id), parts=ids)

    def lookup(self, thread: ThreadRef, entry_id: str) -> ExternalRef | None:
        found = self._parts(thread, entry_id)
        if not found:
            return None  # none, or only some parts: `append` sends the missing ones
        ids = [found[k].external_id for k in sorted(found)]
        return ExternalRef(backend=self.name, id=ids[0], url=self.permalink(ids[0], thread.id), parts=ids)

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
                self._located[ts] = (thread.id, p.entry_id)
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
        ts, user = str(m["ts"]), str(m.get("user") or "")
        return HumanItem(backend=self.name, external_id=ts, author=Author(kind="human", name=self.name_of(user)),
                         at=ts_iso(ts), text=_plain(str(m.get("text") or "")), url=self.permalink(ts, thread.id),
                         raw={"user_id": user, "channel": self.options.channel, "thread_ts": thread.id})

    def _reactions(self, thread: ThreadRef, msg: dict[str, Any], entry: Entry) -> list[HumanItem]:
        """👍/👎 on the first part of one of our entries. Inline reaction lists in conversations.replies may
        be abridged for popular messages; for decision requests, where who reacted decides, reactions.get
        (`full=true`, Tier 2) gives every user. No cursor: every one is returned each time, deduped by id."""
        ts = str(msg.get("ts") or "")
        if not ts:
            return []
        reactions = msg.get("reactions") or []
        if entry.kind == EntryKind.DECISION_REQUEST:
            got = self._call("reactions.get", pacer="reactions", not_found=self._gone(thread),
                             channel=self.options.channel, timestamp=ts, full="true")
            reactions = (got.get("message") or {}).get("reactions") or []
        items = []
        for r in reactions:
            sign = reaction_sign(str(r.get("name") or ""))
            if sign is None:
                continue
            for user in r.get("users") or []:
                items.append(self.reaction_item(thread.id, ts, str(user), sign, entry.id, at=ts_iso(ts)))
        return items

    def reaction_item(self, thread_ts: str, ts: str, user: str, sign: str, entry_id: str | None,
                      *, at: str) -> HumanItem:
        return HumanItem(backend=self.name, external_id=reaction_id(self.options.channel, ts, user, sign),
                         kind="reaction", author=Author(kind="human", name=self.name_of(user)), at=at, text=sign,
                         url=self.permalink(ts, thread_ts), in_reply_to=entry_id,
                         raw={"user_id": user, "channel": self.options.channel, "ts": ts})

    def locate(self, ts: str) -> tuple[str, str | None] | None:
        """(thread ts, entry id) of one of our messages, for a reaction event that names only the message."""
        if ts in self._located:
            return self._located[ts]
        try:
            messages = self._messages(ThreadRef(backend=self.name, id=ts))
        except Rejected:
            return None
        for m in messages:
            if str(m.get("ts")) == ts:
                thread_ts = str(m.get("thread_ts") or ts)
                p = parse_message(m)
                self._located[ts] = (thread_ts, p.entry_id if p else None)
                return self._located[ts]
        return None

    def complete_item(self, thread_id: str, item: HumanItem) -> tuple[str, HumanItem] | None:
        """Fill in what an Events API item lacks, so it equals the item polling builds (see events.py): the
        thread and entry of a reacted-to message, the person's name. None drops it: another channel, or the
        bot itself, or a reaction on something that is not one of our entries."""
        if item.raw.get("channel") != self.options.channel:
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
            update["url"] = self.permalink(item.external_id if item.kind == "comment" else thread_id, thread_id)
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
            text += f"\nsharedctx:resolved:{summary.id}"
        self._post(thread, {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
                            "metadata": {"event_type": RESOLVED_EVENT, "event_payload": {"entry": summary.id}}},
                   broadcast=self.options.broadcast_resolution)

    # ---- who may decide / setup check ------------------------------------------------------------
    def authorize(self, item: HumanItem) -> tuple[bool, str] | None:
        """`deciders` (user IDs, or user groups whose current members count) decide; with none configured,
        `[humans.allow]` decides alone. Group membership is read when someone answers (cached `group_ttl`),
        so a change of the on-call group in Slack applies without a config change."""
        if item.backend != self.name or not self.options.deciders:
            return None
        user = str(item.raw.get("user_id") or "")
        who = user or item.author.name
        if user and user in self.options.deciders:
            return True, f"slack:deciders ({who})"
        for group in (d for d in self.options.deciders if d.startswith("S")):
            if user and user in self.group_members(group):
                return True, f"slack:deciders ({who} in user group {group})"
        return False, f"slack:deciders ({who} is not on it)"

    def group_members(self, group: str) -> set[str]:
        """Current members of a user group (usergroups.users.list); errors propagate (the caller refuses)."""
        now = time.monotonic()
        hit = self._groups.get(group)
        if hit is None or now - hit[0] > self.options.group_ttl:
            data = self._call("usergroups.users.list", usergroup=group)
            hit = (now, {str(u) for u in data.get("users") or []})
            self._groups[group] = hit
        return hit[1]

    def check(self) -> list[Check]:
        out: list[Check] = []
        try:
            headers = {"Authorization": f"Bearer {secret(self.options.token, service=SERVICE)}"}
            resp = send(self._client, "GET", f"{self._api}/auth.test", service=SERVICE, headers=headers)
            check(resp, service=SERVICE, auth_hint=AUTH_HINT)
            me = json_of(resp, service=SERVICE)
            if not me.get("ok"):
                raise self._error("auth.test", me, not_found=None)
            self._me = me
            out.append(Check(what="credentials", ok=True,
                             detail=f"token works: bot user {me.get('user_id')} in {me.get('team')} ({me.get('url')})"))
            have = {s.strip() for s in resp.headers.get("x-oauth-scopes", "").split(",") if s.strip()}
            missing = [s for s in NEEDED_SCOPES if s not in have]
            out.append(Check(what="scopes", ok=not missing, detail=(
                f"has {', '.join(NEEDED_SCOPES)}" if not missing else
                f"missing {', '.join(missing)} (has: {', '.join(sorted(have)) or 'none reported'}); add them under "
                "OAuth & Permissions and reinstall the app")))
        except BackendError as exc:
            return [Check(what="credentials", ok=False, detail=str(exc))]
        try:
            ch = self._call("conversations.info", channel=self.options.channel).get("channel") or {}
            out.append(Check(what="channel", ok=not ch.get("is_archived"), detail=(
                f"#{ch.get('name')} ({self.options.channel}) is reachable" if not ch.get("is_archived") else
                f"#{ch.get('name')} is archived; unarchive it or configure another channel")))
            member = bool(ch.get("is_member"))
            out.append(Check(what="membership", ok=member, detail="the bot is a member of the channel" if member else
                             f"the bot is not in #{ch.get('name')}; invite it with /invite @<app name>"))
        except BackendError as exc:
            out.append(Check(what="channel", ok=False, detail=str(exc)))
        return out

    def close(self) -> None:
        if self._owns_client:
            self._client.close()


def _plain(text: str) -> str:
    """Slack's stored text -> what the person typed: entities unescaped, <url|label> links as `label (url)`."""
    text = re.sub(r"<(https?://[^|>]+)\|([^>]+)>", r"\2 (\1)", text)
    text = re.sub(r"<(https?://[^>]+)>", r"\1", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
