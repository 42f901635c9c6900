"""A partner that hangs, dies mid-call, answers garbage, or cannot be reached: the investigation goes on.

Each test runs the real primary agent against real partner processes and checks the three things an
on-call engineer relies on: an entry says exactly what went wrong, the investigation still reaches
its handoff with what it has, and the case's hash chain verifies.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sharedctx.agents.primary import PrimaryAgent, Step
from sharedctx.config import PartnerSettings
from sharedctx.context import SharedContext
from sharedctx.intake import Alert
from sharedctx.model import Entry

from .conftest import faulty, telemetry

pytestmark = pytest.mark.anyio

ALERT = Alert(fingerprint="t:checkout", status="firing", name="CheckoutHighErrorRate", title="Checkout 5xx above 5%",
              service="checkout", severity="critical")  # fmt: skip


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def investigate(ctx: SharedContext, partners: list[PartnerSettings]) -> list[Entry]:
    case = ctx.open_case(ALERT.case_title, service="checkout", fingerprint=ALERT.fingerprint)
    inv = await PrimaryAgent(partners).investigate(case, ALERT)
    assert inv.step == Step.AWAITING_RECOVERY
    assert inv.history == [Step.TRIAGE, Step.CONSULT, Step.CORRELATE, Step.REMEDIATE, Step.HANDOFF]
    assert case.verify().ok
    return case.timeline()


def notes(entries: list[Entry]) -> list[Entry]:
    """The primary's notes about partners, without the invitations it records before calling them."""
    return [e for e in entries if e.kind == "note" and e.author.kind == "primary" and "invite" not in e.attrs]


async def test_the_primary_invites_each_partner_before_calling_it(ctx: SharedContext, config_path: Path) -> None:
    entries = await investigate(ctx, [telemetry(config_path), faulty("crash")])
    invites = [e for e in entries if e.attrs.get("invite")]
    assert sorted(e.attrs["invite"] for e in invites) == ["faulty-crash", "telemetry"]
    first_answer = min(e.seq for e in entries if e.attrs.get("partner") or e.author.kind == "partner")
    assert max(e.seq for e in invites) < first_answer


def partner_summary(entries: list[Entry]) -> Entry:
    return next(e for e in entries if e.title.startswith("Partner findings"))


async def test_a_partner_that_hangs_is_recorded_as_timed_out_and_the_others_answers_are_used(
    ctx: SharedContext,
) -> None:
    entries = await investigate(ctx, [faulty("hang", "query_metrics", timeout=5)])
    [note] = notes(entries)
    assert note.title == "Partner faulty-hang did not answer in time (query_metrics)"
    assert "no answer within 5s" in note.body
    assert note.attrs["error_kind"] == "timeout"
    assert partner_summary(entries).title == "Partner findings: 2 answered, 1 failed"
    # search_logs + analyze_spans still point at the bad payments deploy
    assert any(e.title.startswith("Correlated: bad deploy of payments 2.14.0") for e in entries)


async def test_a_partner_that_dies_mid_call_is_recorded_as_unavailable(ctx: SharedContext) -> None:
    entries = await investigate(ctx, [faulty("crash", "analyze_spans")])
    crashed = [n for n in notes(entries) if n.attrs["capability"] == "analyze_spans"]
    assert len(crashed) == 1
    assert crashed[0].attrs["error_kind"] == "unavailable"
    assert "simulated OOM" in crashed[0].body  # the partner's last words are kept
    handoff = next(e for e in entries if e.kind == "handoff")
    assert "faulty-crash/analyze_spans (unavailable)" in handoff.body


async def test_output_that_is_not_a_finding_is_recorded_as_malformed(ctx: SharedContext) -> None:
    entries = await investigate(ctx, [faulty("malformed", "search_logs")])
    [note] = notes(entries)
    assert note.title == "Partner faulty-malformed answered with malformed output (search_logs)"
    assert note.attrs["error_kind"] == "bad_output"
    # without the logs there is no deploy to blame: the agent says so and asks a human
    assert any(e.kind == "decision-request" for e in entries)
    assert not any(e.kind == "remediation" for e in entries)


async def test_two_partners_one_dead_the_live_one_carries_the_investigation(
    ctx: SharedContext, config_path: Path
) -> None:
    dead = PartnerSettings(name="tracing", transport="http", url="http://127.0.0.1:9/mcp", timeout=3)
    entries = await investigate(ctx, [telemetry(config_path), dead])
    [note] = notes(entries)
    assert note.title == "Partner tracing is unavailable"
    assert note.attrs["capability"] == "(connect)"
    assert any(e.title.startswith("Correlated: bad deploy of payments 2.14.0 (90%)") for e in entries)
    assert any(e.kind == "remediation" and "would roll back payments" in e.title for e in entries)


async def test_a_partner_command_that_cannot_start_is_recorded(ctx: SharedContext) -> None:
    broken = PartnerSettings(name="ghost", transport="stdio", command=["/nonexistent/partner"], timeout=5)
    entries = await investigate(ctx, [broken])
    [note] = notes(entries)
    assert note.title == "Partner ghost is unavailable"
    assert "could not connect" in note.body
    assert not any(e.title.startswith("Partner findings") for e in entries)
    assert any(e.title.startswith("Correlated: no findings") for e in entries)
