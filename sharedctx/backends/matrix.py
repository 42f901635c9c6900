"""Matrix (Element): a case is a thread in one configured room; each entry is a thread reply.

The mapping (client-server API v3; `NOTES.md` beside the test homeserver has the request shapes):
- the **root** is a plain message (a thread root must not carry a relation) summarising the case, with
  `org.sharedctx.case = {"id": case id}`;
- each **entry** is one reply, `m.relates_to = {rel_type: m.thread, event_id: root}`, rendered for people
  (`formatted_body` HTML + `body` Markdown fallback); the machine copy rides in the custom content key
  `org.sharedctx.entry = {id, case, part, parts, data}`, which clients never show, so nothing clutters
  the thread. Entries over `max_event_bytes` of content are split into numbered replies;
- **people** answer in the thread (`/approve`, `/reject why`, any text) or react 👍 / 👎 to an entry;
  both come back from `read_back` as `HumanItem`s (`authorize()` says who may decide: room power level
  ≥ `decide_power_level`, or a user id on `deciders`);
- **resolve** posts a final "Resolved" reply and reacts ✅ on the root.

Exactly once, by construction: every write is `PUT /rooms/{room}/send/{type}/{txnId}` with a txnId
derived from what is written (`sharedctx.<entry id>.<k>of<n>`, `sharedctx.case.<case id>`, ...). The
homeserver answers a repeated txnId (same access token) with the event it already made, so a retry after
a timeout, a reset, or a `kill -9` of the worker between the send and `mark_delivered` cannot post twice.
`lookup()` (the marker scan the worker does after an ambiguous failure) is the second line, for when the
txnId is no longer remembered (token rotated, or the server forgot it).

Read-back: our entries come from the thread (`GET /v1/rooms/{room}/relations/{root}/m.thread`), and what
is new - people's replies and reactions, our fresh entries - from the room timeline read forward from a
saved `/messages` token (see `read_back`).
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from urllib.parse import quote

import httpx
from markdown_it import MarkdownIt
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import BackendError, Rejected
from ..model import Author, CaseRecord, Entry, EntryKind, ExternalRef, format_ts
from ..render import CopyPart, assemble, human_markdown, meta_line, render_parts
from .base import Check, Hit, HumanItem, ReadBack, ThreadRef
from .http import call, new_client, secret

SERVICE = "Matrix"
AUTH_HINT = (
    "Check the access token in the configured environment variable (`GET /account/whoami` must answer), "
    "that the bot has joined the room, and that its power level lets it send messages and reactions "
    "(`sharedctx backends check`)."
)
ENTRY_KEY = "org.sharedctx.entry"
CASE_KEY = "org.sharedctx.case"
RESOLVED_KEY = "org.sharedctx.resolved"
OURS = (ENTRY_KEY, CASE_KEY, RESOLVED_KEY)
THUMBS = {"👍": "+1", "👎": "-1"}  # a reaction key may carry a variation selector (U+FE0F); stripped first
DONE = "✅"
TIMELINE_FILTER = json.dumps({"types": ["m.room.message", "m.reaction"], "lazy_load_members": True})


class MatrixOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    homeserver: str = Field(description="base URL of the homeserver's client API, e.g. https://matrix.acme.org")
    room_id: str = Field(description="the incident room id, e.g. !abc123:acme.org (the bot must have joined it)")
    token: str = Field(description='the bot\'s access token reference, e.g. "env:MATRIX_BOT_TOKEN"')
    msgtype: Literal["m.notice", "m.text"] = Field(
        "m.notice", description="entries as notices (bot style); decision requests and the root are always m.text")
    decide_power_level: int = Field(50, description="room power level from which a person's answer decides")
    deciders: list[str] = Field(default_factory=list, description="user ids who may decide whatever their level")
    max_event_bytes: int = Field(60_000, ge=4_000, le=64_000,
                                 description="content budget per event; the whole event may not exceed 65,536 B")
    power_ttl: float = Field(60.0, ge=0, description="seconds the room's power levels are cached")
    timeout: float = Field(30.0, gt=0)

    @field_validator("room_id")
    @classmethod
    def _room(cls, v: str) -> str:
        if not v.startswith("!") or len(v) < 2:
            raise ValueError("a room id starts with '!' (!opaque:server, or !opaque in room v12); an alias "
                             "such as #room:server is not an id")
        return v


def _q(s: str) -> str:
    return quote(s, safe="")


def _at(ms: int | float) -> str:
    return format_ts(datetime.fromtimestamp(ms / 1000, UTC))


_MD = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


def to_html(markdown: str) -> str:
    """Markdown as the HTML subset Matrix clients render; raw HTML in the text is escaped, never passed on."""
    return _MD.render(markdown).strip()


def _lead(entry: Entry, k: int, n: int) -> str:
    if k == 1:
        return meta_line(entry) + (f" · part 1/{n}" if n > 1 else "")
    return f"(continued: {entry.id} part {k}/{n})"


def entry_content(entry: Entry, k: int, n: int, human: str, data: str) -> dict[str, Any]:
    """One part of an entry as `m.room.message` content, without the thread relation (added on send)."""
    lead = _lead(entry, k, n)
    asks = entry.kind == EntryKind.DECISION_REQUEST
    md = f"**{lead}**\n\n{human}" if k == 1 else f"*{lead}*\n\n{human}"
    return {
        "msgtype": "m.text" if asks else "m.notice",
        "body": md,
        "format": "org.matrix.custom.html",
        "formatted_body": to_html(md),
        ENTRY_KEY: {"id": entry.id, "case": entry.case_id, "part": k, "parts": n, "data": data},
    }


def content_bytes(content: dict[str, Any]) -> int:
    # the thread relation added on send is ~150 bytes; the budget leaves far more than that spare
    return len(json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")) + 200


def _copy_of(content: dict[str, Any]) -> tuple[str, int, int, str] | None:
    c = content.get(ENTRY_KEY)
    if not isinstance(c, dict):
        return None
    try:
        eid, k, n, data = str(c["id"]), int(c["part"]), int(c["parts"]), str(c["data"])
    except (KeyError, TypeError, ValueError):
        return None
    return (eid, k, n, data) if 1 <= k <= n else None


class MatrixBackend:
    """Entries as thread replies in a Matrix room; the machine copy in a custom content key."""

    type: ClassVar[str] = "matrix"
    Options = MatrixOptions

    def __init__(self, name: str, options: MatrixOptions, *, client: httpx.Client | None = None) -> None:
        self.name = name
        self.options = options
        self._client = client or new_client(options.timeout)
        self._owns_client = client is None
        self._base = options.homeserver.rstrip("/") + "/_matrix/client"
        self._room = f"/rooms/{_q(options.room_id)}"
        self._me: str | None = None
        self._power: tuple[float, dict[str, Any]] | None = None
        self._lock = threading.Lock()
        self._sync_token: str | None = None
        self._rooms = {options.room_id}  # what `wait_for_activity` watches: the configured room, and every
        # room a bound thread was read or written in

    def _room_of(self, thread: ThreadRef) -> str:
        """The room a thread lives in: the one recorded when the case was bound. After `room_id` changes in
        the config, new cases open in the new room, while the older cases' threads stay where they are. Every
        call is made through a room: through the configured one, reading an older thread is a 404 and a reply
        to it is refused (Synapse: "Relations must be in the same room")."""
        room = thread.lives_in("room", lambda r: r.startswith("!") and len(r) > 1, self.options.room_id)
        with self._lock:
            self._rooms.add(room)
        return room

    def _sync_filter(self) -> str:
        with self._lock:
            rooms = sorted(self._rooms)
        return json.dumps({
            "room": {"rooms": rooms, "timeline": {"limit": 50, "types": ["m.room.message", "m.reaction"]},
                     "state": {"types": []}, "ephemeral": {"types": []}, "account_data": {"types": []}},
            "presence": {"types": []}, "account_data": {"types": []}})

    # ---- HTTP -------------------------------------------------------------------------------------
    @staticmethod
    def _rate_limited(resp: httpx.Response) -> float | None:
        """Matrix says how long in the body (`retry_after_ms`), more precisely than `Retry-After`."""
        if resp.status_code != 429:
            return None
        try:
            ms = resp.json().get("retry_after_ms")
        except (ValueError, AttributeError):
            ms = None
        if isinstance(ms, int | float) and ms >= 0:
            return ms / 1000
        return None  # http.check falls back to the Retry-After header, else its default

    def _call(self, method: str, path: str, *, version: str = "v3", not_found: str | None = None, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {secret(self.options.token, service=SERVICE)}"}
        return call(self._client, method, f"{self._base}/{version}{path}", service=SERVICE, auth_hint=AUTH_HINT,
                    not_found=not_found, is_rate_limited=self._rate_limited, headers=headers, **kw)

    def _send(self, event_type: str, txn: str, content: dict[str, Any], room: str | None = None) -> str:
        """PUT one event (in `room`, default the configured one); the txnId makes a repeat of the same write
        return the same event."""
        room = room or self.options.room_id
        got = self._call("PUT", f"/rooms/{_q(room)}/send/{event_type}/{_q(txn)}", json=content,
                         not_found=f"room {room} is unknown to the homeserver")
        return str(got["event_id"])

    def url(self, event_id: str, room: str | None = None) -> str:
        return f"https://matrix.to/#/{_q(room or self.options.room_id)}/{_q(event_id)}"

    def me(self) -> str:
        if self._me is None:
            self._me = str(self._call("GET", "/account/whoami")["user_id"])
        return self._me

    def _thread_events(self, thread: ThreadRef) -> list[dict[str, Any]]:
        """Every reply in the thread, oldest first."""
        root, room = thread.id, self._room_of(thread)
        path = f"/rooms/{_q(room)}/relations/{_q(root)}/m.thread"
        params: dict[str, Any] = {"dir": "f", "limit": 100}
        out: list[dict[str, Any]] = []
        while True:
            page = self._call("GET", path, version="v1", params=params,
                              not_found=f"thread {root} no longer exists in {room}")
            out += page.get("chunk") or []
            nxt = page.get("next_batch")
            if not nxt:
                return out
            params["from"] = nxt

    # ---- Backend ----------------------------------------------------------------------------------
    def bind(self, case: CaseRecord) -> ThreadRef:
        bound = case.bindings.get(self.name)
        if bound and bound.get("id"):
            return ThreadRef.model_validate({"backend": self.name, **bound})
        given = case.labels.get("matrix.thread")
        if given:
            event = self._call("GET", f"{self._room}/event/{_q(given)}",
                               not_found=f"event {given} given for case {case.id} does not exist in the room")
            if "m.relates_to" in (event.get("content") or {}):
                raise Rejected(f"event {given} given for case {case.id} cannot be a thread root: it is itself a "
                               "reply, reaction or edit (a thread root must be a plain message)")
            return self._thread(given)
        md = (f"🚨 **[{case.severity}] {case.title}**\n\n"
              f"Incident case `{case.id}`{' · service ' + case.service if case.service else ''} · opened by "
              "sharedctx. Agents post their findings in this thread; reply here, or react 👍 / 👎 to a "
              "decision request.")
        content = {"msgtype": "m.text", "body": md, "format": "org.matrix.custom.html",
                   "formatted_body": to_html(md), CASE_KEY: {"id": case.id}}
        return self._thread(self._send("m.room.message", f"sharedctx.case.{case.id}", content))

    def _thread(self, root: str) -> ThreadRef:
        return ThreadRef(backend=self.name, id=root, url=self.url(root), room=self.options.room_id)

    def render(self, entry: Entry) -> list[dict[str, Any]]:
        return render_parts(entry, human_markdown(entry), self.options.max_event_bytes, entry_content, content_bytes)

    def _parts(self, thread: ThreadRef, entry_id: str) -> dict[int, CopyPart]:
        """The parts of `entry_id` the bot itself sent: anyone in the room can send any content, and a copy
        forged by someone else must not make the worker think an entry was delivered."""
        me, room = self.me(), self._room_of(thread)
        found: dict[int, CopyPart] = {}
        for ev in self._thread_events(thread):
            p = _copy_of(ev.get("content") or {})
            if p and p[0] == entry_id and ev.get("sender") == me:
                found.setdefault(p[1], CopyPart(*p, external_id=ev["event_id"], url=self.url(ev["event_id"], room)))
        return found

    def append(self, thread: ThreadRef, entry: Entry) -> ExternalRef:
        parts = self.render(entry)
        n, room = len(parts), self._room_of(thread)
        # txnIds already make each part's send idempotent; a multi-part entry is also checked against the
        # thread, so a half-written one is completed even if the homeserver no longer remembers the txnIds.
        have = self._parts(thread, entry.id) if n > 1 else {}
        ids: list[str] = []
        for k, content in enumerate(parts, 1):
            if k in have:
                ids.append(have[k].external_id)
                continue
            content["m.relates_to"] = {"rel_type": "m.thread", "event_id": thread.id, "is_falling_back": True,
                                       "m.in_reply_to": {"event_id": ids[-1] if ids else thread.id}}
            if entry.kind != EntryKind.DECISION_REQUEST:
                content["msgtype"] = self.options.msgtype
            ids.append(self._send("m.room.message", f"sharedctx.{entry.id}.{k}of{n}", content, room))
        return ExternalRef(backend=self.name, id=ids[0], url=self.url(ids[0], room), parts=ids)

    def lookup(self, thread: ThreadRef, entry_id: str) -> ExternalRef | None:
        found = self._parts(thread, entry_id)
        if not found or len(found) != next(iter(found.values())).total:
            return None  # none, or only some parts: `append` sends the missing ones
        ids = [found[k].external_id for k in sorted(found)]
        return ExternalRef(backend=self.name, id=ids[0], url=self.url(ids[0], self._room_of(thread)), parts=ids)

    def read_back(self, thread: ThreadRef, since: str | None = None) -> ReadBack:
        """Our entries from the thread's relations; what is new since the cursor from the room's timeline.

        The cursor is a `/messages` pagination token. Reading the timeline forward from it sees every
        event once, in the server's order, whatever `origin_server_ts` says. Reactions cannot be read
        through `/relations?recurse=true`: Synapse caches that answer per root and does not invalidate it
        when a reaction lands on a reply (measured: stale for good), so they come from the timeline too.
        """
        me, room = self.me(), self._room_of(thread)
        parts: dict[str, CopyPart] = {}
        entry_of: dict[str, str] = {}  # event id -> entry id: what a reaction or an explicit reply answers
        for ev in self._thread_events(thread):
            self._collect(ev, me, parts, entry_of, room)
        token = since if since and not since.startswith("{") else None
        if token is None:
            token = str(self._call("GET", f"/rooms/{_q(room)}/context/{_q(thread.id)}", params={"limit": 0},
                                   not_found=f"thread {thread.id} no longer exists in {room}")["end"])
        new: list[dict[str, Any]] = []
        while True:
            page = self._call("GET", f"/rooms/{_q(room)}/messages", params={
                "dir": "f", "from": token, "limit": 100, "filter": TIMELINE_FILTER})
            chunk = page.get("chunk") or []
            new += chunk
            if not chunk or not page.get("end"):
                break
            token = str(page["end"])
        fresh: set[str] = set()
        humans: list[HumanItem] = []
        for ev in new:
            content, sender = ev.get("content") or {}, str(ev.get("sender", ""))
            rel = content.get("m.relates_to") or {}
            if ev.get("type") == "m.room.message" and rel.get("rel_type") == "m.thread" \
                    and rel.get("event_id") == thread.id:
                ours = self._collect(ev, me, parts, entry_of, room)
                if ours:
                    fresh.add(ours)
                elif sender != me and not any(k in content for k in OURS) and content.get("body"):
                    replied = (rel.get("m.in_reply_to") or {}).get("event_id")
                    explicit = replied if replied and not rel.get("is_falling_back") else None
                    humans.append(self._human(ev, "comment", str(content["body"]), entry_of.get(explicit or ""), room))
            elif ev.get("type") == "m.reaction" and rel.get("rel_type") == "m.annotation" and sender != me:
                key = THUMBS.get(str(rel.get("key", "")).replace("\ufe0f", ""))
                target = entry_of.get(str(rel.get("event_id", "")))
                if key and target:
                    humans.append(self._human(ev, "reaction", key, target, room))
        got = assemble(parts.values())
        entries = got.entries if since is None else [e for e in got.entries if e.id in fresh]
        return ReadBack(entries=entries, humans=humans, cursor=token)

    def _collect(self, ev: dict[str, Any], me: str, parts: dict[str, CopyPart], entry_of: dict[str, str],
                 room: str) -> str | None:
        """Take one of our entry events (in `room`) into `parts`; its entry id, or None if it is not ours."""
        p = _copy_of(ev.get("content") or {})
        if not p or ev.get("sender") != me:
            return None
        eid = str(ev["event_id"])
        parts.setdefault(eid, CopyPart(*p, external_id=eid, url=self.url(eid, room),
                                       position=ev.get("origin_server_ts")))
        entry_of[eid] = p[0]
        return p[0]

    def _human(self, ev: dict[str, Any], kind: str, text: str, in_reply_to: str | None, room: str) -> HumanItem:
        sender = str(ev["sender"])
        return HumanItem(backend=self.name, external_id=ev["event_id"], kind=kind, text=text,
                         author=Author(kind="human", name=sender), at=_at(ev.get("origin_server_ts", 0)),
                         url=self.url(ev["event_id"], room), in_reply_to=in_reply_to,
                         raw={"user_id": sender, "room_id": room})

    def search(self, text: str, limit: int = 20) -> list[Hit]:
        """The homeserver's full-text search over the room, keeping our own events (roots and entries)."""
        body = {"search_categories": {"room_events": {
            "search_term": text, "keys": ["content.body"], "order_by": "rank",
            "filter": {"rooms": [self.options.room_id], "limit": max(1, min(limit * 3, 100))}}}}
        data = self._call("POST", "/search", json=body)
        hits: list[Hit] = []
        seen: set[str] = set()
        for r in ((data or {}).get("search_categories", {}).get("room_events", {}).get("results") or []):
            ev = r.get("result") or {}
            content = ev.get("content") or {}
            copy, case = content.get(ENTRY_KEY), content.get(CASE_KEY)
            if isinstance(copy, dict):
                root = str((content.get("m.relates_to") or {}).get("event_id", ""))
                case_id = str(copy.get("case") or "") or None
            elif isinstance(case, dict):
                root, case_id = str(ev["event_id"]), str(case.get("id") or "") or None
            else:
                continue
            if not root or root in seen:
                continue
            seen.add(root)
            hits.append(Hit(backend=self.name, case_id=case_id, thread_id=root,
                            title=str(content.get("body", "")).split("\n", 1)[0][:200],
                            snippet=str(content.get("body", ""))[:200], url=self.url(root)))
            if len(hits) >= limit:
                break
        return hits

    def resolve(self, thread: ThreadRef, summary: Entry) -> None:
        me, room = self.me(), self._room_of(thread)
        marks = self._call("GET", f"/rooms/{_q(room)}/relations/{_q(thread.id)}/m.annotation/m.reaction",
                           version="v1", params={"limit": 100},
                           not_found=f"thread {thread.id} no longer exists in {room}")
        if any(ev.get("sender") == me and (ev.get("content", {}).get("m.relates_to") or {}).get("key") == DONE
               for ev in marks.get("chunk") or []):
            return  # the ✅ goes last, so it also says the final message is there
        md = f"✅ **Resolved** — {summary.title}"
        self._send("m.room.message", f"sharedctx.resolved.{summary.id}", {
            "msgtype": "m.text", "body": md, "format": "org.matrix.custom.html", "formatted_body": to_html(md),
            RESOLVED_KEY: {"entry": summary.id},
            "m.relates_to": {"rel_type": "m.thread", "event_id": thread.id, "is_falling_back": True,
                             "m.in_reply_to": {"event_id": thread.id}}}, room)
        try:
            self._send("m.reaction", f"sharedctx.done.{thread.id}",
                       {"m.relates_to": {"rel_type": "m.annotation", "event_id": thread.id, "key": DONE}}, room)
        except Rejected as exc:
            if "M_DUPLICATE_ANNOTATION" not in str(exc):
                raise

    def wait_for_activity(self, timeout: float = 25.0) -> bool:
        """Long-poll `/sync` (room-only filter, saved `next_batch`) until someone other than the bot posts or
        reacts in the room (or in the room of an older case's thread read since), or `timeout` passes. True means
        "read the threads back now": `sharedctx worker` uses it to wake the poller, so a 👍 reaches the agents in
        well under a second, not a poll interval.
        The first call only takes the current position and returns False."""
        params: dict[str, Any] = {"filter": self._sync_filter(), "timeout": int(timeout * 1000)}
        if self._sync_token is None:
            params["timeout"] = 0
        else:
            params["since"] = self._sync_token
        data = self._call("GET", "/sync", params=params, timeout=timeout + self.options.timeout)
        first = self._sync_token is None
        self._sync_token = str(data.get("next_batch") or self._sync_token or "")
        if first:
            return False
        me = self.me()
        with self._lock:
            rooms = set(self._rooms)
        joined = (data.get("rooms") or {}).get("join") or {}
        return any(ev.get("sender") != me for room_id, room in joined.items() if room_id in rooms
                   for ev in ((room or {}).get("timeline") or {}).get("events") or [])

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    # ---- who may decide, and set-up checks ---------------------------------------------------------
    def power_levels(self) -> dict[str, Any]:
        """`m.room.power_levels` plus the room's creators (room v12: creators outrank everyone and are
        not listed in `users`), cached for `power_ttl` seconds."""
        with self._lock:
            if self._power and time.monotonic() - self._power[0] < self.options.power_ttl:
                return self._power[1]
        levels = dict(self._call("GET", f"{self._room}/state/m.room.power_levels/") or {})
        create = self._call("GET", f"{self._room}/state/m.room.create/", params={"format": "event"}) or {}
        version = str((create.get("content") or {}).get("room_version", "1"))
        if version not in {str(v) for v in range(1, 12)}:  # v12+ (MSC4289): creators hold unlimited power
            creators = [create.get("sender"), *((create.get("content") or {}).get("additional_creators") or [])]
            levels["_creators"] = [c for c in creators if c]
        with self._lock:
            self._power = (time.monotonic(), levels)
        return levels

    def power_of(self, user_id: str) -> float:
        levels = self.power_levels()
        if user_id in levels.get("_creators", []):
            return float("inf")
        users = levels.get("users") or {}
        return float(users.get(user_id, levels.get("users_default", 0)))

    def authorize(self, item: HumanItem) -> tuple[bool, str] | None:
        """Room power level >= `decide_power_level`, or a user id on `deciders`; never the bot's own user
        (it is usually the room's creator, and agents hold its token). None for other backends' items."""
        if item.backend != self.name:
            return None
        user = str(item.raw.get("user_id") or item.author.name)
        try:
            me = self.me()
        except BackendError as exc:
            return False, f"matrix:could not check who the bot is ({exc})"
        if user == me:  # the account sharedctx writes as: an agent holding its token could post as it
            return False, f"matrix:{user} is the account sharedctx writes as, not a person"
        if user in self.options.deciders:
            return True, f"matrix:deciders ({user})"
        need = self.options.decide_power_level
        try:
            level = self.power_of(user)
        except BackendError as exc:
            return False, f"matrix:power level unknown ({exc})"
        shown = "creator" if level == float("inf") else f"{level:g}"
        return level >= need, f"matrix:power>={need} ({shown})"

    def check(self) -> list[Check]:
        out: list[Check] = []
        try:
            me = self.me()
            out.append(Check(what="credentials", ok=True, detail=f"the token belongs to {me}"))
        except BackendError as exc:
            return [Check(what="credentials", ok=False, detail=str(exc))]
        room = self.options.room_id
        try:
            joined = self._call("GET", "/joined_rooms").get("joined_rooms") or []
        except BackendError as exc:
            return [*out, Check(what="room membership", ok=False, detail=str(exc))]
        if room not in joined:
            return [*out, Check(what="room membership", ok=False,
                                detail=f"{me} has not joined {room}: invite it, then join with its token")]
        out.append(Check(what="room membership", ok=True, detail=f"{me} is in {room}"))
        try:
            levels = self.power_levels()
            mine = self.power_of(me)
        except BackendError as exc:
            return [*out, Check(what="power level", ok=False, detail=str(exc))]
        events = levels.get("events") or {}
        default = float(levels.get("events_default", 0))
        needs = {t: float(events.get(t, default)) for t in ("m.room.message", "m.reaction")}
        short = [f"{t} needs {v:g}" for t, v in needs.items() if mine < v]
        shown = "creator" if mine == float("inf") else f"{mine:g}"
        out.append(Check(what="power level", ok=not short,
                         detail=f"{me} has power {shown}; " + ("; ".join(short) + ": raise it in the room settings"
                                                              if short else "enough to post entries and react")))
        return [*out, self._check_deciders(me)]

    def _check_deciders(self, me: str) -> Check:
        """Someone other than the bot must be able to answer a decision request, or every request times out."""
        need = self.options.decide_power_level
        try:
            members = self._call("GET", f"{self._room}/joined_members").get("joined") or {}
            able = sorted(u for u in members if u != me and (u in self.options.deciders or self.power_of(u) >= need))
        except BackendError as exc:
            return Check(what="deciders", ok=False, detail=str(exc))
        if able:
            return Check(what="deciders", ok=True, detail=f"may decide: {', '.join(able[:10])}"
                         + (f" and {len(able) - 10} more" if len(able) > 10 else ""))
        return Check(what="deciders", ok=False, detail=(
            f"nobody in {self.options.room_id} but the bot may decide: give the people who approve power level "
            f">= {need} (Moderator in Element), or list their user ids in `deciders`"))
