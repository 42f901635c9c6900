"""The tools of the shared-context MCP server: each resolves its caller, calls the Python API off the
event loop, and returns a typed view. No business logic lives here: cases and entries are `context/`,
scope and write policy `access.py`, decisions `decisions.py`, the handoff summary `handoff.py`, history
and similar cases `search`.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any, Literal

from mcp.server.transport_security import TransportSecuritySettings
from pydantic import Field

from ..access import Access, provenance, shown, trusted
from ..config import McpHttpMode
from ..context import SharedContext
from ..decisions import answer_for, request_body
from ..errors import InvalidEntry, PermissionDenied
from ..model import MAX_BODY_BYTES, MAX_TITLE_CHARS, Author, EntryKind, format_ts
from ..store.base import SearchFilters
from .identities import IdentityResolver
from .server import SharedContextMCP, caller, off_loop
from .views import (
    MAX_PAGE,
    UNTRUSTED_NOTE,
    CaseOut,
    DecisionOut,
    EvidenceIn,
    HandoffOut,
    InviteOut,
    KindName,
    RecordOut,
    SearchHit,
    SearchOut,
    SimilarOut,
    TimelineOut,
    case_out,
    decision_out,
    entry_out,
    record_out,
    similar_case,
)


def build_mcp_server(
    ctx: SharedContext,
    identity_resolver: IdentityResolver,
    *,
    access: Access | None = None,
    transport_security: TransportSecuritySettings | None = None,
    http_mode: McpHttpMode = "stream",
) -> SharedContextMCP:
    """The MCP server over `ctx`. `identity_resolver(request)` says who is calling (see module doc).

    `http_mode` only matters over Streamable HTTP: "json" makes the server stateless and answer each POST
    with one JSON body (the SDK's `stateless_http` + `json_response`); no tool here sends progress or asks
    the client anything, so the tools behave the same in both modes."""
    acc = access or Access(ctx.config, ctx.store)
    server = SharedContextMCP(
        ctx, acc, identity_resolver,
        name="sharedctx",
        instructions=(
            "sharedctx is the durable, append-only shared journal of an incident response. Start with "
            "find_case (or open_case), read get_timeline or handoff_summary, record what you learn with "
            "record_entry (one fact per entry, with evidence), and look for precedent with search_history "
            "and similar_cases. Entries cannot be edited: record a `correction` instead." + UNTRUSTED_NOTE
        ),
        log_level="WARNING",
        stateless_http=http_mode == "json",
        json_response=http_mode == "json",
        transport_security=transport_security,
    )  # fmt: skip

    # ---------------------------------------------------------------------------------- cases
    @server.tool(
        description="Open a case (an incident) and get its id, or get the already-open case with the same "
        "`fingerprint` (then created=false). Use a stable fingerprint such as the alert's fingerprint so "
        "repeated alerts land in one case. Only primary agents may open cases.",
        structured_output=True,
    )
    async def open_case(
        title: str = Field(description="short summary of what is wrong", min_length=1, max_length=MAX_TITLE_CHARS),
        service: str = Field("", max_length=200, description="affected service, e.g. 'checkout'"),
        severity: Literal["critical", "error", "warning", "info"] = Field("warning"),
        fingerprint: str | None = Field(None, max_length=500, description="dedup key, e.g. the alert fingerprint"),
    ) -> CaseOut:
        ident = caller()
        acc.check_primary(ident, "open cases")
        case = await off_loop(ctx.open_case, title, service=service, severity=severity, fingerprint=fingerprint)
        if case.created:  # attributable: the journal says who opened it (a policy without notes: skip)
            with contextlib.suppress(PermissionDenied):
                await off_loop(
                    acc.record, ident, case.id, EntryKind.NOTE, "Case opened",
                    f"Opened by {ident.author} through the MCP server.", ctx=ctx, attrs={"opened": True},
                )  # fmt: skip
        return case_out(await off_loop(lambda: case.info), created=case.created)

    @server.tool(
        description="Find a case by its id, by the fingerprint of its open case, or by an external reference: "
        "a GitHub issue URL or number, a PagerDuty incident id or URL, a Jira key, a ServiceNow number. "
        "Returns 404 if nothing matches.",
        structured_output=True,
    )
    async def find_case(
        ref: str = Field(min_length=1, max_length=2000, description="case id, fingerprint, or external reference"),
    ) -> CaseOut:
        ident = caller()
        # references are looked up redacted, as fingerprints are stored (and errors never echo a secret)
        case = await off_loop(lambda: ctx.find_case(server.redactor.redact(ref.strip()),
                                                    visible=lambda cid: acc.can_read(ident, cid)))
        acc.check_read(ident, case.id)
        return case_out(case.info)

    # --------------------------------------------------------------------------------- journal
    @server.tool(
        description="Append one immutable entry to a case's journal; it is delivered to the humans' tools "
        "(GitHub, PagerDuty, …) in the background. You are the author (from your credentials). Kinds: "
        "triage (first assessment), finding (a fact you established, with evidence), action (something you "
        "did), remediation (a change meant to fix it), verification (checked that a fix worked), note, "
        "handoff, correction (fixes an earlier entry: set `ref` to it), decision-request (prefer "
        "request_decision). Some kinds may be held for a human decision by your write policy: the answer "
        "then says held_for_decision=true and gives the decision request id. Secrets are redacted.",
        structured_output=True,
    )
    async def record_entry(
        case_id: str = Field(min_length=1, max_length=64, description="the case id"),
        kind: KindName = Field(description="what kind of entry this is"),
        title: str = Field(min_length=1, max_length=MAX_TITLE_CHARS, description="one line, the gist"),
        body: str = Field("", description=f"details, Markdown; at most {MAX_BODY_BYTES // 1024} KiB"),
        evidence: list[EvidenceIn] = Field(default_factory=list, max_length=100, description="what supports it"),
        ref: str | None = Field(None, max_length=64, description="id of an earlier entry this one refers to"),
        trace_id: str | None = Field(None, max_length=64, description="W3C trace id of your work, if any"),
        attrs: dict[str, Any] = Field(default_factory=dict, description="small structured extras"),
        status: Literal["mitigated", "resolved"] | None = Field(None, description="move the case forward"),
    ) -> RecordOut:
        ident = caller()
        entry, request = await off_loop(
            acc.record, ident, case_id, kind, title, body, ctx=ctx,
            evidence=[e.model_dump(exclude_none=True) for e in evidence], ref=ref, trace_id=trace_id,
            attrs=attrs, status=status,
        )  # fmt: skip
        return record_out(entry, request)

    @server.tool(
        description="Read a case's entries in order, a page at a time: entries with seq > `since`. Start with "
        "since=0, then pass the returned next_since while has_more is true. Optionally only some kinds."
        + UNTRUSTED_NOTE,
        structured_output=True,
    )
    async def get_timeline(
        case_id: str = Field(min_length=1, max_length=64),
        since: int = Field(0, ge=0, description="sequence number to read after (0 = from the start)"),
        kinds: list[KindName] | None = Field(None, description="only these kinds"),
        limit: int = Field(50, ge=1, le=MAX_PAGE, description="entries per page"),
    ) -> TimelineOut:
        ident = caller()
        await off_loop(acc.check_read, ident, case_id)
        rec = await off_loop(ctx.store.get_case, case_id)
        rows = await off_loop(ctx.store.entries, case_id, since_seq=since, kinds=kinds, limit=limit + 1)
        page = rows[:limit]
        return TimelineOut(case=case_out(rec), entries=[entry_out(e) for e in page],
                           next_since=page[-1].seq if page else since, has_more=len(rows) > limit)  # fmt: skip

    @server.tool(
        description="Search every case you may read: full-text `text` plus filters. Use it to find how "
        "something was handled before. Each hit links to its case (case_uri / case_id). `outcome` filters on "
        "how the case stands (resolved, mitigated, open)." + UNTRUSTED_NOTE,
        structured_output=True,
    )
    async def search_history(
        text: str = Field("", max_length=1000, description="words to look for; empty = filters only"),
        service: str | None = Field(None, max_length=200),
        kind: list[KindName] | None = Field(None, description="entry kinds"),
        author_kind: Literal["primary", "partner", "human", "system"] | None = None,
        since: datetime | None = Field(None, description="entries at or after this time (ISO 8601)"),
        until: datetime | None = Field(None, description="entries at or before this time (ISO 8601)"),
        outcome: Literal["open", "mitigated", "resolved"] | None = Field(None, description="case status"),
        limit: int = Field(10, ge=1, le=50),
    ) -> SearchOut:
        ident = caller()
        f = SearchFilters(service=service, kinds=list(kind) if kind else None, author_kind=author_kind,
                          since=since, until=until, case_status=outcome)  # fmt: skip
        # the same ranked history search as the CLI and the Python API (sharedctx.search)
        result = await off_loop(ctx.search, text, f, limit=limit if ident.role != "partner" else limit * 5)
        hits: list[SearchHit] = []
        for c in result.cases:
            if not await off_loop(acc.can_read, ident, c.case_id):
                continue
            for h in c.hits:
                who = Author.parse(h.author)
                hits.append(SearchHit(
                    case_id=c.case_id, case_uri=f"case://{c.case_id}", case_title=c.title, case_status=c.status,
                    service=c.service, entry_id=h.entry_id, seq=h.seq, kind=h.kind, ts=format_ts(h.ts),
                    author=h.author, provenance=provenance(who), trusted=trusted(who), title=shown(h.title, who),
                    snippet=shown(h.snippet, who), why=c.why,
                ))  # fmt: skip
            if len(hits) >= limit:
                break
        return SearchOut(hits=hits[:limit], notice=result.notice)

    @server.tool(
        description="Earlier cases that look like this one, and how they ended (the resolution). Use it early "
        "in an investigation to reuse what worked before." + UNTRUSTED_NOTE,
        structured_output=True,
    )
    async def similar_cases(
        case_id: str = Field(min_length=1, max_length=64),
        limit: int = Field(5, ge=1, le=20),
    ) -> SimilarOut:
        ident = caller()
        await off_loop(acc.check_read, ident, case_id)
        found = await off_loop(ctx.similar_cases, case_id, limit * 3)
        out = [similar_case(s) for s in found if await off_loop(acc.can_read, ident, s.case_id)][:limit]
        return SimilarOut(case_id=case_id, similar=out)

    # -------------------------------------------------------------------------------- decisions
    @server.tool(
        description="Ask the humans working the incident to decide something (e.g. approve a risky "
        "remediation). Records a decision-request entry that is posted where they work; returns its id. "
        "Then poll get_decision(request_id) — do not act on the question until it says decided.",
        structured_output=True,
    )
    async def request_decision(
        case_id: str = Field(min_length=1, max_length=64),
        question: str = Field(min_length=1, max_length=MAX_TITLE_CHARS, description="a yes/no or pick-one question"),
        options: list[str] = Field(default_factory=lambda: ["approve", "reject"], min_length=2, max_length=10),
        context: str = Field("", description="why you ask, what each option does, the risk"),
        ref: str | None = Field(None, max_length=64, description="id of the entry the decision is about"),
    ) -> DecisionOut:
        ident = caller()
        opts = [o.strip() for o in options if o.strip()]
        if len(set(opts)) < 2:
            raise InvalidEntry("a decision needs at least two distinct, non-empty options; nothing was recorded")
        body = request_body(question, opts, context, None, "default", None)  # tells people how to answer
        entry, _ = await off_loop(
            acc.record, ident, case_id, EntryKind.DECISION_REQUEST, question, body, ctx=ctx, ref=ref,
            attrs={"question": question, "options": opts, "status": "pending"},
        )  # fmt: skip
        return decision_out(entry, None)

    @server.tool(
        description="The answer to a decision request: status=pending until a human has decided, then the "
        "choice, whether it approves, and who decided. Only human answers count." + UNTRUSTED_NOTE,
        structured_output=True,
    )
    async def get_decision(
        request_id: str = Field(min_length=1, max_length=64, description="id returned by request_decision"),
    ) -> DecisionOut:
        ident = caller()
        request = await off_loop(ctx.store.get_entry, request_id)
        await off_loop(acc.check_read, ident, request.case_id)
        if request.kind != EntryKind.DECISION_REQUEST:
            raise InvalidEntry(f"entry {request_id} is a {request.kind.value}, not a decision-request")
        decision = await off_loop(answer_for, ctx.store, request)
        return decision_out(request, decision)

    # ------------------------------------------------------------------------------ wrapping up
    @server.tool(
        description="Resolve the case: records the resolution (what fixed it, how you verified) and closes "
        "the case and its threads in every backend. Only once the fix is verified.",
        structured_output=True,
    )
    async def resolve_case(
        case_id: str = Field(min_length=1, max_length=64),
        summary: str = Field(min_length=1, description="root cause, the fix, and how it was verified"),
        title: str = Field("Resolved", min_length=1, max_length=MAX_TITLE_CHARS),
    ) -> RecordOut:
        ident = caller()
        entry, request = await off_loop(
            acc.record, ident, case_id, EntryKind.RESOLUTION, title, summary, ctx=ctx, status="resolved"
        )
        return record_out(entry, request)

    @server.tool(
        description="A one-screen Markdown summary of a case for whoever takes over: status, alerts, latest "
        "findings, actions, pending decisions, resolution. Read this first when you join a case."
        + UNTRUSTED_NOTE,
        structured_output=True,
    )
    async def handoff_summary(case_id: str = Field(min_length=1, max_length=64)) -> HandoffOut:
        ident = caller()
        await off_loop(acc.check_read, ident, case_id)
        h = await off_loop(lambda: ctx.case(case_id).handoff())
        return HandoffOut(case_id=h.case_id, status=h.status, last_seq=h.last_seq, summary=h.text,
                          pending_decisions=h.pending_decisions)  # fmt: skip

    @server.tool(
        description="Let a partner agent read and write this case (primary agents only). The primary does "
        "this automatically when it calls a partner over the channel with the case id; call it yourself "
        "before pointing a partner at a case through MCP.",
        structured_output=True,
    )
    async def invite_partner(
        case_id: str = Field(min_length=1, max_length=64),
        partner: str = Field(min_length=1, max_length=200, description="the partner agent's configured name"),
    ) -> InviteOut:
        ident = caller()
        acc.check_primary(ident, "invite partners")
        entry = await off_loop(acc.invite, ctx, case_id, partner, ident.author)
        return InviteOut(case_id=case_id, partner=partner, entry_id=entry.id)

    # -------------------------------------------------------------------------------- resources
    @server.resource(
        "case://{case_id}",
        name="case",
        description="A case and its whole timeline as JSON (entries carry provenance; untrusted text is fenced).",
        mime_type="application/json",
    )
    async def case_resource(case_id: str) -> str:
        ident = caller()
        await off_loop(acc.check_read, ident, case_id)
        rec = await off_loop(ctx.store.get_case, case_id)
        entries = await off_loop(ctx.store.entries, case_id)
        # built like a tool result: redacted as structured data, then rendered (never the other way round)
        data = {"case": case_out(rec).model_dump(mode="json"),
                "entries": [entry_out(e).model_dump(mode="json") for e in entries]}
        return server.render(server.structured(data))

    return server
