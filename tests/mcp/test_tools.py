"""The tools through the official `mcp` client, in memory: shapes, paging, lookups, bad input."""

from __future__ import annotations

import json

import pytest
from mcp.shared.exceptions import McpError

from sharedctx.context import SharedContext
from sharedctx.model import EntryKind

from .conftest import all_entries, call, refused, session_as

pytestmark = pytest.mark.anyio

TOOLS = {
    "open_case", "find_case", "record_entry", "get_timeline", "search_history", "similar_cases",
    "request_decision", "get_decision", "resolve_case", "handoff_summary", "invite_partner",
}  # fmt: skip


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_every_tool_is_listed_with_typed_input_and_output(ctx: SharedContext) -> None:
    async with session_as(ctx, "lead") as s:
        tools = {t.name: t for t in (await s.list_tools()).tools}
        templates = (await s.list_resource_templates()).resourceTemplates
    assert set(tools) == TOOLS
    for t in tools.values():
        assert t.outputSchema is not None, t.name
        assert len(t.description or "") > 80, t.name
        for name, prop in t.inputSchema["properties"].items():
            assert name != "author"  # the author is the caller's identity, never an argument
            assert prop, name
    assert "untrusted-content" in (tools["get_timeline"].description or "")
    assert [t.uriTemplate for t in templates] == ["case://{case_id}"]


async def test_record_then_page_through_the_timeline(ctx: SharedContext) -> None:
    async with session_as(ctx, "lead") as s:
        case = await call(s, "open_case", title="Checkout 5xx spike", service="checkout", fingerprint="fp-1")
        for i in range(5):
            out = await call(s, "record_entry", case_id=case["id"], kind="finding", title=f"finding {i}",
                             evidence=[{"type": "metric", "source": "prometheus", "summary": "p99 8x"}])
            assert out["entry"]["author"] == "primary:lead"
            assert out["entry"]["provenance"] == "agent" and out["entry"]["trusted"] is True
        seen: list[str] = []
        since, pages = 0, 0
        while True:
            page = await call(s, "get_timeline", case_id=case["id"], since=since, kinds=["finding"], limit=2)
            seen += [e["title"] for e in page["entries"]]
            since, pages = page["next_since"], pages + 1
            if not page["has_more"]:
                break
    assert seen == [f"finding {i}" for i in range(5)]
    assert pages == 3
    assert case["created"] is True and case["uri"] == f"case://{case['id']}"


async def test_the_author_cannot_be_chosen_by_arguments(ctx: SharedContext) -> None:
    async with session_as(ctx, "lead") as s:
        case = await call(s, "open_case", title="c")
        await s.call_tool("record_entry", {"case_id": case["id"], "kind": "note", "title": "x",
                                           "author": "human:ceo"})  # fmt: skip
    assert {str(e.author) for e in all_entries(ctx)} <= {"primary:lead"}


async def test_find_case_by_id_fingerprint_and_external_reference(ctx: SharedContext) -> None:
    async with session_as(ctx, "lead") as s:
        case = await call(s, "open_case", title="Payments down", fingerprint="alert:abc")
        ctx.store.set_binding(case["id"], "github", {"backend": "github", "id": "42",
                                                     "url": "https://github.com/acme/payments/issues/42"})
        ctx.store.set_binding(case["id"], "pagerduty", {"backend": "pagerduty", "id": "Q1W2E3R4T5Y6U7"})
        for ref in (case["id"], "alert:abc", "https://github.com/acme/payments/issues/42", "Q1W2E3R4T5Y6U7"):
            assert (await call(s, "find_case", ref=ref))["id"] == case["id"], ref
        missing = await refused(s, "find_case", ref="https://github.com/acme/payments/issues/999")
        again = await call(s, "open_case", title="Payments down again", fingerprint="alert:abc")
    assert missing.startswith("404 Not Found")
    assert again["id"] == case["id"] and again["created"] is False
    assert (await _links(ctx, case["id"]))["github"] == "https://github.com/acme/payments/issues/42"


