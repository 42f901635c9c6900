"""Humans in the loop: decision requests, and what people answer in the services they already use.

Agents ask (`await case.request_decision(...)`); people answer where they read the case — a comment with
a slash command, a 👍/👎 reaction (GitHub), closing the issue / resolving the incident — and sharedctx
reads that back (webhooks in `sharedctx.webhooks`, or the `Poller` here) and turns it into entries.
Nothing is ever edited: an answer, a correction, an override is one more entry that references the
entry it is about.

The entry conventions (shared with the MCP server's `request_decision` / `get_decision`, and with the
history search's `outcome:` filter — `outcome` is a top-level attr on purpose):

`decision-request` — by the asking agent
    attrs = {"question": str, "options": [str], "status": "pending", "timeout": seconds | None,
             "on_timeout": "default" | "escalate", "default": str | None, "deadline": ISO time | None}
    `status` stays "pending" in the entry forever (entries are immutable); whether a request is still
    pending is whether a `decision` entry references it (`get_decision`).

`decision` — ref = the request's id (or, for an `/override` with no pending request, the entry it corrects)
    attrs = {"outcome": "approved" | "rejected" | "overridden" | "timeout",
             "decided_by": who (a login/user name, or "sharedctx" for a timeout),
             "rule": why that person may decide ("github:permission>=write (admin)", "allow:pagerduty",
                     "timeout:default"),
             "instead": what to do instead (overridden only), "reason": text (rejected, optional),
             "choice": the option taken on a timeout with policy "default",
             "via": backend name, "source": {"entry", "backend", "id", "url"} of the human's action}
    Exactly one decision per request: the first authorised answer claims it atomically in the store
    (`claim_action("decision", request_id)`), so a second answer — in this process or another — is
    recorded as a note saying what it was and that the first one stands.

`note` by `human:<name>` — every human comment, command or not, with
    attrs = {"external": {"backend", "id", "url"}, "human": {"kind", "command", "arg", "via"}}
    `attrs.external.backend` is what keeps the entry from being delivered back to the thread it came
    from (`SharedContext.deliver_to`): the outbox gets no row for the origin backend, so the comment is
    mirrored to the case's other backends exactly once and never echoed. Reactions and status changes
    are recorded the same way but not mirrored (the decision/verdict/resolution they cause is).

A verdict on an agent entry (a 👍/👎 on it, or `/verify [id]`, `/dispute [id] why`; no id = the newest finding)
    ref = the entry, attrs = {"verdict": "verified" | "disputed", "by", "reason", "via", "source"}
    kind `note` for findings and other entries; kind `verification` when the entry is a `remediation`
    (then it says whether the fix worked, which is how `sharedctx.search` reads `verification` entries).

`resolution` by `human:<name>` — someone closed the issue / resolved the incident themselves
    attrs = {"human_resolution": true, "via", "source"}

Who may decide: on GitHub, the commenter's repository permission (write or higher, configurable) read
from the collaborator-permission API; elsewhere `[humans.allow] <backend> = [users]` (user names, ids
or emails as the service reports them). Anyone else's answer is recorded and does not decide.
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .backends.base import Authorizes, Backend, HumanItem, ThreadRef
from .config import Config, Secret
from .errors import BackendError, ConfigError
from .model import SYSTEM, Author, CaseStatus, Entry, EntryKind, format_ts, parse_ts, utcnow

if TYPE_CHECKING:
    from .context import Case, SharedContext

log = logging.getLogger("sharedctx.humans")

Outcome = Literal["approved", "rejected", "overridden", "timeout"]
COMMANDS = ("approve", "reject", "override", "note", "verify", "dispute")
DECIDING = {"approve": "approved", "reject": "rejected", "override": "overridden"}
VERDICTS = {"verify": "verified", "dispute": "disputed"}
UP, DOWN = "+1", "-1"
INSTRUCTIONS = (
    "Reply `/approve`, `/reject <reason>`, `/override <what to do instead>`, or react 👍 / 👎 "
    "(GitHub). Only people allowed to decide for this case decide; anything else is recorded as a note."
)
GITHUB_LEVELS = {"none": 0, "read": 1, "triage": 2, "write": 3, "maintain": 4, "admin": 5}


# ---- settings --------------------------------------------------------------------------------------
class WebhookSettings(BaseModel):
    """`[humans.webhooks.<backend name>]`: how to check that a webhook really comes from the service."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    secret: Secret = Field(description='"env:NAME" reference to the shared secret set in the service')
    max_age: float = Field(300.0, gt=0, description="seconds a signed timestamp may be old (replays)")

    @field_validator("secret", mode="before")
    @classmethod
    def _secret(cls, v: Any) -> Any:
        return Secret(v) if isinstance(v, str) else v


