"""Webhooks from the services, so human answers reach agents in seconds instead of a polling interval.

    POST /webhooks/{backend name}     e.g. /webhooks/github, /webhooks/pagerduty, /webhooks/jira, /webhooks/servicenow

Mounted on `sharedctx serve` (`build_app(ctx, mounts=[webhook_mount(ctx)], lifespans=[poller_lifespan(ctx)])`).
The backend's *type* decides how a request is verified and read; its name only routes, so two GitHub
backends (two repos) each get their own URL and secret (`[humans.webhooks.<name>] secret = "env:..."`).
A backend without a configured secret has no webhook: unsigned input is never accepted.

Verification happens before anything touches the store; a forged, missing or stale signature is 401
and records nothing:
- GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>`. GitHub signs no timestamp,
  so replay protection is the delivery id (`X-GitHub-Delivery`) plus the per-action dedupe: a replayed
  body re-delivers a comment id that was already taken in, which counts once.
- PagerDuty (v3 webhook subscriptions): `X-PagerDuty-Signature: v1=<hex>[,v1=<hex>...]` (several while a
  secret is rotated); the signed body's `event.occurred_at` must be within `max_age`; `event.id` dedupes.
- Jira Cloud admin webhooks with a secret: `X-Hub-Signature: sha256=<hex>` (WebSub style); the signed
  body's `timestamp` (ms) must be within `max_age`; `X-Atlassian-Webhook-Identifier` dedupes retries.
- Slack (Events API and interactivity): `X-Slack-Signature: v0=<hex HMAC-SHA256(secret,
  "v0:{X-Slack-Request-Timestamp}:{raw body}")>`, timestamp within `max_age`; `event_id` dedupes retries.
- ServiceNow has no native signed webhooks; ours (a business rule + outbound REST message, see
  docs/humans.md) sends `X-Sharedctx-Timestamp: <epoch seconds>`, `X-Sharedctx-Delivery: <unique id>`
  and `X-Sharedctx-Signature: sha256=<hex or base64 HMAC-SHA256(secret, "<timestamp>.<raw body>")>`.

Unknown event types get 202 and one log line per (backend, event type) — services send many we do not need.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from .backends.base import HumanItem
from .errors import ConfigError
from .humans import Humans, Poller, WebhookSettings
from .model import Author, format_ts, parse_ts
from .observability import WEBHOOKS_TOTAL
from .render import is_own_echo
from .store.sql.bindings import SCOPE_PARTS

if TYPE_CHECKING:
    from .context import SharedContext

log = logging.getLogger("sharedctx.webhooks")
MAX_BODY = 2_000_000


class Refused(Exception):
    """A request that must not be taken in: `status` and a message that says what was wrong."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Parsed:
    """What one webhook delivery says: its delivery id, event type, and (thread id, item) pairs."""

    delivery: str | None
    event: str
    items: list[tuple[str, HumanItem]] = field(default_factory=list)
    ignored: bool = False
    reply: dict[str, Any] | None = None  # answered as is, recording nothing (Slack's url_verification challenge)


def _hmac_hex(secret: str, data: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), data, hashlib.sha256).hexdigest()


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def _fresh(when: float, max_age: float, what: str) -> None:
    age = time.time() - when
    if age > max_age or age < -max_age:
        raise Refused(f"stale {what}: {age:.0f}s old, more than the allowed {max_age:.0f}s (a replay?)")


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Refused("the body is not JSON", status=400) from None


# ---- one verifier + reader per service type -----------------------------------------------------------
def github(name: str, body: bytes, headers: dict[str, str], secret: str, settings: WebhookSettings) -> Parsed:
    sig = headers.get("x-hub-signature-256", "")
    if not sig or not _same(sig, "sha256=" + _hmac_hex(secret, body)):
        raise Refused("missing or wrong X-Hub-Signature-256 (check the webhook secret)")
    data = _json(body)
    event = headers.get("x-github-event", "")
    out = Parsed(headers.get("x-github-delivery"), event)
    action = data.get("action")
    issue = data.get("issue") or {}
    # an organisation webhook sends every repo's issues; a repository that names none is left to the receiver
    repository = data.get("repository")
    repo = repository.get("full_name") if isinstance(repository, dict) else None
    repo = repo if isinstance(repo, str) else None
    if event == "issue_comment" and action == "created":
        c = data.get("comment") or {}
        text = c.get("body") or ""
        if is_own_echo(text):
            return out
        login = (c.get("user") or {}).get("login") or "unknown"
        out.items.append((str(issue.get("number")), HumanItem(
            backend=name, external_id=str(c["id"]), author=Author(kind="human", name=login), at=c.get("created_at", ""),
            text=text, url=c.get("html_url"),
            raw={"login": login, "author_association": c.get("author_association"), "repo": repo})))
    elif event == "issues" and action == "closed":
        login = (data.get("sender") or {}).get("login") or "unknown"
        at = issue.get("closed_at") or ""
        out.items.append((str(issue.get("number")), HumanItem(
            backend=name, external_id=f"closed:{issue.get('number')}:{at}", kind="status", text="closed",
            author=Author(kind="human", name=login), at=at, url=issue.get("html_url"),
            raw={"login": login, "state_reason": issue.get("state_reason"), "repo": repo})))
    elif event == "ping":
        pass
    else:
        out.ignored = True
        out.event = f"{event}.{action}" if action else event
    return out