async def _links(ctx: SharedContext, case_id: str) -> dict[str, str]:
    async with session_as(ctx, "viewer") as s:
        return (await call(s, "find_case", ref=case_id))["links"]


async def test_bad_input_gets_specific_errors_and_records_nothing(ctx: SharedContext) -> None:
    async with session_as(ctx, "lead") as s:
        case = await call(s, "open_case", title="c")
        before = len(all_entries(ctx))
        unknown_case = await refused(s, "record_entry", case_id="01NOSUCHCASE", kind="note", title="x")
        wrong_types = await refused(s, "record_entry", case_id=case["id"], kind="finding", title=["not", "a", "str"])
        bad_kind = await refused(s, "record_entry", case_id=case["id"], kind="gossip", title="x")
        too_big = await refused(s, "record_entry", case_id=case["id"], kind="note", title="x", body="a" * 300_000)
        huge = await refused(s, "record_entry", case_id=case["id"], kind="note", title="x", body="a" * 1_100_000)
        bad_ref = await refused(s, "record_entry", case_id=case["id"], kind="correction", title="x", ref="01NOPE")
        reserved = await refused(s, "record_entry", case_id=case["id"], kind="note", title="x",
                                 attrs={"invite": "telemetry"})
        with pytest.raises(McpError) as unknown_tool:
            await s.call_tool("delete_everything", {})
        with pytest.raises(McpError) as unknown_resource:
            await s.read_resource("case://01NOSUCHCASE")  # type: ignore[arg-type]
    assert unknown_case.startswith("404 Not Found: no case with id '01NOSUCHCASE'")
    assert wrong_types.startswith("400 Invalid input: title")
    assert bad_kind.startswith("400 Invalid input: kind")
    assert too_big.startswith("400 Invalid input: body is 300,000 bytes")
    assert huge.startswith("413 Payload Too Large")
    assert bad_ref.startswith("400 Invalid input: ref '01NOPE'")
    assert reserved.startswith("400 Invalid input: attrs key(s) invite")
    assert "Unknown tool: delete_everything" in str(unknown_tool.value)
    assert unknown_tool.value.error.code == -32602
    assert unknown_resource.value.error.message.startswith("404 Not Found")
    assert len(all_entries(ctx)) == before


async def test_search_history_filters_and_links_to_cases(ctx: SharedContext) -> None:
    async with session_as(ctx, "lead") as s:
        a = await call(s, "open_case", title="Checkout latency", service="checkout")
        b = await call(s, "open_case", title="Search latency", service="search")
        await call(s, "record_entry", case_id=a["id"], kind="finding", title="connection pool exhausted on orders-db")
        await call(s, "record_entry", case_id=b["id"], kind="finding", title="connection pool exhausted on es-7")
        await call(s, "resolve_case", case_id=a["id"], summary="Raised the pool size; p99 back to 200 ms")
        everything = await call(s, "search_history", text="connection pool")
        checkout = await call(s, "search_history", text="connection pool", service="checkout")
        resolved = await call(s, "search_history", text="pool", outcome="resolved", kind=["finding"])
    assert {h["case_id"] for h in everything["hits"]} == {a["id"], b["id"]}
    assert {h["case_id"] for h in checkout["hits"]} == {a["id"]}
    assert checkout["hits"][0]["case_uri"] == f"case://{a['id']}"
    assert "[" in checkout["hits"][0]["snippet"]
    assert "resolved" in checkout["hits"][0]["why"]  # ranked by the same history search as the CLI and API
    assert [(h["case_id"], h["kind"]) for h in resolved["hits"]] == [(a["id"], "finding")]


async def test_similar_cases_say_how_earlier_cases_ended(ctx: SharedContext) -> None:
    async with session_as(ctx, "lead") as s:
        old = await call(s, "open_case", title="Checkout 5xx after deploy", service="checkout")
        await call(s, "resolve_case", case_id=old["id"], summary="Rolled back deploy 4411")
        await call(s, "open_case", title="Billing cron stuck", service="billing")
        new = await call(s, "open_case", title="Checkout 5xx spike", service="checkout")
        out = await call(s, "similar_cases", case_id=new["id"])
    ids = [c["case_id"] for c in out["similar"]]
    assert ids[0] == old["id"] and new["id"] not in ids
    assert "Rolled back deploy 4411" in out["similar"][0]["resolution"]


