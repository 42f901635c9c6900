"""A Slack Web API double: one channel's messages and threads, reactions, message metadata, users.
Any other channel is `channel_not_found`; two channels are two doubles behind one transport, routed by the
`channel` argument (message ts are per channel, so both may hold the same ts).

Accepts what Slack accepts and refuses what it refuses, as far as the connector uses it:
- auth: `Authorization: Bearer <token>` or a `token` form/query field; anything else is HTTP 200
  `{"ok": false, "error": "invalid_auth"}` (Slack never answers 401 for a bad token);
- `chat.postMessage` as form fields (`blocks` and `metadata` as JSON strings) or as a JSON body; the
  bot must be a member of the channel (`not_in_channel`), the channel must not be archived (`is_archived`),
  `thread_ts` must name an existing message (`thread_not_found`), `text` longer than `max_text` characters
  is `msg_too_long`, more than 50 blocks or a section text over 3,000 characters is `invalid_blocks`;
- read methods answer messages with `metadata` only when asked with `include_all_metadata=true`.

Spec checking (how the 2020 description's quirks are handled, see /work/shared/specs/README.md):
- the description wants the token in a `token` header (write methods) or query field (reads), which no
  real client sends; the double copies the Bearer token into those places *for validation only*;
- `ok: false` bodies come with HTTP 200, but the description keeps their shape under `default`: they
  are validated against `default` (Slack's error enums grow: `ratelimited`, `thread_not_found`,
  `invalid_blocks` are real codes the 2020 enum lacks, so an unknown error *code* is a known defect);
- known defects of the description itself (each also fails its own example) are listed in
  `known_defects`: no schema declares `response_metadata` (the pagination cursor every list method
  returns) nor message `metadata` (2022), and conversations.history wants at least one message.
- `usergroups.users.list` (user groups as deciders) is not in the trimmed description: the double checks
  its one required argument and the answer's shape by hand (`UNDESCRIBED`);
- openapi-core cannot check the description's oauth2 security scheme and warns about it; that one warning is
  silenced here (authentication is the double's own `authorized`).
"""

from __future__ import annotations

import json
import time
import warnings
from typing import Any
from urllib.parse import parse_qsl

import httpx

from .base import ServiceDouble

API = "https://slack.com/api"
CHANNEL = "C0INCIDENT1"
BOT_USER = "U0BOT00001"
BOT_ID = "B0BOT00001"
TEAM = "T0ACME0001"
HUMANS = {"U0ALICE001": "alice", "U0BOB00001": "bob"}
SCOPES = "chat:write,channels:history,groups:history,reactions:read,users:read,channels:read"
MAX_BLOCKS, MAX_SECTION = 50, 3000
# Methods the trimmed 2020 description does not include; checked against Slack's documented shape by hand.
UNDESCRIBED = frozenset({"/api/usergroups.users.list"})