class HumanSettings(BaseModel):
    """`[humans]` in sharedctx.toml (free-form in `Config.humans`, typed and validated here)."""

    model_config = ConfigDict(extra="forbid")
    mirror: bool = Field(True, description="copy human comments to the case's other backends")
    attribution: bool = Field(True, description="mirrored comments end with who wrote them, where, and a link")
    poll: bool = Field(True, description="read threads back periodically (the fallback when webhooks can't reach us)")
    poll_interval: float = Field(30.0, gt=0, description="seconds between read-backs of one case's threads")
    poll_resolved_for: float = Field(3600.0, ge=0, description="keep reading a resolved case back this long")
    decision_timeout: float = Field(3600.0, gt=0, description="default seconds a decision request waits")
    on_timeout: Literal["default", "escalate"] = "default"
    default: str = Field("reject", description="the choice taken on timeout with policy `default`")
    wait_interval: float = Field(0.5, gt=0, description="how often a waiting agent re-reads the journal")
    github_permission: Literal["triage", "write", "maintain", "admin"] = "write"
    allow: dict[str, list[str]] = Field(default_factory=dict, description="backend name -> users who may decide")
    webhooks: dict[str, WebhookSettings] = Field(default_factory=dict, description="backend name -> webhook secret")


def human_settings(config: Config | Mapping[str, Any] | None) -> HumanSettings:
    """Validate `[humans]`; errors name the key (`humans.allow.pagerduty: ...`) like the rest of the config."""
    data = config.humans if isinstance(config, Config) else dict(config or {})
    try:
        return HumanSettings.model_validate(data)
    except ValidationError as exc:
        lines = ["invalid [humans] configuration:"]
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            lines.append(f"  humans.{loc}: " + ("unknown key" if err["type"] == "extra_forbidden" else err["msg"]))
        raise ConfigError("\n".join(lines)) from None


# ---- commands ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Command:
    """A slash command read from a comment. `guess` is set (and `name` is None) for a near-miss typo."""

    name: str | None
    arg: str = ""
    typed: str = ""
    guess: str | None = None


SLASH = re.compile(r"^\s*/([A-Za-z][\w-]*)\b[ \t]*(.*)$", re.M)


def parse_command(text: str) -> Command | None:
    """The first line that starts with `/word`; None when the comment has no command at all.

    Anything after the command, including further lines, is its argument (`/reject the p99 is still up`).
    A word that is not a command but close to one (`/aprove`) comes back with `guess`, so the caller
    can reply with what it understood instead of silently ignoring or guessing.
    """
    m = SLASH.search(text or "")
    if not m:
        return None
    word = m.group(1).lower()
    rest = (m.group(2) + text[m.end():]).strip()
    if word in COMMANDS:
        return Command(word, rest, typed=word)
    close = difflib.get_close_matches(word, COMMANDS, n=1, cutoff=0.6)
    return Command(None, rest, typed=word, guess=close[0] if close else None)


# ---- decisions ---------------------------------------------------------------------------------------
@dataclass
class Decision:
    """What a decision request came to: `status` "pending" until a `decision` entry references it."""

    request_id: str
    status: Literal["pending", "decided"] = "pending"
    outcome: Outcome | None = None
    decided_by: str | None = None
    rule: str | None = None
    instead: str | None = None
    reason: str | None = None
    choice: str | None = None
    escalated: bool = False
    entry: Entry | None = None

    @property
    def approved(self) -> bool:
        """True when the agent may go ahead as proposed (approved, or timed out with the default "approve")."""
        return self.outcome == "approved" or (self.outcome == "timeout" and self.choice == "approve")

    def to_json(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "status": self.status, "outcome": self.outcome,
                "decided_by": self.decided_by, "rule": self.rule, "instead": self.instead, "reason": self.reason,
                "choice": self.choice, "escalated": self.escalated,
                "decision_entry": self.entry.id if self.entry else None}  # fmt: skip