def pagerduty(name: str, body: bytes, headers: dict[str, str], secret: str, settings: WebhookSettings) -> Parsed:
    want = "v1=" + _hmac_hex(secret, body)
    given = [s.strip() for s in headers.get("x-pagerduty-signature", "").split(",") if s.strip()]
    if not any(_same(g, want) for g in given):
        raise Refused("missing or wrong X-PagerDuty-Signature (check the subscription's secret)")
    ev = (_json(body) or {}).get("event") or {}
    try:
        _fresh(parse_ts(ev.get("occurred_at", "")).timestamp(), settings.max_age, "event (occurred_at)")
    except ValueError:
        raise Refused("the event has no valid occurred_at; it cannot be checked for replay") from None
    kind = ev.get("event_type", "")
    out = Parsed(ev.get("id"), kind)
    data = ev.get("data") or {}
    agent = ev.get("agent") or {}
    who = Author(kind="human", name=agent.get("summary") or "unknown")
    if kind == "incident.annotated":
        incident = (data.get("incident") or {}).get("id", "")
        text = data.get("content") or ""
        if is_own_echo(text) or agent.get("type") not in (None, "user_reference"):
            return out
        # PagerDuty's annotated event carries no note id: the note id comes from polling, and the two are
        # matched by content (see Humans.ingest's content key for PagerDuty).
        out.items.append((incident, HumanItem(
            backend=name, external_id=f"event:{ev.get('id')}", kind="note", author=who, at=ev["occurred_at"],
            text=text, url=(data.get("incident") or {}).get("html_url"), raw={"user_id": agent.get("id")})))
    elif kind == "incident.resolved":
        inc = data if data.get("type") == "incident" else data.get("incident") or {}
        if agent.get("type") == "user_reference":
            out.items.append((inc.get("id", ""), HumanItem(
                backend=name, external_id=f"resolved:{inc.get('id')}", kind="status", text="resolved",
                author=who, at=ev["occurred_at"], url=inc.get("html_url"), raw={"user_id": agent.get("id")})))
    else:
        out.ignored = True
    return out


def jira(name: str, body: bytes, headers: dict[str, str], secret: str, settings: WebhookSettings) -> Parsed:
    sig = headers.get("x-hub-signature", "")
    if not sig or not _same(sig, "sha256=" + _hmac_hex(secret, body)):
        raise Refused("missing or wrong X-Hub-Signature (check the webhook's secret in Jira's WebHooks admin)")
    data = _json(body)
    try:
        _fresh(float(data["timestamp"]) / 1000.0, settings.max_age, "event (timestamp)")
    except (KeyError, TypeError, ValueError):
        raise Refused("the event has no valid timestamp; it cannot be checked for replay") from None
    kind = data.get("webhookEvent", "")
    out = Parsed(headers.get("x-atlassian-webhook-identifier"), kind)
    issue = data.get("issue") or {}
    key = issue.get("key", "")
    if kind == "comment_created":
        c = data.get("comment") or {}
        raw_body = c.get("body")
        text = raw_body if isinstance(raw_body, str) else _adf_text(raw_body)
        if is_own_echo(text, raw_body):
            return out
        author = c.get("author") or {}
        out.items.append((key, HumanItem(
            backend=name, external_id=str(c.get("id")), text=text, at=_jira_at(c.get("created", "")),
            author=Author(kind="human", name=author.get("displayName") or "unknown"),
            url=f"{_site(issue)}/browse/{key}?focusedCommentId={c.get('id')}",
            raw={"user_id": author.get("accountId"), "email": author.get("emailAddress")})))
    elif kind == "jira:issue_updated":
        status = ((issue.get("fields") or {}).get("status") or {}).get("statusCategory") or {}
        changed = any(i.get("field") == "status" for i in (data.get("changelog") or {}).get("items") or [])
        user = data.get("user") or {}
        if changed and status.get("key") == "done":
            out.items.append((key, HumanItem(
                backend=name, external_id=f"resolved:{key}", kind="status", text="resolved",
                author=Author(kind="human", name=user.get("displayName") or "unknown"),
                at=format_ts(parse_ts_ms(data["timestamp"])), url=f"{_site(issue)}/browse/{key}",
                raw={"user_id": user.get("accountId"), "email": user.get("emailAddress")})))
        else:
            out.ignored = True
    else:
        out.ignored = True
    return out


