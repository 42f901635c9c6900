"""Only an authorised person decides: every way an agent might answer a decision request, tried.

The promise is checked on its *effect*, through every reader of "is this request decided?" at once (the
Python API, the MCP `get_decision` and `handoff_summary` tools, the delivery worker's hold, the access
layer), so a reader that drifts from `sharedctx.decisions` fails here too.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sharedctx.access import Access
from sharedctx.cli import app
from sharedctx.context import SharedContext
from sharedctx.decisions import get_decision, held_for_decision
from sharedctx.errors import InvalidEntry, PermissionDenied
from sharedctx.model import SYSTEM, Author, Entry, EntryDraft, EntryKind
from sharedctx.testing import FakeBackend

from .conftest import all_entries, call, refused, session_as, write_config

pytestmark = pytest.mark.anyio

AGENT_AUTHORS = [
    Author(kind="primary", name="lead"),
    Author(kind="partner", name="telemetry"),
    Author(kind="system", name="alertmanager"),
    SYSTEM,  # sharedctx itself may record only the timeout policy's decision
]
# every way a decision entry can say "approved" (the readers accept each from a person)
APPROVING_ATTRS: list[dict[str, Any]] = [
    {"outcome": "approved"},
    {"approved": True},
    {"choice": "approve"},
    {"choice": "yes"},
    {"outcome": "approved", "decided_by": "alice", "rule": "allow:github"},
    {"outcome": "timeout", "choice": "approve", "rule": "timeout:not-the-policy"},
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def held_request(ctx: SharedContext) -> tuple[str, str, str]:
    """A case where the partner's remediation is held: (case id, held entry id, decision request id)."""
    async with session_as(ctx, "lead") as lead:
        case = await call(lead, "open_case", title="checkout 5xx")
        await call(lead, "invite_partner", case_id=case["id"], partner="telemetry")
    async with session_as(ctx, "telemetry") as partner:
        out = await call(partner, "record_entry", case_id=case["id"], kind="remediation", title="restart pod-7")
    return case["id"], out["entry"]["id"], out["decision_request_id"]


async def decided_anywhere(ctx: SharedContext, case_id: str, held_id: str, request_id: str) -> list[str]:
    """Every reader's view; the names of those that consider the request decided (should be none)."""
    said: list[str] = []
    if get_decision(ctx.store, request_id).status != "pending":
        said.append("decisions.get_decision")
    from sharedctx.humans import get_decision as humans_get_decision

    if humans_get_decision(ctx, request_id).status != "pending":
        said.append("humans.get_decision")
    if held_for_decision(ctx.store, ctx.store.get_entry(held_id)) is None:
        said.append("worker hold released")
    if Access(ctx.config, ctx.store).decision_for(ctx.store.get_entry(request_id)) is not None:
        said.append("Access.decision_for")
    async with session_as(ctx, "lead") as lead:
        mcp = await call(lead, "get_decision", request_id=request_id)
        summary = await call(lead, "handoff_summary", case_id=case_id)
    if mcp["status"] != "pending" or mcp["approved"]:
        said.append("mcp get_decision")
    if request_id not in summary["pending_decisions"]:
        said.append("mcp handoff_summary")
    return said


async def test_an_agent_answering_through_the_python_api_is_refused_and_decides_nothing(
    ctx: SharedContext, fake: FakeBackend
) -> None:
    case_id, held_id, request_id = await held_request(ctx)
    before = len(all_entries(ctx))
    for author, attrs in itertools.product(AGENT_AUTHORS, APPROVING_ATTRS):
        with pytest.raises(PermissionDenied, match="only a person can decide"):
            ctx.case(case_id).record(EntryKind.DECISION, "Approved", author=author, ref=request_id, attrs=attrs)
    assert len(all_entries(ctx)) == before  # nothing recorded
    assert await decided_anywhere(ctx, case_id, held_id, request_id) == []
    ctx.worker.run_once()
    assert held_id not in [e.id for e in fake.entries(case_id)]