def decision_of(entry: Entry) -> Decision:
    a = entry.attrs
    return Decision(request_id=entry.ref or "", status="decided", outcome=a.get("outcome"),
                    decided_by=a.get("decided_by"), rule=a.get("rule"), instead=a.get("instead"),
                    reason=a.get("reason"), choice=a.get("choice"), entry=entry)  # fmt: skip


def get_decision(ctx: SharedContext, request_id: str) -> Decision:
    """The state of a decision request, from the journal alone (the MCP `get_decision` answers this)."""
    req = ctx.store.get_entry(request_id)
    if req.kind != EntryKind.DECISION_REQUEST:
        raise ValueError(f"entry {request_id} is a {req.kind.value}, not a decision-request")
    escalated = False
    for e in ctx.store.entries(req.case_id, since_seq=req.seq, kinds=["decision", "note"]):
        if e.ref != req.id:
            continue
        if e.kind == EntryKind.DECISION:
            return decision_of(e)
        escalated = escalated or bool(e.attrs.get("escalated"))
    return Decision(request_id=req.id, escalated=escalated)


def request_body(question: str, options: Sequence[str], body: str, timeout: float | None, on_timeout: str,
                 default: str | None) -> str:
    """The text people read: the question, the options, and exactly how to answer."""
    out = [body.strip()] if body.strip() else []
    if options:
        out.append("Options: " + ", ".join(f"`{o}`" for o in options))
    out.append(INSTRUCTIONS)
    if timeout:
        then = (f"sharedctx takes the default `{default}`" if on_timeout == "default"
                else "the request stays pending and is escalated")
        out.append(f"Without an answer in {_duration(timeout)}, {then}.")
    return "\n\n".join(out)


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    if seconds >= 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds:g} s"