def servicenow(name: str, body: bytes, headers: dict[str, str], secret: str, settings: WebhookSettings) -> Parsed:
    ts = headers.get("x-sharedctx-timestamp", "")
    sig = headers.get("x-sharedctx-signature", "")
    if not ts or not sig.startswith("sha256="):
        raise Refused("missing X-Sharedctx-Timestamp / X-Sharedctx-Signature (see docs/humans.md for the rule)")
    mac = hmac.new(secret.encode("utf-8"), ts.encode("ascii", "replace") + b"." + body, hashlib.sha256).digest()
    given = sig[len("sha256="):]
    try:
        as_b64 = base64.b64decode(given, validate=True)
    except (binascii.Error, ValueError):
        as_b64 = b""
    if not (_same(given.lower(), mac.hex()) or hmac.compare_digest(as_b64, mac)):
        raise Refused("wrong X-Sharedctx-Signature (check the shared secret)")
    try:
        _fresh(float(ts), settings.max_age, "X-Sharedctx-Timestamp")
    except ValueError:
        raise Refused("X-Sharedctx-Timestamp is not epoch seconds") from None
    data = _json(body)
    kind = data.get("type", "")
    out = Parsed(headers.get("x-sharedctx-delivery") or data.get("event_id"), kind)
    who = Author(kind="human", name=data.get("sys_created_by") or data.get("by") or "unknown")
    if kind == "journal" and data.get("element") in ("work_notes", "comments"):
        text = data.get("value") or ""
        if is_own_echo(text):
            return out
        at = (data.get("sys_created_on") or "").replace(" ", "T")
        out.items.append((data.get("element_id", ""), HumanItem(
            backend=name, external_id=str(data.get("sys_id")), text=text, author=who,
            at=at if at.endswith("Z") or not at else at + "Z",
            kind="comment" if data.get("element") == "comments" else "work_note")))
    elif kind == "resolved":
        out.items.append((data.get("incident", ""), HumanItem(
            backend=name, external_id=f"resolved:{data.get('incident')}", kind="status", text="resolved",
            author=who, at=data.get("at") or "")))
    else:
        out.ignored = True
    return out


def parse_ts_ms(value: Any) -> datetime:
    """Jira's `timestamp`: milliseconds since the epoch."""
    return datetime.fromtimestamp(float(value) / 1000.0, UTC)


def _jira_at(value: str) -> str:
    """Jira writes `2021-01-17T12:34:00.000+0000`; ISO wants `+00:00`."""
    return re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", value)


def _site(issue: dict[str, Any]) -> str:
    own = str(issue.get("self") or "")
    return own.split("/rest/")[0] if "/rest/" in own else ""


def _adf_text(node: Any) -> str:
    if isinstance(node, dict):
        if node.get("type") == "text":
            return str(node.get("text", ""))
        sep = "\n" if node.get("type") in ("doc", "bulletList", "orderedList") else ""
        return sep.join(_adf_text(c) for c in node.get("content") or [])
    return str(node or "")


def slack(name: str, body: bytes, headers: dict[str, str], secret: str, settings: WebhookSettings) -> Parsed:
    """Slack Events API + interactivity (v0 signatures): see backends/slack/events.py."""
    from .backends.slack.events import read

    parsed: Parsed = read(name, body, headers, secret, settings)
    return parsed


Reader = Callable[[str, bytes, dict[str, str], str, WebhookSettings], Parsed]
READERS: dict[str, Reader] = {"github": github, "pagerduty": pagerduty, "jira": jira, "servicenow": servicenow,
                              "slack": slack}