async def test_forged_decision_rows_written_straight_to_the_store_never_decide(
    ctx: SharedContext, fake: FakeBackend
) -> None:
    case_id, held_id, request_id = await held_request(ctx)
    for author, attrs in itertools.product(AGENT_AUTHORS, APPROVING_ATTRS):
        ctx.store.append(EntryDraft(case_id=case_id, kind=EntryKind.DECISION, title="Approved", author=author,
                                    ref=request_id, attrs=attrs), ["fake"])  # fmt: skip
    assert await decided_anywhere(ctx, case_id, held_id, request_id) == []
    ctx.worker.run_once()
    assert held_id not in [e.id for e in fake.entries(case_id)]
    # ...and the first answer from a person after all that is the answer
    ctx.case(case_id).record(EntryKind.DECISION, "Approved", author="human:alice", ref=request_id,
                             attrs={"outcome": "approved"})  # fmt: skip
    assert get_decision(ctx.store, request_id).approved
    assert held_for_decision(ctx.store, ctx.store.get_entry(held_id)) is None


async def test_the_timeout_policy_is_the_one_decision_sharedctx_may_record(ctx: SharedContext) -> None:
    case_id, held_id, request_id = await held_request(ctx)
    ctx.case(case_id).record(EntryKind.DECISION, "Timed out", author=SYSTEM, ref=request_id,
                             attrs={"outcome": "timeout", "rule": "timeout:default", "choice": "reject"})  # fmt: skip
    d = get_decision(ctx.store, request_id)
    assert d.status == "decided" and d.outcome == "timeout" and not d.approved
    hold = held_for_decision(ctx.store, ctx.store.get_entry(held_id))
    assert hold is not None and hold.final


async def test_agents_answering_over_mcp_are_refused_with_a_clear_403(ctx: SharedContext) -> None:
    case_id, held_id, request_id = await held_request(ctx)
    before = len(all_entries(ctx))
    for name in ("lead", "telemetry"):
        async with session_as(ctx, name) as s:
            for attrs in APPROVING_ATTRS:
                text = await refused(s, "record_entry", case_id=case_id, kind="decision", title="Approved",
                                     ref=request_id, attrs=attrs)  # fmt: skip
                assert text.startswith("403 Forbidden: only a person can decide"), text
            # the decision tools: asking again, and reading, do not answer anything either
            await call(s, "request_decision", case_id=case_id, question="Approve restart pod-7?", ref=held_id)
            assert (await call(s, "get_decision", request_id=request_id))["status"] == "pending"
    assert [e.kind for e in all_entries(ctx)[before:]] == [EntryKind.DECISION_REQUEST] * 2
    assert await decided_anywhere(ctx, case_id, held_id, request_id) == []


async def test_a_read_only_identity_and_a_partner_outside_its_case_write_nothing(ctx: SharedContext) -> None:
    case_id, held_id, request_id = await held_request(ctx)
    async with session_as(ctx, "lead") as lead:
        other = await call(lead, "open_case", title="billing cron stuck")
    before = len(all_entries(ctx))
    async with session_as(ctx, "viewer") as viewer:  # human-readonly: a person's identity, but read-only
        for kind in ("decision", "note"):
            text = await refused(viewer, "record_entry", case_id=case_id, kind=kind, title="Approved", ref=request_id)
            assert text.startswith("403 Forbidden") and "read-only" in text
    async with session_as(ctx, "telemetry") as partner:  # invited into case_id only
        for tool, args in [
            ("record_entry", {"case_id": other["id"], "kind": "finding", "title": "x"}),
            ("record_entry", {"case_id": other["id"], "kind": "decision", "title": "Approved"}),
            ("request_decision", {"case_id": other["id"], "question": "q?"}),
            ("get_timeline", {"case_id": other["id"]}),
            ("resolve_case", {"case_id": other["id"], "summary": "done"}),
            ("invite_partner", {"case_id": case_id, "partner": "limited"}),
        ]:
            text = await refused(partner, tool, **args)
            assert text.startswith("403 Forbidden"), (tool, text)
    assert len(all_entries(ctx)) == before
    assert await decided_anywhere(ctx, case_id, held_id, request_id) == []


