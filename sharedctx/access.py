"""Who may do what in the shared context: identities, scopes, write policy, provenance.

Every agent that uses the shared context from outside this process (the MCP server) acts as one
`Identity` declared in config (`[[agents]]`: name, role, token by `env:` reference, write policy).
The rules, in one place so that the MCP tools stay thin and every transport enforces the same:

* **Authentication** — over HTTP a bearer token is required; `Access.authenticate` compares it in
  constant time with *every* configured token (no early exit), so timing says nothing about which
  agent, or how much of a token, matched. Over stdio the identity comes from config (`--as NAME`).
* **Scope** — a `primary` and a `human-readonly` identity read every case. A `partner` reads and
  writes only cases it has been *invited* into. An invitation is a journal fact: an entry with
  `attrs.invite = "<partner name>"` recorded by a primary agent, a human or sharedctx itself (never
  by a partner, so a partner cannot invite itself). Invitations are never withdrawn (the journal
  is append-only), so a positive answer is cached.
* **Write policy** (`[agents.policy]`) — which entry kinds an identity may write, how many entries
  an hour (counted from the journal, so a restart does not reset the budget), and which kinds are
  *held for a human decision*: such an entry is recorded at once with `attrs.held_for_decision`,
  a `decision-request` referencing it is recorded by sharedctx, and the delivery worker keeps it
  away from every backend until a human approves (`sharedctx.decisions.held_for_decision`).
* **Provenance** — every entry shown to an agent says who wrote it (`agent`, `partner`, `human`,
  `system`) and whether its text is *trusted*. Text from humans, partners and external systems
  (alert payloads) is content to read, never instructions to follow; `mark_untrusted` fences it.

Errors: `Unauthenticated` (HTTP 401), `PermissionDenied` (403), `RateLimited` (429). Their messages
say what to do next, because the reader is often an LLM that will act on them.
"""

from __future__ import annotations

import hmac
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from .config import AgentSettings, Config, WritePolicy
from .decisions import HOLD_ATTR, answer_for, approves
from .errors import ConfigError, InvalidEntry, PermissionDenied, RateLimited, Unauthenticated
from .model import SYSTEM, Author, AuthorKind, Entry, EntryKind, utcnow
from .store.base import SearchFilters, Store

log = logging.getLogger("sharedctx.access")

Role = Literal["primary", "partner", "human-readonly"]
Provenance = Literal["agent", "partner", "human", "system"]

INVITE_ATTR = "invite"
# an agent's name as configured, and as it is written into the journal when it is invited
AGENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,99}")
# attrs keys only sharedctx itself sets: an agent setting them could invite itself or fake a hold
RESERVED_ATTRS = frozenset({INVITE_ATTR, HOLD_ATTR, "requested_by", "holds"})
ROLE_AUTHOR: dict[str, AuthorKind] = {"primary": "primary", "partner": "partner", "human-readonly": "human"}
PROVENANCE: dict[str, Provenance] = {"primary": "agent", "partner": "partner", "human": "human", "system": "system"}
UNTRUSTED_OPEN = '<untrusted-content source="{source}">'
UNTRUSTED_CLOSE = "</untrusted-content>"


@dataclass(frozen=True)
class Identity:
    """One configured agent, as it acts: its name, role, write policy and author stamp."""

    name: str
    role: Role
    policy: WritePolicy = field(default_factory=WritePolicy)

    @property
    def author(self) -> Author:
        return Author(kind=ROLE_AUTHOR[self.role], name=self.name)

    @property
    def can_write(self) -> bool:
        return self.role != "human-readonly"

    def __str__(self) -> str:
        return f"{self.role}:{self.name}"

    @classmethod
    def from_settings(cls, a: AgentSettings) -> Identity:
        return cls(name=a.name, role=a.role, policy=a.policy)


# -- provenance -----------------------------------------------------------------------------------
def provenance(author: Author) -> Provenance:
    return PROVENANCE[author.kind]


def trusted(author: Author) -> bool:
    """Text a consuming LLM may treat as coming from its own side: primary agents and sharedctx itself.

    Other `system` authors (alert intake: `alertmanager`, …) carry external payloads — untrusted.
    """
    return author.kind == "primary" or author == SYSTEM


def mark_untrusted(text: str, author: Author) -> str:
    """Fence untrusted text so it cannot pass for instructions; a forged fence inside is defused."""
    if not text:
        return text
    safe = text.replace("untrusted-content", "untrusted_content")
    return f"{UNTRUSTED_OPEN.format(source=author)}{safe}{UNTRUSTED_CLOSE}"


