"""The Slack Web API as the connector uses it: options, the one call (`SlackApi._call`), the `ok: false` table,
per-method pacing, identity and names, and the setup check.

Slack answers HTTP 200 with `{"ok": false, "error": code}`; `ERRORS` below is the one table that turns codes
into the classified errors (transport failures and HTTP statuses are classified by `http.py`, as for every
connector). Rate limits: Slack's per-method tiers, each with its own pacer (counted in the store and shared
by every process on it when built with `limits=`); a 429's `Retry-After` holds the pacer of that method so
every thread and process using the token backs off together.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from ...errors import Ambiguous, AuthFailed, BackendError, MessageTooLong, Rejected, Retryable
from ...model import format_ts
from ..base import Check
from ..http import Pacing, budget_key, check, json_of, make_pacer, new_client, parse_retry_after, secret, send

if TYPE_CHECKING:
    from ...store.base import RateLimits

SERVICE = "Slack"
AUTH_HINT = ("Check the bot token (xoxb-...) in the configured environment variable and the app's scopes: "
             "chat:write, channels:history (groups:history for a private channel), reactions:read, users:read.")
NEEDED_SCOPES = ("chat:write", "channels:history", "reactions:read")
UP = {"+1", "thumbsup"}
DOWN = {"-1", "thumbsdown"}

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
    "invalid_metadata_format": (Rejected, 'the workspace refused message metadata; set machine_copy = "text"'),
    "invalid_metadata_schema": (Rejected, 'the workspace refused message metadata; set machine_copy = "text"'),
    "metadata_too_large": (Rejected, 'the machine copy is too large for metadata here; lower max_message_chars '
                                     'or set machine_copy = "text"'),
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
    pacing_margin: float = Field(0.1, ge=0, description="seconds added to the post window: posts reach Slack a "
                                 "variable time after the pacer admits them")
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


def plain(text: str) -> str:
    """Slack's stored text -> what the person typed: entities unescaped, <url|label> links as `label (url)`."""
    text = re.sub(r"<(https?://[^|>]+)\|([^>]+)>", r"\2 (\1)", text)
    text = re.sub(r"<(https?://[^>]+)>", r"\1", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


class SlackApi:
    """One Slack app installation talking to one channel: what every Slack operation goes through."""

    def __init__(self, name: str, options: SlackOptions, *, client: httpx.Client | None = None,
                 limits: RateLimits | None = None, clock: Callable[[], float] | None = None,
                 sleep: Callable[[float], None] | None = None) -> None:
        self.name = name
        self.options = options
        self._client = client or new_client(options.timeout)
        self._owns_client = client is None
        self._api = options.base_url.rstrip("/")
        pps = options.posts_per_second
        post = (round(pps), 1.0 + options.pacing_margin) if pps >= 1 else (1, 1.0 / pps + options.pacing_margin)

        def pacer(limit: tuple[int, float], what: str, *scope: str) -> Pacing:
            def key() -> str:  # Slack's tiers are per app token and method (posts: per channel too)
                return budget_key("slack", what, self._api, secret(options.token, service=SERVICE), *scope)

            return make_pacer([limit], store=limits, key=key, max_block=options.max_block, clock=clock, sleep=sleep)

        self.pacers = {"post": pacer(post, "post", options.channel),
                       "read": pacer((options.reads_per_minute, 60.0), "read"),
                       "reactions": pacer((options.reactions_per_minute, 60.0), "reactions")}
        self._limit = options.max_message_chars
        self._me: dict[str, Any] | None = None
        self._names: dict[str, str] = {}
        self._groups: dict[str, tuple[float, set[str]]] = {}

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
                held.hold(wait, f"Slack answered 429 to {method}")
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

    def permalink(self, ts: str, thread_ts: str | None = None, channel: str | None = None) -> str:
        """`channel`: where the message is (default: the configured channel)."""
        channel = channel or self.options.channel
        base = str(self.whoami().get("url") or "https://slack.com/").rstrip("/")
        link = f"{base}/archives/{channel}/p{ts.replace('.', '')}"
        return link + (f"?thread_ts={thread_ts}&cid={channel}" if thread_ts and thread_ts != ts else "")

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