async def test_an_agent_answering_through_the_cli_is_refused(
    ctx: SharedContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case_id, held_id, request_id = await held_request(ctx)
    config = write_config(tmp_path)
    monkeypatch.setenv("SHAREDCTX_CONFIG", str(config))
    before = len(all_entries(ctx))
    runner = CliRunner()
    for author in ("primary:lead", "partner:telemetry", "system:alertmanager", "system:sharedctx"):
        result = runner.invoke(app, ["record", case_id, "decision", "Approved", "--author", author,
                                     "--ref", request_id])  # fmt: skip
        assert result.exit_code == 7, result.output
        assert "only a person can decide" in result.output
    assert len(all_entries(ctx)) == before
    assert await decided_anywhere(ctx, case_id, held_id, request_id) == []
    # a person at the terminal (the operator, as configured) may answer
    result = runner.invoke(app, ["record", case_id, "decision", "Approved", "--author", "human:alice",
                                 "--ref", request_id, "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["author"] == {"kind": "human", "name": "alice"}
    assert held_for_decision(ctx.store, ctx.store.get_entry(held_id)) is not None  # no `approve` said
    assert get_decision(ctx.store, request_id).status == "decided"


def test_a_decision_of_a_person_answers_only_its_own_request(ctx: SharedContext) -> None:
    case = ctx.open_case("c")
    first = case.record(EntryKind.DECISION_REQUEST, "first?", author="primary:lead")
    second = case.record(EntryKind.DECISION_REQUEST, "second?", author="primary:lead")
    answer: Entry = case.record(EntryKind.DECISION, "Approved", author="human:alice", ref=first.id,
                                attrs={"outcome": "approved"})  # fmt: skip
    assert case.decision(first.id).entry == answer and case.decision(first.id).approved
    assert case.decision(second.id).status == "pending"
    with pytest.raises(InvalidEntry, match="not a decision-request"):
        case.decision(answer.id)
    with pytest.raises(InvalidEntry, match="belongs to another case"):
        ctx.open_case("another").decision(first.id)


# ---- the MCP output choke point -----------------------------------------------------------------------
PEM = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi6ZGbS0xUeB2xGqO8E4zN5kSfc\n"
       "q1R0bHq9cM2fLx3yQ9eT7aVb2pWcVd5sKjH4nU8rXoYgTfLm6Zi1NwPAeQ3KuBs\n-----END RSA PRIVATE KEY-----")


async def test_every_tool_result_is_text_rendered_from_its_redacted_structured_value(
    ctx: SharedContext, tmp_path: Path
) -> None:
    """Even if the journal held a secret (a store written before redaction, or by another tool), no MCP
    output carries it: the structured value is redacted field by field and the text is that value."""
    raw = SharedContext(ctx.config, ctx.store, ctx.backends, redactor=None)  # writes past the redactor
    case = raw.open_case("leaky")
    password = "Zq8#vLm2!pR7xT"  # in a JSON dump its quotes are escaped, which hid it from a whole-text pass
    case.record("finding", "db creds", f"found this in the pod env:\n{PEM}\n", author="primary:lead",
                attrs={"snippet": {"key": PEM}, "config": f'password="{password}"'})  # fmt: skip
    body = PEM.splitlines()[1]
    async with session_as(ctx, "lead") as s:
        results = [
            await s.call_tool("get_timeline", {"case_id": case.id}),
            await s.call_tool("handoff_summary", {"case_id": case.id}),
            await s.call_tool("record_entry", {"case_id": case.id, "kind": "note", "title": "n", "body": PEM}),
        ]
        resource = await s.read_resource(f"case://{case.id}")  # type: ignore[arg-type]
    for r in results:
        assert not r.isError, r.content
        (block,) = r.content
        assert json.loads(block.text) == r.structuredContent  # type: ignore[union-attr]
        for secret in (body, password):
            assert secret not in block.text and secret not in json.dumps(r.structuredContent)  # type: ignore[union-attr]
    text = resource.contents[0].text  # type: ignore[union-attr]
    assert body not in text and password not in text and "[REDACTED" in text


async def test_invite_partner_refuses_a_name_that_is_not_a_name_and_stores_text_not_repr(
    ctx: SharedContext
) -> None:
    async with session_as(ctx, "lead") as lead:
        case = await call(lead, "open_case", title="c")
        text = await refused(lead, "invite_partner", case_id=case["id"], partner=PEM)
        assert text.startswith("400 Invalid input: a partner name is") and "MIIE" not in text
        await call(lead, "invite_partner", case_id=case["id"], partner="vendor-apm")
    invites = [e for e in ctx.case(case["id"]).timeline() if e.attrs.get("invite")]
    assert [e.attrs["invite"] for e in invites] == ["vendor-apm"]
    assert "`vendor-apm`" in invites[0].body and "'vendor-apm'" not in invites[0].body