# ---- the app -------------------------------------------------------------------------------------------
class WebhookReceiver:
    """Verifies, dedupes and hands webhook deliveries to `Humans.ingest` (in a thread: store I/O)."""

    def __init__(self, ctx: SharedContext, humans: Humans | None = None) -> None:
        self.ctx = ctx
        self.humans = humans or Humans(ctx)
        self._ignored: set[tuple[str, str]] = set()

    async def handle(self, name: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        backend = self.ctx.backends.get(name)
        hook = self.humans.settings.webhooks.get(name)
        if backend is None or hook is None:
            return 404, {"error": f"no webhook for {name!r}: it needs a backend of that name and "
                                  f"[humans.webhooks.{name}] secret = \"env:...\""}
        reader = READERS.get(backend.type)
        if reader is None:
            return 404, {"error": f"backends of type {backend.type!r} have no webhooks"}
        try:
            secret = hook.secret.get()
        except ConfigError as exc:
            log.error("webhook %s: %s", name, exc)
            return 503, {"error": "the webhook secret is not available on this server"}
        try:
            parsed = reader(name, body, headers, secret, hook)
        except Refused as exc:
            log.warning("webhook %s refused (%s): %s", name, exc.status, exc)
            return exc.status, {"error": str(exc)}
        if parsed.reply is not None:
            return 200, parsed.reply
        if parsed.ignored:
            if (name, parsed.event) not in self._ignored:
                self._ignored.add((name, parsed.event))
                log.info("webhook %s: ignoring event type %r (logged once)", name, parsed.event)
            return 202, {"ignored": parsed.event}
        scope = f"webhook:{name}"
        if parsed.delivery and not await asyncio.to_thread(self.ctx.store.claim_action, scope, parsed.delivery):
            return 200, {"duplicate": parsed.delivery}
        try:
            results = await asyncio.to_thread(self._take, name, parsed)
        except Exception:
            if parsed.delivery:
                await asyncio.to_thread(self.ctx.store.release_action, scope, parsed.delivery)
            log.exception("webhook %s: taking delivery %s in failed", name, parsed.delivery)
            return 500, {"error": "could not record this delivery; the service will retry it"}
        return 200, {"event": parsed.event, "results": results}

    def _take(self, name: str, parsed: Parsed) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        backend = self.ctx.backends.get(name)
        complete = getattr(backend, "complete_item", None)
        for thread_id, item in parsed.items:
            if complete is not None:  # the backend fills in what the event lacks (Slack: a reaction's thread)
                got = complete(thread_id, item)
                if got is None:
                    out.append({"thread": thread_id, "case": None, "meaning": "not about one of our threads"})
                    continue
                thread_id, item = got
            # Where the event says the thread lives; an event that names nowhere is taken to be from the
            # backend's own repo / channel (`home_scope`), as the backend reads a binding that recorded none:
            # it must not match every repo's issue #N. Backends without scopes have no `home_scope`.
            home = getattr(backend, "home_scope", None)
            named = next((str(item.raw[k]) for k in SCOPE_PARTS if item.raw.get(k)), None)
            case_id = self.humans.case_for(name, thread_id, named or home, home)
            if case_id is None:
                where = f" in {named}" if named else ""
                out.append({"thread": thread_id, "case": None, "meaning": f"no case is bound to this thread{where}"})
                continue
            got = self.humans.ingest(case_id, item, via="webhook")
            out.append({"thread": thread_id, "case": case_id, "duplicate": got.duplicate, "meaning": got.meaning,
                        "entries": [e.id for e in got.entries]})
        return out


def webhooks_app(ctx: SharedContext, humans: Humans | None = None) -> Starlette:
    """A Starlette sub-app answering `POST /{backend name}`; mount it at `/webhooks`."""
    receiver = WebhookReceiver(ctx, humans)

    async def endpoint(request: Request) -> Response:
        name = request.path_params["name"]
        response = await respond(request, name)
        # a name no backend has is counted as `_unknown`: anyone can POST any path, labels must stay bounded
        WEBHOOKS_TOTAL.labels(name if name in ctx.backends else "_unknown", str(response.status_code)).inc()
        return response

    async def respond(request: Request, name: str) -> Response:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY:
            return JSONResponse({"error": "payload too large"}, status_code=413)
        body = await request.body()
        if len(body) > MAX_BODY:
            return JSONResponse({"error": "payload too large"}, status_code=413)
        headers = {k.lower(): v for k, v in request.headers.items()}
        status, answer = await receiver.handle(name, body, headers)
        return JSONResponse(answer, status_code=status)

    app = Starlette(routes=[Route("/{name}", endpoint, methods=["POST"])])
    app.state.receiver = receiver
    return app


def webhook_mount(ctx: SharedContext, humans: Humans | None = None) -> Mount:
    """For `build_app(ctx, mounts=[webhook_mount(ctx)])`."""
    return Mount("/webhooks", app=webhooks_app(ctx, humans))


def poller_lifespan(ctx: SharedContext, humans: Humans | None = None) -> Callable[[Any], Any]:
    """For `build_app(ctx, lifespans=[poller_lifespan(ctx)])`: polls while the server runs (if `[humans] poll`)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        poller = Poller(ctx, humans)
        task = asyncio.create_task(poller.run()) if poller.humans.settings.poll else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    return lifespan
