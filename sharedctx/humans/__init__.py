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

Who may decide, what an answer means and the timeout policy are `sharedctx.decisions` (the one
definition): `[humans.allow] <backend> = [users]` (user names, ids or emails as the service reports them),
or the backend's own rule (`Authorizes`: on GitHub the commenter's repository permission, `write` or higher
by default, `decide_permission` in the backend's options). Anyone else's answer is recorded and decides
nothing; an agent's answer is refused outright.

The package, along its seams: `settings` (`[humans]`), `commands` (parsing what people type), `ingest`
(`Humans`: items -> entries, once), `poller` (`Poller`). Webhook verification is `sharedctx.webhooks`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..decisions import (
    DECIDING,
    INSTRUCTIONS,
    Decision,
    Outcome,
    Verdict,
    decision_of,
    may_decide,
    request_body,
    request_decision,
    wait_for_decision,
)
from ..decisions import get_decision as _get_decision
from .commands import COMMANDS, DOWN, UP, VERDICTS, Command, parse_command
from .ingest import Humans, Ingested
from .poller import Poller, PollStats, parse_at
from .settings import HumanSettings, WebhookSettings, human_settings

if TYPE_CHECKING:
    from ..context import SharedContext

__all__ = [
    "COMMANDS", "DECIDING", "DOWN", "INSTRUCTIONS", "UP", "VERDICTS", "Command", "Decision", "HumanSettings",
    "Humans", "Ingested", "Outcome", "PollStats", "Poller", "Verdict", "WebhookSettings", "decision_of",
    "get_decision", "human_settings", "may_decide", "parse_at", "parse_command", "request_body",
    "request_decision", "wait_for_decision",
]  # fmt: skip


def get_decision(ctx: SharedContext, request_id: str) -> Decision:
    """The state of a decision request (`sharedctx.decisions.get_decision` over `ctx`'s journal)."""
    return _get_decision(ctx.store, request_id)