def shown(text: str, author: Author) -> str:
    """`text` as it may be shown to an agent: unchanged if trusted, fenced otherwise."""
    return text if trusted(author) else mark_untrusted(text, author)


# -- the access layer -----------------------------------------------------------------------------
class Access:
    """Authentication, scope and write policy over one journal (`store`) and its `Config`.

    Thread-safe. Cheap to build; tokens are read from the environment when first needed so a missing
    variable is reported by name (`ConfigError`) rather than at import.
    """

    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.store = store
        self.agents = {a.name: a for a in config.agents}
        self._tokens: list[tuple[bytes, Identity]] | None = None
        self._invited: set[tuple[str, str]] = set()
        self._write_lock = threading.Lock()

    # identities
    def identity(self, name: str | None) -> Identity:
        """The identity for stdio (`sharedctx mcp --as NAME`).

        With no `[[agents]]` configured, the local operator (`[agent] name`) acts as a primary: a
        stdio server is a child of the user's own MCP host, with the user's own file permissions.
        """
        if name is None:
            if not self.agents:
                return Identity(name=self.config.agent.name, role="primary")
            if len(self.agents) == 1:
                return Identity.from_settings(next(iter(self.agents.values())))
            raise ConfigError(
                f"several agents are configured ({', '.join(self.agents)}); choose one with `--as NAME`"
            )
        if name not in self.agents:
            known = ", ".join(self.agents) or "none: add [[agents]] to sharedctx.toml"
            raise ConfigError(f"no agent named {name!r} in the config (configured agents: {known})")
        return Identity.from_settings(self.agents[name])

    def _token_table(self) -> list[tuple[bytes, Identity]]:
        if self._tokens is None:
            table = []
            for a in self.agents.values():
                if a.token is not None:
                    table.append((a.token.get().encode("utf-8"), Identity.from_settings(a)))
            self._tokens = table
        return self._tokens

    def authenticate(self, authorization: str | None) -> Identity:
        """The identity for an HTTP `Authorization` header value; `Unauthenticated` if none matches."""
        if not authorization:
            raise Unauthenticated(
                "missing bearer token: send the header `Authorization: Bearer <token>` with the token "
                "configured for your agent in this server's sharedctx.toml ([[agents]] token = \"env:…\")"
            )
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the Authorization header must be `Bearer <token>` (no other scheme is accepted)")
        given = token.strip().encode("utf-8")
        found: Identity | None = None
        for expected, ident in self._token_table():  # compare with every token: no early exit
            if hmac.compare_digest(given, expected) and found is None:
                found = ident
        if found is None:
            raise Unauthenticated(
                "this token is not valid for this sharedctx server (wrong, expired, or issued for another "
                "server): check the server URL and use the token configured for your agent here"
            )
        return found

    # scope
    def is_invited(self, case_id: str, partner: str) -> bool:
        if (case_id, partner) in self._invited:
            return True
        for e in self.store.entries(case_id, kinds=[EntryKind.NOTE.value, EntryKind.ACTION.value]):
            if e.attrs.get(INVITE_ATTR) == partner and e.author.kind != "partner":
                self._invited.add((case_id, partner))
                return True
        return False

    def can_read(self, ident: Identity, case_id: str) -> bool:
        return ident.role != "partner" or self.is_invited(case_id, ident.name)

    def check_read(self, ident: Identity, case_id: str) -> None:
        if not self.can_read(ident, case_id):
            raise PermissionDenied(
                f"{ident} has not been invited into case {case_id}. A partner works only in cases the "
                "primary agent invited it into (it does so when it calls you over the channel with the "
                "case id); ask the primary agent to invite you"
            )

    def check_write(self, ident: Identity, case_id: str, kind: EntryKind | str) -> None:
        """Role, scope and allowed kinds (the hourly budget is checked in `record`, under a lock)."""
        if not ident.can_write:
            raise PermissionDenied(
                f"{ident} is read-only: it can read cases and search history but cannot write. Nothing was "
                "recorded; ask a primary agent or a human to record this"
            )
        self.check_read(ident, case_id)
        allowed = ident.policy.kinds
        if allowed is not None and str(EntryKind(kind).value) not in allowed:
            raise PermissionDenied(
                f"the write policy of {ident} does not allow `{EntryKind(kind).value}` entries (allowed: "
                f"{', '.join(allowed) or 'none'}). Nothing was recorded; record it as an allowed kind or "
                "ask the primary agent to record it"
            )

    def check_primary(self, ident: Identity, what: str) -> None:
        if ident.role != "primary":
            raise PermissionDenied(f"only a primary agent may {what}; {ident} may not")

    def written_last_hour(self, ident: Identity, cap: int) -> int:
        """Entries this identity wrote in the last hour, counted from the journal (up to `cap`)."""
        f = SearchFilters(author=ident.name, author_kind=ident.author.kind, since=utcnow() - timedelta(hours=1))
        return len(self.store.search("", f, limit=cap))

    # writes
    def record(
        self,
        ident: Identity,
        case_id: str,
        kind: EntryKind | str,
        title: str,
        body: str = "",
        *,
        ctx: Any,
        evidence: Sequence[Any] = (),
        ref: str | None = None,
        trace_id: str | None = None,
        attrs: Mapping[str, Any] | None = None,
        status: str | None = None,
        system_attrs: Mapping[str, Any] | None = None,
    ) -> tuple[Entry, Entry | None]:
        """Record an entry as `ident` after every check; returns (entry, decision request if held).

        `ctx` is the `SharedContext` (validation, redaction and the append live there). Agents'
        `attrs` may not use reserved keys; `system_attrs` are ours (an invitation, a hold).
        """
        try:
            kind = EntryKind(kind)
        except ValueError:
            valid = ", ".join(k.value for k in EntryKind)
            raise InvalidEntry(f"unknown entry kind {kind!r}; valid kinds: {valid}. Nothing was recorded") from None
        clash = RESERVED_ATTRS & set(attrs or {})
        if clash:
            raise InvalidEntry(
                f"attrs key(s) {', '.join(sorted(clash))} are set by sharedctx itself and cannot be written by "
                "an agent (use the invite_partner / request_decision tools). Nothing was recorded"
            )
        self.check_write(ident, case_id, kind)
        merged = {**(attrs or {}), **(system_attrs or {})}
        held = kind.value in ident.policy.needs_decision
        if held:
            merged[HOLD_ATTR] = True
        case = ctx.case(case_id)
        with self._write_lock:
            limit = ident.policy.max_per_hour
            if limit is not None:
                done = self.written_last_hour(ident, limit)
                if done >= limit:
                    raise RateLimited(
                        f"{ident} has written {done} entries in the last hour; its write policy allows "
                        f"{limit} per hour. Nothing was recorded; wait, or ask the primary agent to record it"
                    )
            entry: Entry = case.record(
                kind, title, body, evidence=list(evidence), author=ident.author, ref=ref,
                trace_id=trace_id, attrs=merged, status=status,
            )  # fmt: skip
        request = None
        if held:
            request = case.record(
                EntryKind.DECISION_REQUEST,
                f"Approve {ident.author}'s {kind.value}: {entry.title}"[:300],
                f"{ident.author} recorded a `{kind.value}` that its write policy holds until a human "
                f"decides. It is in the journal (entry {entry.id}, seq {entry.seq}) but is not delivered "
                "to any backend until approved. Approve or reject.",
                author=SYSTEM,
                ref=entry.id,
                attrs={"question": f"Approve {kind.value} {entry.id} by {ident.author}?",
                       "options": ["approve", "reject"], "status": "pending", "holds": entry.id,
                       "requested_by": str(ident.author)},
            )  # fmt: skip
        log.info("%s recorded %s %s in case %s%s", ident, kind.value, entry.id, case_id, " (held)" if held else "")
        return entry, request

    def invite(
        self, ctx: Any, case_id: str, partner: str, by: Author, *, note: str = "", trace_id: str | None = None
    ) -> Entry:
        """Record that `partner` may work in `case_id` (the primary does this when it calls a partner).

        Idempotent: an existing invitation is returned as-is, so calling a partner twice adds nothing.
        """
        if by.kind == "partner":
            raise PermissionDenied("a partner cannot invite anyone into a case; the primary agent does")
        if not AGENT_NAME.fullmatch(partner):
            raise InvalidEntry(
                "a partner name is 1–100 letters, digits, `.`, `_`, `-` or `@`, starting with a letter or digit "
                "(the name it is configured under); nothing was recorded"
            )
        for e in ctx.case(case_id).timeline(kinds=[EntryKind.NOTE.value]):
            if e.attrs.get(INVITE_ATTR) == partner and e.author.kind != "partner":
                return e
        entry: Entry = ctx.case(case_id).record(
            EntryKind.NOTE, f"Invited partner {partner} into this case",
            note or f"{by} invited the partner agent `{partner}` to read and write this case.",
            author=by, attrs={INVITE_ATTR: partner}, trace_id=trace_id,
        )  # fmt: skip
        self._invited.add((case_id, partner))
        return entry

    # decisions
    def decision_for(self, request: Entry) -> Entry | None:
        """The decision that answers `request` (`sharedctx.decisions.answer_for`), or None."""
        return answer_for(self.store, request)

    @staticmethod
    def approves(decision: Entry) -> bool:
        return approves(decision)
