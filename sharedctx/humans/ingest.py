"""Taking people's actions in: each `HumanItem` (from a webhook or the poller) becomes journal entries, once.

A comment becomes a `note` by `human:<name>` (mirrored to the case's other backends, never echoed back);
what it says is then acted on: a decision answer (`sharedctx.decisions` says who may give one and what it
means), a verdict on a finding, a human resolution, or a polite reply to a typo.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..backends.base import HumanItem
from ..decisions import DECIDING, INSTRUCTIONS, answer_for, decided_requests, decision_of, may_decide
from ..model import SYSTEM, CaseStatus, Entry, EntryKind, parse_ts
from .commands import COMMANDS, DOWN, UP, VERDICTS, Command, parse_command
from .settings import HumanSettings, human_settings

if TYPE_CHECKING:
    from ..context import SharedContext

log = logging.getLogger("sharedctx.humans")


# how much later than a person's comment (by the service's clock) a request may be recorded and still be
# what a bare `/approve` answers: whole-second timestamps plus ordinary clock drift
CLOCK_SLACK = timedelta(seconds=2)


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

    # -- which case -------------------------------------------------------------------------------
    def case_for(self, backend: str, thread_id: str, scope: str | None = None, home: str | None = None) -> str | None:
        """The case bound to a backend thread (issue number, incident id, Jira key...) in `scope` (the repo or
        channel the event came from; `home`: where the backend takes a binding without one to live; see
        `Store.case_of_thread`): one lookup in the store's bindings index per webhook item, hit or miss,
        however many cases the journal holds. Not cached: a rebinding is seen at once, and the lookup costs
        less than the entry it leads to."""
        return self.ctx.store.case_of_thread(backend, str(thread_id), scope, home)

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

    def _pending_request(self, case_id: str, said_at: str | None = None) -> Entry | None:
        """The newest pending request; else the newest request (a late answer to it is a conflict).

        Only requests recorded before the person wrote (`said_at`, the service's time for the comment): a
        bare `/approve` answers what they could have read. Otherwise an agent that records a second request
        between the comment and the poll that reads it (up to a poll interval) has that approved instead.
        """
        entries = self.ctx.store.entries(case_id, kinds=["decision-request", "decision"])
        decided = decided_requests(entries)
        requests = [e for e in entries if e.kind == EntryKind.DECISION_REQUEST]
        if said_at:
            try:
                when = parse_ts(said_at)
            except ValueError:
                when = None
            if when is not None:  # services give whole seconds and their clocks drift a little
                requests = [e for e in requests if e.ts <= when + CLOCK_SLACK]
        pending = [e for e in requests if e.id not in decided]
        return pending[-1] if pending else requests[-1] if requests else None

    def _decide(self, res: Ingested, human: Entry, command: str, arg: str, target: Entry | None, via: str) -> None:
        item, ctx = res.item, self.ctx
        outcome = DECIDING[command]
        explicit, arg = self._explicit_target(res.case_id, arg)
        target = target or explicit or self._pending_request(res.case_id, item.at)
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
        verdict = may_decide(self.settings.allow, ctx.backends.get(item.backend), item)
        if not verdict.allowed:
            res.meaning = "not authorised"
            self._system(res, human, f"{item.author.name} may not decide: {shown} recorded as a note",
                         f"Rule: {verdict.rule}. Someone allowed to decide for this case must answer.",
                         unauthorised=True, rule=verdict.rule)  # fmt: skip
            return
        key = target.id
        # an answer recorded another way (the Python API, the CLI) stands too: it is first by sequence
        answered = answer_for(ctx.store, target) if target.kind == EntryKind.DECISION_REQUEST else None
        if answered is not None or not ctx.store.claim_action("decision", key, res.case_id):
            first = answered.id if answered is not None else ctx.store.action_entry("decision", key)
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