async def request_decision(
    case: Case,
    question: str,
    options: Sequence[str] = ("approve", "reject"),
    *,
    timeout: float | None = None,
    on_timeout: str | None = None,
    default: str | None = None,
    body: str = "",
    author: Author | str | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> Decision:
    """Record a decision request (delivered to every backend) and wait for it to be decided.

    Waiting is `asyncio.sleep` between journal reads, so any number of cases wait side by side in one
    event loop. Answers arrive from webhooks or the poller (any process sharing the store) as `decision`
    entries; this only watches the journal. On timeout: policy "default" records a `decision` with
    outcome "timeout" and `choice` = the default; "escalate" records an escalation note, leaves the
    request pending (a later human answer still decides) and returns the pending `Decision`.
    """
    s = human_settings(case.ctx.config)
    timeout = s.decision_timeout if timeout is None else timeout
    policy = on_timeout or s.on_timeout
    if policy not in ("default", "escalate"):
        raise ValueError(f"on_timeout must be 'default' or 'escalate', not {policy!r}")
    choice = default if default is not None else s.default
    deadline = utcnow() + timedelta(seconds=timeout) if timeout else None
    req = await case.arecord(
        EntryKind.DECISION_REQUEST, question, request_body(question, options, body, timeout, policy, choice),
        author=author, attrs={**dict(attrs or {}), "question": question, "options": list(options),
                              "status": "pending", "timeout": timeout, "on_timeout": policy, "default": choice,
                              "deadline": format_ts(deadline) if deadline else None},
    )  # fmt: skip
    return await wait_for_decision(case.ctx, req, timeout=timeout, on_timeout=policy, default=choice,
                                   interval=s.wait_interval)  # fmt: skip


async def wait_for_decision(
    ctx: SharedContext,
    request: Entry,
    *,
    timeout: float | None,
    on_timeout: str = "default",
    default: str | None = None,
    interval: float = 0.5,
) -> Decision:
    """Wait for the `decision` entry that references `request`; on timeout apply the policy (see above)."""
    end = time.monotonic() + timeout if timeout else None
    while True:
        found = await asyncio.to_thread(get_decision, ctx, request.id)
        if found.status == "decided":
            return found
        if end is not None and time.monotonic() >= end:
            return await asyncio.to_thread(_time_out, ctx, request, on_timeout, default)
        await asyncio.sleep(interval if end is None else max(0.0, min(interval, end - time.monotonic())))


def _time_out(ctx: SharedContext, request: Entry, policy: str, default: str | None) -> Decision:
    case = ctx.case(request.case_id)
    if policy == "escalate":
        note = case.record(
            EntryKind.NOTE, f"No answer to “{request.title[:120]}” yet: escalating",
            "The decision request is still pending; an authorised answer still decides it. "
            "The waiting agent was told it is undecided.",
            author=SYSTEM, ref=request.id, attrs={"escalated": True, "policy": "escalate"},
        )  # fmt: skip
        return Decision(request_id=request.id, escalated=True, entry=note)
    if not ctx.store.claim_action("decision", request.id, request.case_id):
        return get_decision(ctx, request.id)  # an answer landed in the same instant: it wins
    entry = case.record(
        EntryKind.DECISION, f"Timed out: took the default `{default}`",
        f"Nobody answered “{request.title}” in time; following the configured policy, sharedctx took "
        f"the default `{default}`.",
        author=SYSTEM, ref=request.id,
        attrs={"outcome": "timeout", "decided_by": SYSTEM.name, "rule": "timeout:default", "choice": default},
    )  # fmt: skip
    ctx.store.link_action("decision", request.id, entry.id)
    return decision_of(entry)


# ---- authorisation ------------------------------------------------------------------------------------
class ChecksPermission(Protocol):
    def permission(self, login: str) -> str: ...


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    rule: str


def may_decide(settings: HumanSettings, backend: Backend | None, item: HumanItem) -> Verdict:
    """Whether the author of `item` may decide, and the rule that says so (recorded in the decision)."""
    name = item.author.name
    ids = {name.lower(), *(str(item.raw.get(k, "")).lower() for k in ("user_id", "email", "login"))} - {""}
    allow = [a.lower() for a in settings.allow.get(item.backend, [])]
    if any(a in ids for a in allow):
        return Verdict(True, f"allow:{item.backend}")
    if isinstance(backend, Authorizes):  # the service's own rule (e.g. Redmine `deciders`), when it has one
        try:
            said = backend.authorize(item)
        except BackendError as exc:
            return Verdict(False, f"{backend.type}: could not check ({exc})")
        if said is not None:
            return Verdict(*said)
    if backend is not None and backend.type == "github" and hasattr(backend, "permission"):
        need = settings.github_permission
        try:
            level = backend.permission(name)
        except BackendError as exc:
            return Verdict(False, f"github:permission unknown ({exc})")
        ok = GITHUB_LEVELS.get(level, 0) >= GITHUB_LEVELS[need]
        return Verdict(ok, f"github:permission>={need} ({level})")
    if not allow:
        return Verdict(False, f"allow:{item.backend} (no one is on the allow-list for this backend)")
    return Verdict(False, f"allow:{item.backend} ({name} is not on it)")


# ---- taking human actions in ---------------------------------------------------------------------------
@dataclass
class Ingested:
    """What one human action became. `duplicate` when it had been taken in already (webhook + poll)."""

    case_id: str
    item: HumanItem
    duplicate: bool = False
    entries: list[Entry] = field(default_factory=list)
    meaning: str = ""


def _first_line(text: str, n: int = 120) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= n else line[: n - 1] + "…"


class Humans:
    """Turns `HumanItem`s (from webhooks or polling) into journal entries, once each."""

    def __init__(self, ctx: SharedContext, settings: HumanSettings | None = None) -> None:
        self.ctx = ctx
        self.settings = settings or human_settings(ctx.config)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._threads: dict[tuple[str, str], str] = {}

    # -- which case -------------------------------------------------------------------------------
    def case_for(self, backend: str, thread_id: str) -> str | None:
        """The case bound to a backend thread (issue number, incident id...), from the cases' bindings."""
        key = (backend, str(thread_id))
        if key not in self._threads:
            for rec in self.ctx.store.list_cases(limit=100_000):
                t = rec.bindings.get(backend)
                if t:
                    for k in ("id", "number", "key"):
                        if t.get(k) is not None:
                            self._threads[(backend, str(t[k]))] = rec.id
        return self._threads.get(key)

    def _lock(self, case_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(case_id, threading.Lock())

    # -- one item ---------------------------------------------------------------------------------
    def ingest(self, case_id: str, item: HumanItem, *, via: str = "poll") -> Ingested:
        """Record `item` once (keyed on backend + the service's id for it), then act on what it says."""
        store = self.ctx.store
        if item.kind == "status" and store.get_case(case_id).status == CaseStatus.RESOLVED:
            # our own resolve() closing the thread comes back as a status event; so does a human closing
            # a thread of a case that is already resolved: neither is news
            return Ingested(case_id, item, duplicate=True, meaning="case already resolved")
        keys = self.keys(case_id, item)
        claimed: list[tuple[str, str]] = []
        for scope, key in keys:
            if not store.claim_action(scope, key, case_id):
                for s, k in claimed:
                    store.release_action(s, k)
                return Ingested(case_id, item, duplicate=True, meaning="already taken in")
            claimed.append((scope, key))
        try:
            with self._lock(case_id):
                human = self._record_human(case_id, item, via)
                for scope, key in keys:
                    store.link_action(scope, key, human.id)
                result = Ingested(case_id, item, entries=[human])
                self._act(result, human, via)
        except BaseException:
            for scope, key in claimed:
                store.release_action(scope, key)
            raise
        return result

    def keys(self, case_id: str, item: HumanItem) -> list[tuple[str, str]]:
        """The dedupe keys of an item: `(backend, the service's id)`, plus for PagerDuty notes a content
        key — its `incident.annotated` webhook carries no note id, so the same note read by polling
        (with its id) and by webhook (without) is matched on (case, author, text). The price: the same
        person writing the identical note twice in one incident is taken in once."""
        keys = [(item.backend, item.external_id)]
        backend = self.ctx.backends.get(item.backend)
        if backend is not None and backend.type == "pagerduty" and item.kind in ("note", "comment"):
            who = item.raw.get("user_id") or item.author.name
            digest = hashlib.sha256(item.text.strip().encode("utf-8")).hexdigest()[:32]
            keys.append((f"{item.backend}#text", f"{case_id}:{who}:{digest}"))
        return keys

    def _record_human(self, case_id: str, item: HumanItem, via: str) -> Entry:
        who, where = item.author.name, item.backend
        cmd = parse_command(item.text) if item.kind not in ("reaction", "status") else None
        if item.kind == "reaction":
            title = f"{who} reacted {'👍' if item.text == UP else '👎' if item.text == DOWN else item.text} on {where}"
        elif item.kind == "status":
            title = f"{who} {item.text} the thread on {where}"
        else:
            title = f"{who} on {where}: {_first_line(item.text) or '(empty comment)'}"
        body = item.text
        if self.settings.attribution:
            link = f" ({item.url})" if item.url else ""
            body = f"{body}\n\n— {who} on {where}{link}"
        mirrored = self.settings.mirror and item.kind not in ("reaction", "status")
        attrs: dict[str, Any] = {
            "external": {"backend": item.backend, "id": item.external_id, "url": item.url},
            "human": {"kind": item.kind, "command": cmd.name if cmd else None, "arg": cmd.arg if cmd else None,
                      "via": via, "at": item.at},
        }
        if not mirrored:
            attrs["deliver_to"] = []
        ref = item.in_reply_to if item.in_reply_to and self._in_case(case_id, item.in_reply_to) else None
        return self.ctx.case(case_id).record(EntryKind.NOTE, title, body, author=item.author, ref=ref, attrs=attrs)

    def _in_case(self, case_id: str, entry_id: str) -> bool:
        try:
            return self.ctx.store.get_entry(entry_id).case_id == case_id
        except Exception:
            return False

    # -- what it means ----------------------------------------------------------------------------
    def _act(self, res: Ingested, human: Entry, via: str) -> None:
        item = res.item
        if item.kind == "status":
            self._resolution(res, human, via)
            return
        if item.kind == "reaction":
            target = self._entry(res.case_id, item.in_reply_to)
            if target is None or item.text not in (UP, DOWN):
                res.meaning = "reaction recorded"
                return
            if target.kind == EntryKind.DECISION_REQUEST:
                self._decide(res, human, "approve" if item.text == UP else "reject", "", target, via)
            else:
                self._verdict(res, human, "verify" if item.text == UP else "dispute", "", target, via)
            return
        cmd = parse_command(item.text)
        if cmd is None or cmd.name == "note":
            res.meaning = "note"
            return
        if cmd.name is None:
            self._reply_typo(res, human, cmd)
            return
        if cmd.name in DECIDING:
            self._decide(res, human, cmd.name, cmd.arg, None, via)
        elif cmd.name in VERDICTS:
            self._verdict(res, human, cmd.name, cmd.arg, None, via)

    def _entry(self, case_id: str, entry_id: str | None) -> Entry | None:
        if not entry_id:
            return None
        try:
            e = self.ctx.store.get_entry(entry_id)
        except Exception:
            return None
        return e if e.case_id == case_id else None

    def _system(self, res: Ingested, human: Entry, title: str, body: str, *, only_origin: bool = False,
                **attrs: Any) -> Entry:
        if only_origin:
            attrs["deliver_to"] = [res.item.backend]
        entry = self.ctx.case(res.case_id).record(EntryKind.NOTE, title, body, author=SYSTEM, ref=human.id,
                                                  attrs=attrs)  # fmt: skip
        res.entries.append(entry)
        return entry

    def _source(self, human: Entry, item: HumanItem) -> dict[str, Any]:
        return {"entry": human.id, "backend": item.backend, "id": item.external_id, "url": item.url}

    def _explicit_target(self, case_id: str, arg: str) -> tuple[Entry | None, str]:
        """`/verify 01J…` or `/override 01J… do X`: an entry id of this case as the first word."""
        first, _, rest = arg.partition(" ")
        found = self._entry(case_id, first.strip()) if first else None
        return (found, rest.strip()) if found else (None, arg)

    def _pending_request(self, case_id: str) -> Entry | None:
        """The newest pending request; else the newest request (a late answer to it is a conflict)."""
        entries = self.ctx.store.entries(case_id, kinds=["decision-request", "decision"])
        decided = {e.ref for e in entries if e.kind == EntryKind.DECISION}
        requests = [e for e in entries if e.kind == EntryKind.DECISION_REQUEST]
        pending = [e for e in requests if e.id not in decided]
        return pending[-1] if pending else requests[-1] if requests else None

    def _decide(self, res: Ingested, human: Entry, command: str, arg: str, target: Entry | None, via: str) -> None:
        item, ctx = res.item, self.ctx
        outcome = DECIDING[command]
        explicit, arg = self._explicit_target(res.case_id, arg)
        target = target or explicit or self._pending_request(res.case_id)
        if target is None and command == "override":
            agents = [e for e in ctx.store.entries(res.case_id) if e.author.kind in ("primary", "partner")]
            target = agents[-1] if agents else None
        shown = f"`/{command}{' ' + arg if arg else ''}`"
        if item.kind == "reaction":
            shown = "👍" if command == "approve" else "👎"
        if target is None:
            res.meaning = "no pending decision"
            self._system(res, human, f"Understood {shown} from {item.author.name}: there is nothing to decide",
                         "This case has no pending decision request; the comment is recorded as a note.",
                         only_origin=True)  # fmt: skip
            return
        if command == "override" and not arg:
            res.meaning = "override without instead"
            self._system(res, human, f"Understood `/override` from {item.author.name}, but not what to do instead",
                         "Nothing was decided. Write `/override <what to do instead>`.", only_origin=True)
            return
        if ctx.store.get_case(res.case_id).status == CaseStatus.RESOLVED:
            res.meaning = "case already resolved"
            self._system(res, human, f"{shown} from {item.author.name} arrived after the case was resolved",
                         "The case is resolved; the answer is recorded as a note and decides nothing.",
                         late=True)  # fmt: skip
            return
        verdict = may_decide(self.settings, ctx.backends.get(item.backend), item)
        if not verdict.allowed:
            res.meaning = "not authorised"
            self._system(res, human, f"{item.author.name} may not decide: {shown} recorded as a note",
                         f"Rule: {verdict.rule}. Someone allowed to decide for this case must answer.",
                         unauthorised=True, rule=verdict.rule)  # fmt: skip
            return
        key = target.id
        if not ctx.store.claim_action("decision", key, res.case_id):
            first = ctx.store.action_entry("decision", key)
            prior = self._entry(res.case_id, first) if first else None
            stands = decision_of(prior) if prior else None
            res.meaning = "already decided"
            said = f"{stands.outcome} by {stands.decided_by}" if stands else "an earlier answer"
            self._system(res, human, f"Already decided ({said}); {shown} from {item.author.name} recorded",
                         f"The first authorised answer stands: {said}. This later answer does not change it.",
                         conflict=True, outcome_claimed=outcome)  # fmt: skip
            return
        attrs: dict[str, Any] = {"outcome": outcome, "decided_by": item.author.name, "rule": verdict.rule,
                                 "via": item.backend, "source": self._source(human, item)}
        if command == "override":
            attrs["instead"] = arg
        elif arg:
            attrs["reason"] = arg
        title = {"approved": "Approved", "rejected": "Rejected", "overridden": "Overridden"}[outcome]
        title += f" by {item.author.name}: {target.title[:150]}"
        body = (f"{item.author.name} answered {shown} on {item.backend} ({verdict.rule})."
                + (f"\n\nInstead: {arg}" if command == "override" else f"\n\nReason: {arg}" if arg else ""))
        decision = ctx.case(res.case_id).record(EntryKind.DECISION, title, body, author=item.author,
                                                ref=target.id, attrs=attrs)  # fmt: skip
        ctx.store.link_action("decision", key, decision.id)
        res.entries.append(decision)
        res.meaning = outcome

    def _verdict(self, res: Ingested, human: Entry, command: str, arg: str, target: Entry | None, via: str) -> None:
        item = res.item
        explicit, arg = self._explicit_target(res.case_id, arg)
        target = target or explicit
        if target is None:
            findings = self.ctx.store.entries(res.case_id, kinds=["finding"])
            target = findings[-1] if findings else None
        if target is None:
            res.meaning = "no finding"
            self._system(res, human, f"Understood `/{command}` from {item.author.name}: no finding to mark",
                         "This case has no finding yet; the comment is recorded as a note.", only_origin=True)
            return
        verdict = VERDICTS[command]
        attrs = {"verdict": verdict, "by": item.author.name, "via": item.backend, "source": self._source(human, item)}
        if arg:
            attrs["reason"] = arg
        # `sharedctx.search` reads a `verification` entry as "the remediation it refers to worked / did not",
        # and a verdict on anything else from an entry of another kind carrying `attrs.verdict`.
        kind = EntryKind.VERIFICATION if target.kind == EntryKind.REMEDIATION else EntryKind.NOTE
        entry = self.ctx.case(res.case_id).record(
            kind, f"{verdict.capitalize()} by {item.author.name}: {target.title[:150]}",
            f"{item.author.name} marked this {target.kind.value} {verdict} on {item.backend}."
            + (f"\n\nWhy: {arg}" if arg else ""), author=item.author, ref=target.id, attrs=attrs)  # fmt: skip
        res.entries.append(entry)
        res.meaning = verdict

    def _resolution(self, res: Ingested, human: Entry, via: str) -> None:
        item = res.item
        case = self.ctx.case(res.case_id)
        if case.status == CaseStatus.RESOLVED:
            res.meaning = "already resolved"
            return
        entry = case.record(
            EntryKind.RESOLUTION, f"Resolved by {item.author.name} on {item.backend}",
            f"{item.author.name} {item.text} the thread on {item.backend}" + (f" ({item.url})" if item.url else "")
            + ". Recorded as a human resolution.", author=item.author, ref=human.id,
            attrs={"human_resolution": True, "via": item.backend, "source": self._source(human, item)},
        )  # fmt: skip
        res.entries.append(entry)
        res.meaning = "human resolution"

    def _reply_typo(self, res: Ingested, human: Entry, cmd: Command) -> None:
        item = res.item
        if cmd.guess:
            title = f"Did you mean `/{cmd.guess}`? Nothing was decided"
            body = (f"I read `/{cmd.typed}` from {item.author.name}, which is not a command; it is recorded as a "
                    f"note. If you meant `/{cmd.guess}`, reply `/{cmd.guess}{' ' + cmd.arg if cmd.arg else ''}`.")
        else:
            title = f"`/{cmd.typed}` is not a command; recorded as a note"
            body = "Commands: " + ", ".join(f"`/{c}`" for c in COMMANDS) + ". " + INSTRUCTIONS
        res.meaning = f"typo:{cmd.typed}->{cmd.guess}"
        self._system(res, human, title, body, only_origin=True, understood=cmd.guess, typed=cmd.typed)

    def ingest_many(self, case_id: str, items: Iterable[HumanItem], *, via: str = "poll") -> list[Ingested]:
        return [self.ingest(case_id, item, via=via) for item in items]


# ---- polling ------------------------------------------------------------------------------------------
@dataclass
class PollStats:
    cases: int = 0
    reads: int = 0
    items: int = 0
    recorded: int = 0
    errors: int = 0


class Poller:
    """Reads every live case's threads back at `poll_interval` and takes new human items in.

    One cursor per (backend, case) in the store (`<backend>#humans`), so a restart continues where it
    left off. Connectors make the reads cheap where the service allows (GitHub: `If-None-Match`, and a
    304 does not count against the rate limit). Dedupe with webhooks is in `Humans.ingest`, so running
    both is safe. A failing backend is logged and retried at the next round; it never stops the others.
    """

    def __init__(self, ctx: SharedContext, humans: Humans | None = None, *, interval: float | None = None) -> None:
        self.ctx = ctx
        self.humans = humans or Humans(ctx)
        self.interval = interval or self.humans.settings.poll_interval
        self.stats = PollStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def live_cases(self) -> list[str]:
        keep = self.humans.settings.poll_resolved_for
        now = utcnow()
        out = []
        for rec in self.ctx.store.list_cases(limit=100_000):
            recent = rec.resolved_at is not None and (now - rec.resolved_at).total_seconds() < keep
            if rec.status != CaseStatus.RESOLVED or recent:
                out.append(rec.id)
        return out

    def poll_case(self, case_id: str) -> list[Ingested]:
        rec = self.ctx.store.get_case(case_id)
        done: list[Ingested] = []
        for name, bound in rec.bindings.items():
            backend = self.ctx.backends.get(name)
            if backend is None:
                continue
            key = f"{name}#humans"
            try:
                back = backend.read_back(ThreadRef.model_validate({"backend": name, **bound}),
                                         self.ctx.store.get_cursor(key, case_id))
            except BackendError as exc:
                self.stats.errors += 1
                log.warning("reading %s back for case %s failed: %s", name, case_id, exc)
                continue
            self.stats.reads += 1
            for item in back.humans:
                self.stats.items += 1
                got = self.humans.ingest(case_id, item, via="poll")
                self.stats.recorded += 0 if got.duplicate else 1
                done.append(got)
            if back.cursor is not None:
                self.ctx.store.set_cursor(key, case_id, back.cursor)
        self.stats.cases += 1
        return done

    def poll_once(self) -> list[Ingested]:
        done: list[Ingested] = []
        for case_id in self.live_cases():
            try:
                done += self.poll_case(case_id)
            except Exception:
                self.stats.errors += 1
                log.exception("polling case %s failed", case_id)
        return done

    # -- running it ---------------------------------------------------------------------------------
    def start(self) -> Poller:
        """Poll in a daemon thread (for `sharedctx worker`)."""
        def loop() -> None:
            while not self._stop.is_set():
                self.poll_once()
                self._stop.wait(self.interval)

        self._stop.clear()
        self._thread = threading.Thread(target=loop, name="sharedctx-humans-poller", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    async def run(self) -> None:
        """Poll from an event loop (for `sharedctx serve`) until cancelled; reads run in a thread."""
        while True:
            await asyncio.to_thread(self.poll_once)
            await asyncio.sleep(self.interval)


def parse_at(value: str) -> str:
    """A service's time as our one textual form (for `HumanItem.at`)."""
    try:
        return format_ts(parse_ts(value))
    except ValueError:
        return value