class SlackDouble(ServiceDouble):
    service = "slack"
    spec_name = "slack"
    host_url = API
    known_defects = (
        r"Additional properties are not allowed \('response_metadata' was unexpected\)",
        r"Additional properties are not allowed \('metadata' was unexpected\)",
        r"^error: '[a-z_]+' is not one of",  # the 2020 error enums are a floor
        r"^messages: \[\] should be non-empty",  # conversations.history: an empty channel is valid
    )

    def __init__(self, *, token: str = "xoxb-test-token", validate: bool = True, max_text: int = 40_000,
                 scopes: str = SCOPES, enforce_rate: bool = False, clock: Any = time.monotonic,
                 channel: str = CHANNEL) -> None:
        """`enforce_rate`: answer `ratelimited` (429, Retry-After 1) to a second chat.postMessage in the channel
        within one second on `clock`, counting each in `rate_violations` (the bench wants zero)."""
        super().__init__(validate=validate)
        self.enforce_rate, self.clock = enforce_rate, clock
        self.post_times: list[float] = []
        self.rate_violations = 0
        self.token = token
        self.channel = channel
        self.max_text = max_text
        self.scopes = scopes
        self.member = True
        self.archived = False
        self.messages: dict[str, dict[str, Any]] = {}  # ts -> message (with private "_meta")
        self.error_next: list[tuple[str, str | None]] = []  # (ok:false code, method or None) answered once
        self.groups: dict[str, list[str]] = {}  # user group id -> member user ids
        self._ts = 0

    # ---- helpers ---------------------------------------------------------------------------------
    def new_ts(self) -> str:
        with self.lock:
            self._ts += 1
            return f"{1_760_000_000 + self._ts // 100}.{self._ts:06d}"

    def ok(self, data: dict[str, Any]) -> httpx.Response:
        return self.json_response(200, {"ok": True, **data}, {"x-oauth-scopes": self.scopes})

    def fail(self, code: str, status: int = 200, **extra: Any) -> httpx.Response:
        return self.json_response(status, {"ok": False, "error": code, **extra}, {"x-oauth-scopes": self.scopes})

    def error(self, status: int, message: str) -> httpx.Response:
        if status == 401:
            return self.fail("invalid_auth")
        if status == 429:
            return self.fail("ratelimited", 429)
        return self.json_response(status, {"ok": False, "error": "fatal_error" if status >= 500 else "invalid_request"})

    def _token_of(self, request: httpx.Request) -> str:
        auth = request.headers.get("authorization", "")
        if auth.startswith("Bearer "):
            return auth[len("Bearer "):]
        return str(request.url.params.get("token") or self._form(request).get("token") or "")

    def authorized(self, request: httpx.Request) -> bool:
        return self._token_of(request) == self.token

    @staticmethod
    def _form(request: httpx.Request) -> dict[str, Any]:
        ctype = request.headers.get("content-type", "")
        if not request.content:
            return {}
        if ctype.startswith("application/json"):
            data = json.loads(request.content)
            return data if isinstance(data, dict) else {}
        return dict(parse_qsl(request.content.decode("utf-8"), keep_blank_values=True))

    def _mock_request(self, request: httpx.Request) -> Any:
        from openapi_core.testing import MockRequest

        args = dict(request.url.params.multi_items())
        token = self._token_of(request)
        args.setdefault("token", token)
        headers = {**dict(request.headers), "token": token}  # where the 2020 description wants it
        return MockRequest("https://slack.com", request.method.lower(), request.url.path, args=args,
                           headers=headers, data=request.content or None,
                           content_type=request.headers.get("content-type", "application/json").split(";")[0])

    def check_request(self, request: httpx.Request) -> None:
        if request.url.path in UNDESCRIBED:
            self._log(request, "request", None if request.url.params.get("usergroup") else "usergroup is required")
            return
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Unsupported scheme type")
            super().check_request(request)

    def check_response(self, request: httpx.Request, resp: httpx.Response) -> None:
        try:
            failed = resp.status_code == 200 and json.loads(resp.content).get("ok") is False
        except ValueError:
            failed = False
        if request.url.path in UNDESCRIBED:
            body = json.loads(resp.content)
            shape = isinstance(body.get("users"), list) if body.get("ok") else isinstance(body.get("error"), str)
            self._log(request, "response", None if shape else "not Slack's usergroups.users.list shape")
            return
        if failed:  # Slack's error shape is described under `default`; it is sent with HTTP 200
            resp = httpx.Response(299, content=resp.content, headers=resp.headers)
        super().check_response(request, resp)

    # ---- test helpers ------------------------------------------------------------------------------
    def add_message(self, text: str, *, user: str = "U0ALICE001", thread_ts: str | None = None,
                    bot: bool = False, metadata: dict[str, Any] | None = None,
                    blocks: list[dict[str, Any]] | None = None, subtype: str | None = None) -> dict[str, Any]:
        ts = self.new_ts()
        msg: dict[str, Any] = {"type": "message", "ts": ts, "text": text, "user": BOT_USER if bot else user,
                               "team": TEAM}
        if bot:
            msg["bot_id"] = BOT_ID
        if blocks:
            msg["blocks"] = blocks
        if subtype:
            msg["subtype"] = subtype
        if thread_ts:
            msg["thread_ts"] = thread_ts
            msg["parent_user_id"] = self.messages[thread_ts]["user"] if thread_ts in self.messages else BOT_USER
            root = self.messages.get(thread_ts)
            if root is not None:
                root["thread_ts"] = thread_ts
                root["reply_count"] = root.get("reply_count", 0) + 1
                root["latest_reply"] = ts
        msg["_meta"] = metadata
        with self.lock:
            self.messages[ts] = msg
        return msg

    def add_human_reply(self, thread_ts: str, text: str, user: str = "U0ALICE001") -> dict[str, Any]:
        return self.add_message(text, user=user, thread_ts=thread_ts)

    def add_reaction(self, ts: str, name: str, user: str = "U0ALICE001") -> None:
        msg = self.messages[ts]
        reactions = msg.setdefault("reactions", [])
        for r in reactions:
            if r["name"] == name:
                if user not in r["users"]:
                    r["users"].append(user)
                    r["count"] += 1
                return
        reactions.append({"name": name, "users": [user], "count": 1})

    def delete_message(self, ts: str) -> None:
        """A deleted thread root takes its replies with it (as when an admin deletes a thread)."""
        with self.lock:
            for k in [k for k, m in self.messages.items() if k == ts or m.get("thread_ts") == ts]:
                self.messages.pop(k)

    def thread(self, thread_ts: str) -> list[dict[str, Any]]:
        return sorted((m for m in self.messages.values() if m["ts"] == thread_ts or m.get("thread_ts") == thread_ts),
                      key=lambda m: m["ts"])

    def replies(self, thread_ts: str) -> list[dict[str, Any]]:
        return [m for m in self.thread(thread_ts) if m["ts"] != thread_ts]

    def metadata_of(self, msg: dict[str, Any]) -> dict[str, Any] | None:
        return msg.get("_meta")

    def _public(self, msg: dict[str, Any], with_meta: bool) -> dict[str, Any]:
        out = {k: v for k, v in msg.items() if not k.startswith("_")}
        if with_meta and msg.get("_meta"):
            out["metadata"] = msg["_meta"]
        return out

    # ---- routing -----------------------------------------------------------------------------------
    def route(self, request: httpx.Request) -> httpx.Response:
        method = request.url.path.removeprefix("/api/")
        with self.lock:
            for i, (code, only) in enumerate(self.error_next):
                if only is None or only == method:
                    self.error_next.pop(i)
                    return self.fail(code, 429 if code == "ratelimited" else 200)
        args = {**dict(request.url.params.multi_items()), **self._form(request)}
        handler = {
            "auth.test": self._auth_test, "chat.postMessage": self._post, "conversations.replies": self._replies,
            "conversations.history": self._history, "conversations.info": self._info,
            "reactions.get": self._reactions_get, "users.info": self._users_info,
            "usergroups.users.list": self._group_users,
        }.get(method)
        if handler is None:
            return self.fail("unknown_method")
        return handler(args)

    def _channel_ok(self, args: dict[str, Any], *, write: bool = False) -> httpx.Response | None:
        if args.get("channel") != self.channel:
            return self.fail("channel_not_found")
        if write and self.archived:
            return self.fail("is_archived")
        if not self.member:
            return self.fail("not_in_channel")
        return None

    def _auth_test(self, args: dict[str, Any]) -> httpx.Response:
        return self.ok({"url": "https://acme.slack.com/", "team": "Acme", "user": "sharedctx", "team_id": TEAM,
                        "user_id": BOT_USER, "bot_id": BOT_ID, "is_enterprise_install": False})

    def _post(self, args: dict[str, Any]) -> httpx.Response:
        if (bad := self._channel_ok(args, write=True)) is not None:
            return bad
        if self.enforce_rate:
            now = self.clock()
            if self.post_times and now - self.post_times[-1] < 1.0:
                self.rate_violations += 1
                resp = self.fail("ratelimited", 429)
                resp.headers["retry-after"] = "1"
                return resp
            self.post_times.append(now)
        text = str(args.get("text") or "")
        blocks = args.get("blocks")
        meta = args.get("metadata")
        try:
            blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
            meta = json.loads(meta) if isinstance(meta, str) else meta
        except ValueError:
            return self.fail("invalid_arguments")
        if not text and not blocks:
            return self.fail("no_text")
        if len(text) > self.max_text:
            return self.fail("msg_too_long")
        if blocks is not None and (not isinstance(blocks, list) or len(blocks) > MAX_BLOCKS or any(
                b.get("type") == "section" and len((b.get("text") or {}).get("text", "")) > MAX_SECTION
                for b in blocks)):
            return self.fail("invalid_blocks")
        if meta is not None and (not isinstance(meta, dict) or not meta.get("event_type")
                                 or not isinstance(meta.get("event_payload"), dict)):
            return self.fail("invalid_metadata_format")
        thread_ts = args.get("thread_ts") or None
        if thread_ts and thread_ts not in self.messages:
            return self.fail("thread_not_found")
        msg = self.add_message(text, bot=True, thread_ts=thread_ts, metadata=meta, blocks=blocks)
        if str(args.get("reply_broadcast", "")).lower() in ("true", "1"):
            msg["subtype"] = "thread_broadcast"
        return self.ok({"channel": self.channel, "ts": msg["ts"], "message": self._public(msg, False)})

    @staticmethod
    def _page(items: list[dict[str, Any]], args: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        start = int(args.get("cursor") or 0)
        limit = max(1, min(int(args.get("limit") or 100), 1000))
        nxt = start + limit
        return items[start:nxt], (str(nxt) if nxt < len(items) else "")

    def _replies(self, args: dict[str, Any]) -> httpx.Response:
        if (bad := self._channel_ok(args)) is not None:
            return bad
        ts = args.get("ts") or ""
        msg = self.messages.get(ts)
        if msg is None:
            return self.fail("thread_not_found")
        root = msg.get("thread_ts") or ts
        with_meta = str(args.get("include_all_metadata", "")).lower() in ("true", "1")
        page, nxt = self._page(self.thread(root), args)
        return self.ok({"messages": [self._public(m, with_meta) for m in page], "has_more": bool(nxt),
                        "response_metadata": {"next_cursor": nxt}})

    def _history(self, args: dict[str, Any]) -> httpx.Response:
        if (bad := self._channel_ok(args)) is not None:
            return bad
        with_meta = str(args.get("include_all_metadata", "")).lower() in ("true", "1")
        top = sorted((m for m in self.messages.values()
                      if not m.get("thread_ts") or m["thread_ts"] == m["ts"] or m.get("subtype") == "thread_broadcast"),
                     key=lambda m: m["ts"], reverse=True)  # newest first, as Slack answers
        page, nxt = self._page(top, args)
        return self.ok({"messages": [self._public(m, with_meta) for m in page], "has_more": bool(nxt), "pin_count": 0,
                        "channel_actions_ts": None, "channel_actions_count": 0,
                        "response_metadata": {"next_cursor": nxt}})

    def _info(self, args: dict[str, Any]) -> httpx.Response:
        if args.get("channel") != self.channel:
            return self.fail("channel_not_found")
        return self.ok({"channel": {
            "id": self.channel, "name": "incidents", "created": 1_700_000_000, "creator": "U0ALICE001",
            "is_archived": self.archived, "is_channel": True, "is_general": False, "is_mpim": False,
            "is_group": False, "is_org_shared": False, "is_im": False, "is_shared": False, "is_private": False,
            "is_member": self.member, "name_normalized": "incidents",
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
        }})

    def _reactions_get(self, args: dict[str, Any]) -> httpx.Response:
        if (bad := self._channel_ok(args)) is not None:
            return bad
        msg = self.messages.get(args.get("timestamp") or "")
        if msg is None:
            return self.fail("message_not_found")
        return self.ok({"type": "message", "channel": self.channel, "message": self._public(msg, False)})

    def _users_info(self, args: dict[str, Any]) -> httpx.Response:
        uid = args.get("user") or ""
        name = HUMANS.get(uid) or ("sharedctx" if uid == BOT_USER else None)
        if name is None:
            return self.fail("user_not_found")
        return self.ok({"user": {"id": uid, "team_id": TEAM, "name": name, "real_name": name.title(),
                                 "is_bot": uid == BOT_USER, "profile": {"display_name": name}}})

    def _group_users(self, args: dict[str, Any]) -> httpx.Response:
        if args.get("usergroup") not in self.groups:
            return self.fail("no_such_subteam")
        return self.ok({"users": list(self.groups[args["usergroup"]])})

    def now(self) -> float:
        return time.time()