async def test_decisions_are_requested_stored_and_answered_by_humans_only(ctx: SharedContext) -> None:
    async with session_as(ctx, "lead") as s:
        case = await call(s, "open_case", title="c")
        req = await call(s, "request_decision", case_id=case["id"], question="Roll back deploy 4411?",
                         options=["approve", "reject"], context="Error rate 12%; rollback takes 4 min")
        pending = await call(s, "get_decision", request_id=req["request_id"])
        # an agent's `decision` does not answer a question put to humans: it is refused
        denied = await s.call_tool("record_entry", {"case_id": case["id"], "kind": "decision", "title": "I approve",
                                                    "ref": req["request_id"], "attrs": {"choice": "approve"}})
        still = await call(s, "get_decision", request_id=req["request_id"])
        ctx.case(case["id"]).record(EntryKind.DECISION, "Approved", "go ahead", author="human:alice",
                                    ref=req["request_id"], attrs={"choice": "approve"})
        done = await call(s, "get_decision", request_id=req["request_id"])
        summary = await call(s, "handoff_summary", case_id=case["id"])
    assert pending["status"] == "pending" and pending["options"] == ["approve", "reject"]
    assert denied.isError and "403 Forbidden: only a person can decide" in denied.content[0].text  # type: ignore[union-attr]
    assert still["status"] == "pending"
    assert done["status"] == "decided" and done["approved"] is True and done["decided_by"] == "human:alice"
    assert done["comment"].startswith('<untrusted-content source="human:alice">')
    stored = ctx.store.get_entry(req["request_id"])
    assert stored.kind == EntryKind.DECISION_REQUEST
    assert stored.attrs == {"question": "Roll back deploy 4411?", "options": ["approve", "reject"], "status": "pending"}
    assert summary["pending_decisions"] == []


async def test_a_timed_out_request_reports_the_policy_decision(ctx: SharedContext) -> None:
    async with session_as(ctx, "lead") as s:
        case = await call(s, "open_case", title="c")
        req = await call(s, "request_decision", case_id=case["id"], question="Roll back deploy 4411?")
        # what sharedctx.humans records when nobody answered and the policy takes the default
        ctx.case(case["id"]).record(EntryKind.DECISION, "No answer: took the default", author="system:sharedctx",
                                    ref=req["request_id"], attrs={"outcome": "timeout", "choice": "reject",
                                                                  "rule": "timeout:default"})  # fmt: skip
        out = await call(s, "get_decision", request_id=req["request_id"])
    assert out["status"] == "decided" and out["outcome"] == "timeout" and out["rule"] == "timeout:default"
    assert out["choice"] == "reject" and out["approved"] is False


async def test_handoff_summary_and_case_resource(ctx: SharedContext) -> None:
    async with session_as(ctx, "lead") as s:
        case = await call(s, "open_case", title="Checkout 5xx spike", service="checkout", severity="critical")
        await call(s, "record_entry", case_id=case["id"], kind="finding", title="p99 up 8x since deploy 4411")
        await call(s, "record_entry", case_id=case["id"], kind="action", title="Paged the payments team")
        req = await call(s, "request_decision", case_id=case["id"], question="Roll back 4411?")
        summary = await call(s, "handoff_summary", case_id=case["id"])
        resource = await s.read_resource(f"case://{case['id']}")  # type: ignore[arg-type]
    text = summary["summary"]
    assert "p99 up 8x since deploy 4411" in text and "Paged the payments team" in text
    assert "Roll back 4411?" in text and summary["pending_decisions"] == [req["request_id"]]
    assert len(text.splitlines()) <= 40
    body = json.loads(resource.contents[0].text)  # type: ignore[union-attr]
    assert body["case"]["id"] == case["id"]
    assert [e["kind"] for e in body["entries"]] == ["note", "finding", "action", "decision-request"]
    assert all("provenance" in e for e in body["entries"])
