"""The one definition of a decision request, an answer, who may answer, and the timeout policy.

Before this module, "is this request approved?" was computed in four places (the delivery worker's
holds, `humans.get_decision`, the MCP server and the access layer), and they disagreed about who
counts: a partner recording a `decision` through MCP made `humans.get_decision` report "approved".
Now every reader asks this module, and the promise "only an authorised person decides" rests on two
checks that cannot drift apart because they share one rule (`answer_refusal`):

* **Writing** — `check_answer(draft)` runs in `SharedContext._record`, the one place every entry is
  recorded from (Python API, CLI, MCP, webhooks, poller). A `decision` whose author is an agent
  (primary, partner, or a system author other than sharedctx's own timeout) raises `PermissionDenied`
  and nothing is recorded.
* **Reading** — `counts(entry)` is applied by every reader (`answer_for`, `get_decision`,
  `held_for_decision`, `decided_requests`), so a decision row that got past the writer anyway (written
  straight to the store, or recorded by an older version) is ignored: it can never approve.

Who may answer from a backend (`may_decide`): a person on the `[humans.allow]` list for that backend,
or whom the backend itself authorises (`backends.base.Authorizes`: GitHub's repository permission).

The entry conventions:

`decision-request` — attrs = {"question", "options", "status": "pending", "timeout", "on_timeout",
    "default", "deadline"}. `status` stays "pending" forever (entries are immutable): whether a request is
    still pending is whether a counting `decision` references it.
`decision` — ref = the request, attrs = {"outcome": approved | rejected | overridden | timeout,
    "decided_by", "rule", "instead"?, "reason"?, "choice"?, "via", "source"}. The first counting answer
    (by sequence number) is *the* answer; later ones change nothing.
`held_for_decision` (attr on any entry) — recorded at once, delivered to no backend until a human
    approves a `decision-request` whose ref is that entry; any other answer declines it for good.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from .backends.base import Authorizes, HumanItem
from .errors import BackendError, InvalidEntry, PermissionDenied
from .model import SYSTEM, Author, Entry, EntryDraft, EntryKind, format_ts, utcnow

if TYPE_CHECKING:
    from .backends.base import Backend
    from .context import Case, SharedContext
    from .humans import HumanSettings
    from .store.base import Store

Outcome = Literal["approved", "rejected", "overridden", "timeout"]
HOLD_ATTR = "held_for_decision"
TIMEOUT_RULE = "timeout:default"
APPROVE_WORDS = frozenset({"approve", "approved", "yes"})
DECIDING: dict[str, Outcome] = {"approve": "approved", "reject": "rejected", "override": "overridden"}
INSTRUCTIONS = (
    "Reply `/approve`, `/reject <reason>`, `/override <what to do instead>`, or react 👍 / 👎 "
    "(GitHub, Matrix, Slack). Only people allowed to decide for this case decide; anything else is recorded as a note."
)


# ---- who may answer -------------------------------------------------------------------------------
def answer_refusal(author: Author, attrs: Mapping[str, Any]) -> str | None:
    """Why `author` may not record a `decision` with these attrs; None when it may.

    A person may (which person, and on whose authority, was settled before recording: `may_decide` for
    answers read back from a backend, the operator's own hand for the Python API and CLI). sharedctx may
    record exactly one kind of decision itself: the timeout policy's. Every agent is refused.
    """
    if author.kind == "human":
        return None
    if author == SYSTEM and attrs.get("outcome") == "timeout" and attrs.get("rule") == TIMEOUT_RULE:
        return None
    return (
        f"only a person can decide: {author} is {'an agent' if author.kind != 'system' else 'not a person'}, "
        "and a decision request is answered by an authorised human in the tools where the case is worked "
        "(`/approve`, `/reject`, `/override`, or 👍/👎). Nothing was recorded. Record your view as a `note` "
        "or a `finding` instead"
    )


def check_answer(draft: EntryDraft) -> None:
    """The write-side choke point (called by `SharedContext._record`): refuse an agent's `decision`."""
    if draft.kind != EntryKind.DECISION:
        return
    why = answer_refusal(draft.author, draft.attrs)
    if why is not None:
        raise PermissionDenied(why)


def counts(entry: Entry) -> bool:
    """The read-side twin of `check_answer`: does this `decision` entry answer anything at all?"""
    return entry.kind == EntryKind.DECISION and answer_refusal(entry.author, entry.attrs) is None


@dataclass(frozen=True)
class Verdict:
    """Whether a person may decide, and the rule that says so (recorded in the `decision` entry)."""

    allowed: bool
    rule: str


def may_decide(allow: Mapping[str, Sequence[str]], backend: Backend | None, item: HumanItem) -> Verdict:
    """Whether the person behind `item` may answer a decision request read back from `item.backend`.

    The `[humans.allow]` list for that backend decides first (names, ids or emails, case-insensitive);
    then the backend's own opinion when it has one (`Authorizes`, e.g. GitHub's repository permission).
    A backend with neither lets nobody decide: silence is not consent.
    """
    if item.author.kind != "human":
        return Verdict(False, f"{item.author} is not a person")
    name = item.author.name
    # A display name is whatever the person typed into their profile: anyone can call themselves
    # "Alice Smith", or "PALICE1" (Alice's id). When the backend says who it is (id, email, login), only
    # that counts; the name is matched only for backends that report nothing else (ServiceNow user names).
    ids = {str(item.raw.get(k) or "").strip().lower() for k in ("user_id", "email", "login")} - {""}
    if not ids:
        ids = {name.strip().lower()} - {""}
    listed = [a.lower() for a in allow.get(item.backend, [])]
    if any(a in ids for a in listed):
        return Verdict(True, f"allow:{item.backend}")
    if backend is not None and isinstance(backend, Authorizes):
        try:
            said = backend.authorize(item)
        except BackendError as exc:
            return Verdict(False, f"{backend.type}: could not check {name}'s permission ({exc})")
        if said is not None:
            return Verdict(*said)
    if not listed:
        return Verdict(False, f"allow:{item.backend} (no one is on the allow-list for this backend)")
    return Verdict(False, f"allow:{item.backend} ({name} is not on it)")


# ---- what an answer means ---------------------------------------------------------------------------
def approves(decision: Entry) -> bool:
    """Whether a (counting) decision lets the agent go ahead as proposed.

    `outcome` is what the humans path and the timeout policy record; a decision written by hand through
    the Python API may say `approved: true/false` or `choice: "approve"` instead.
    """
    a = decision.attrs
    if isinstance(a.get("approved"), bool):
        return bool(a["approved"])
    outcome = str(a.get("outcome") or "").strip().lower()
    choice = str(a.get("choice") or "").strip().lower()
    if outcome == "timeout":
        return choice in APPROVE_WORDS
    if outcome:
        return outcome in APPROVE_WORDS
    return choice in APPROVE_WORDS


@dataclass
class Decision:
    """What a decision request came to: `status` "pending" until a counting `decision` references it."""

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
        """True when the agent may go ahead as proposed (see `approves`)."""
        return self.status == "decided" and self.entry is not None and approves(self.entry)

    def to_json(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "status": self.status, "outcome": self.outcome,
                "decided_by": self.decided_by, "rule": self.rule, "instead": self.instead, "reason": self.reason,
                "choice": self.choice, "escalated": self.escalated,
                "decision_entry": self.entry.id if self.entry else None}  # fmt: skip


def decision_of(entry: Entry) -> Decision:
    a = entry.attrs
    return Decision(request_id=entry.ref or "", status="decided", outcome=a.get("outcome"),
                    decided_by=a.get("decided_by") or str(entry.author), rule=a.get("rule"),
                    instead=a.get("instead"), reason=a.get("reason"), choice=a.get("choice"),
                    entry=entry)  # fmt: skip


# ---- reading the journal ----------------------------------------------------------------------------
def answer_for(store: Store, request: Entry) -> Entry | None:
    """The decision that answers `request`: the first counting one by sequence number, or None."""
    for e in store.entries(request.case_id, since_seq=request.seq, kinds=[EntryKind.DECISION.value]):
        if e.ref == request.id and counts(e):
            return e
    return None


def decided_requests(entries: Iterable[Entry]) -> set[str]:
    """Ids of the requests among `entries`' references that a counting decision answers."""
    return {e.ref for e in entries if e.ref and counts(e)}


def pending_requests(entries: Sequence[Entry]) -> list[Entry]:
    """The decision requests in `entries` (one case's timeline) that no counting decision answers."""
    decided = decided_requests(entries)
    return [e for e in entries if e.kind == EntryKind.DECISION_REQUEST and e.id not in decided]


def request_entry(store: Store, request_id: str) -> Entry:
    req = store.get_entry(request_id)
    if req.kind != EntryKind.DECISION_REQUEST:
        raise InvalidEntry(f"entry {request_id} is a {req.kind.value}, not a decision-request")
    return req


def get_decision(store: Store, request_id: str) -> Decision:
    """The state of a decision request, from the journal alone (Python API and MCP answer this)."""
    req = request_entry(store, request_id)
    escalated = False
    for e in store.entries(req.case_id, since_seq=req.seq, kinds=["decision", "note"]):
        if e.ref != req.id:
            continue
        if e.kind == EntryKind.DECISION:
            if counts(e):
                return decision_of(e)
            continue
        escalated = escalated or bool(e.attrs.get("escalated") and e.author == SYSTEM)
    return Decision(request_id=req.id, escalated=escalated)


# ---- holds (the delivery worker asks) ---------------------------------------------------------------
class Hold(NamedTuple):
    """Why an entry is not delivered yet; `final` means never (a person declined it)."""

    reason: str
    final: bool = False


def held_for_decision(store: Store, entry: Entry) -> Hold | None:
    """None to deliver `entry` now, else why not. The worker's default hold check (see `hold_state`)."""
    if not entry.attrs.get(HOLD_ATTR):
        return None
    return hold_state(store.entries(entry.case_id, kinds=[EntryKind.DECISION_REQUEST.value,
                                                          EntryKind.DECISION.value]), entry)  # fmt: skip


def hold_state(timeline: Sequence[Entry], entry: Entry) -> Hold | None:
    """Whether `entry` is still held, given its case's entries (at least its requests and decisions).

    An entry recorded with `attrs.held_for_decision` is delivered once a counting decision approves a
    `decision-request` whose ref is the entry; any other counting answer (reject, override, a timeout
    taking "reject") sends it to dead letters as declined. The first counting answer wins.
    """
    if not entry.attrs.get(HOLD_ATTR):
        return None
    # Only a request sharedctx (or a person) asked can release a hold: an agent's own `request_decision`
    # with `ref` = its held entry would have a person's 👍 to some harmless question release it.
    requests = {e.id for e in timeline if e.kind == EntryKind.DECISION_REQUEST and e.ref == entry.id
                and e.author.kind in ("system", "human")}
    answers = [e for e in timeline if e.ref in requests and counts(e)]
    if not answers:
        return Hold(f"held until a human answers decision request {', '.join(sorted(requests)) or '(none yet)'}")
    first = min(answers, key=lambda d: d.seq)
    if approves(first):
        return None
    return Hold(f"declined by {first.author} in decision {first.id}", final=True)


# ---- asking, waiting, and the timeout policy --------------------------------------------------------
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


def _settings(ctx: SharedContext) -> HumanSettings:
    from .humans import human_settings  # humans imports this module: resolve at call time

    return human_settings(ctx.config)


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
    s = _settings(case.ctx)
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
    """Wait for the decision that answers `request`; on timeout apply the policy (see above)."""
    import asyncio  # here: `sharedctx.context` imports this module, and a CLI command need not load asyncio

    end = time.monotonic() + timeout if timeout else None
    while True:
        found = await asyncio.to_thread(get_decision, ctx.store, request.id)
        if found.status == "decided":
            return found
        if end is not None and time.monotonic() >= end:
            return await asyncio.to_thread(time_out, ctx, request, on_timeout, default)
        await asyncio.sleep(interval if end is None else max(0.0, min(interval, end - time.monotonic())))


def time_out(ctx: SharedContext, request: Entry, policy: str, default: str | None) -> Decision:
    """Apply the timeout policy to an unanswered request: escalate, or take the default."""
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
        return get_decision(ctx.store, request.id)  # an answer landed in the same instant: it wins
    entry = case.record(
        EntryKind.DECISION, f"Timed out: took the default `{default}`",
        f"Nobody answered “{request.title}” in time; following the configured policy, sharedctx took "
        f"the default `{default}`.",
        author=SYSTEM, ref=request.id,
        attrs={"outcome": "timeout", "decided_by": SYSTEM.name, "rule": TIMEOUT_RULE, "choice": default},
    )  # fmt: skip
    ctx.store.link_action("decision", request.id, entry.id)
    return decision_of(entry)
