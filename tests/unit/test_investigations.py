"""One owner per investigation, on SQLite and PostgreSQL: the lease, its fence, and in-process failover.

The store tests drive `sharedctx.store.sql.investigations` directly; the dispatcher tests run two
`Dispatcher`s (two replicas, different owners) on one store, with a partner that never answers in time
for the first one, so the first replica's step is in flight when the second takes over.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

import pytest

from sharedctx.agents.primary import Investigation, LeaseLost, PendingEntry, PrimaryAgent, Step
from sharedctx.agents.reasoning import Correlation, RemediationPlan, RuleBasedReasoner
from sharedctx.agents.runbooks import RunbookResult
from sharedctx.channel.trace import new_traceparent
from sharedctx.context import SharedContext
from sharedctx.intake import Alert
from sharedctx.model import Author, EntryDraft, EntryKind
from sharedctx.server import Dispatcher
from sharedctx.store.base import Store

PRIMARY = Author(kind="primary", name="primary")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def case_id(store: Store, fingerprint: str | None = None) -> str:
    rec, _ = store.open_case(title="c", service="checkout", severity="critical", fingerprint=fingerprint, labels={})
    return rec.id


def note(cid: str, title: str) -> EntryDraft:
    return EntryDraft(case_id=cid, kind=EntryKind.NOTE, title=title, author=PRIMARY)


def test_an_investigation_is_begun_once_and_taken_only_when_its_lease_is_free(store: Store) -> None:
    cid = case_id(store)
    a = store.begin_investigation(cid, "a", 30, step="triage", state={"x": 1})
    assert a is not None and a.token == 1
    assert store.begin_investigation(cid, "b", 30, step="triage", state={}) is None  # the primary key decides
    assert store.take_investigation(cid, "b", 30) is None  # a's lease holds
    assert store.orphaned_investigations() == []
    assert store.release_investigation(cid, "a", a.token)
    assert store.orphaned_investigations() == [cid]
    b = store.take_investigation(cid, "b", 30)
    assert b is not None and (b.owner, b.token, b.step, b.state) == ("b", 2, "triage", {"x": 1})
    assert not store.release_investigation(cid, "a", a.token)  # a's old lease is gone
    assert not store.renew_investigation(cid, "a", a.token, 30)


def test_an_expired_lease_is_taken_over_and_the_old_owner_records_nothing(store: Store) -> None:
    cid = case_id(store)
    a = store.begin_investigation(cid, "a", 0.2, step="triage", state={})
    assert a is not None
    time.sleep(0.3)  # a stopped renewing (kill -9, a pause, a partition)
    assert store.orphaned_investigations() == [cid]
    b = store.take_investigation(cid, "b", 30)
    assert b is not None and b.token == a.token + 1
    stale = store.advance_investigation(cid, "a", a.token, step="consult", state={"by": "a"},
                                        entries=[(note(cid, "Triage by a"), [], None)], lease_seconds=30)  # fmt: skip
    assert stale is None
    assert [e.title for e in store.entries(cid)] == []  # the zombie's step left no trace
    done = store.advance_investigation(cid, "b", b.token, step="consult", state={"by": "b"},
                                       entries=[(note(cid, "Triage by b"), [], None)], lease_seconds=30)  # fmt: skip
    assert done is not None and [e.title for e in store.entries(cid)] == ["Triage by b"]
    got = store.get_investigation(cid)
    assert got is not None and (got.step, got.state, got.owner) == ("consult", {"by": "b"}, "b")


def test_a_resolved_alert_waits_for_the_owner_and_turns_awaiting_recovery_into_verify(store: Store) -> None:
    cid = case_id(store)
    a = store.begin_investigation(cid, "a", 30, step="handoff", state={})
    assert a is not None
    assert store.advance_investigation(cid, "a", a.token, step="awaiting-recovery", state={}, entries=[],
                                       lease_seconds=30) == []  # fmt: skip
    assert store.release_investigation(cid, "a", a.token)
    assert store.orphaned_investigations() == []  # waiting for the world: nothing to take
    assert store.take_investigation(cid, "b", 30) is None
    assert store.note_resolved(cid, {"status": "resolved"})
    b = store.take_investigation(cid, "b", 30)
    assert b is not None and (b.step, b.resolved) == ("verify", {"status": "resolved"})
    assert store.advance_investigation(cid, "b", b.token, step="closed", state={}, entries=[],
                                       clear_resolved=True, lease_seconds=30) == []  # fmt: skip
    assert store.release_investigation(cid, "b", b.token)
    assert store.take_investigation(cid, "c", 30) is None and store.orphaned_investigations() == []
    assert not store.note_resolved(cid, {"status": "resolved"})  # closed: nothing to leave it with


def test_the_investigation_state_is_redacted_like_every_other_write(store: Store) -> None:
    cid = case_id(store)
    secret = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    store.begin_investigation(cid, "a", 30, step="triage", state={"alert": {"description": f"token {secret}"}})
    got = store.get_investigation(cid)
    assert got is not None and secret not in str(got.state)


def test_two_replicas_opening_the_same_alert_at_once_get_one_case_and_no_error(store: Store) -> None:
    """On PostgreSQL both transactions can find no open case; before the fix the second one then failed
    with a unique violation (a 503 to Alertmanager). Now it waits for the first and returns its case."""
    for round_ in range(20):
        results: list[Any] = []
        barrier = threading.Barrier(4)

        def open_one(fp: str = f"fp-race-{round_}", barrier: Any = barrier, results: list[Any] = results) -> None:
            barrier.wait()
            try:
                rec, created = store.open_case(title="t", service="s", severity="critical", fingerprint=fp,
                                               labels={})  # fmt: skip
                results.append((rec.id, created))
            except Exception as exc:  # what the assertion below reports
                results.append(exc)

        threads = [threading.Thread(target=open_one) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(isinstance(r, tuple) for r in results), results
        assert len({r[0] for r in results}) == 1 and sum(r[1] for r in results) == 1


def test_replicas_racing_to_take_one_orphaned_investigation_give_it_to_exactly_one(store: Store) -> None:
    """On PostgreSQL every taker waits on the row lock, then re-checks the lease on the row as the winner
    left it; a condition read through a subquery would still see the old, free lease."""
    for round_ in range(15):
        cid = case_id(store)
        first = store.begin_investigation(cid, "gone", 30, step="consult", state={})
        assert first is not None and store.release_investigation(cid, "gone", first.token)
        won: list[Any] = []
        barrier = threading.Barrier(6)

        def take(me: str, barrier: Any = barrier, won: list[Any] = won, cid: str = cid) -> None:
            barrier.wait()
            got = store.take_investigation(cid, me, 30)
            if got is not None:
                won.append(got)

        threads = [threading.Thread(target=take, args=(f"r{round_}-{i}",)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(won) == 1, won


# -- two replicas in one process ---------------------------------------------------------------------


class SlowPartnerAgent(PrimaryAgent):
    """The primary agent with a consult step that takes `delay` seconds (a slow partner), no network."""

    def __init__(self, delay: float) -> None:
        super().__init__([])
        self.delay = delay

    async def _consult_partners(self, inv: Investigation) -> Step:
        await asyncio.sleep(self.delay)
        await self._record(inv, EntryKind.FINDING, "Partner findings: slow partner answered", "ok")
        return Step.CORRELATE


ALERT = Alert(fingerprint="fp-failover", status="firing", name="CheckoutDown", title="Checkout down",
              service="checkout", severity="critical")  # fmt: skip


def step_titles(ctx: SharedContext, cid: str) -> Counter[str]:
    return Counter(f"{e.kind.value}:{e.title}" for e in ctx.case(cid).timeline() if e.author.kind == "primary")


@pytest.mark.anyio
async def test_a_replica_that_stops_renewing_is_taken_over_and_no_step_is_recorded_twice(
    ctx: SharedContext,
) -> None:
    a = Dispatcher(ctx, SlowPartnerAgent(delay=3.0), owner="replica-a", lease_seconds=1.0)
    b = Dispatcher(ctx, SlowPartnerAgent(delay=0.0), owner="replica-b", lease_seconds=1.0)
    [opened] = await a.submit([ALERT])
    cid = opened.case_id
    assert cid is not None
    for _ in range(100):  # a is in its slow consult step
        inv = ctx.store.get_investigation(cid)
        if inv is not None and inv.step == "consult":
            break
        await asyncio.sleep(0.05)
    # a "freezes": its heartbeat stops, but its step goes on and will try to commit after b took over
    for t in asyncio.all_tasks():
        if t.get_coro().__qualname__.startswith("HeldInvestigation.heartbeat"):  # type: ignore[union-attr]
            t.cancel()
    await asyncio.sleep(1.2)
    assert await b.scan() == 1
    assert await b.idle(20) and await a.idle(20)
    got = ctx.store.get_investigation(cid)
    assert got is not None and (got.step, got.owner) == ("awaiting-recovery", None)
    counts = step_titles(ctx, cid)
    assert counts and max(counts.values()) == 1, counts  # each step's entries exactly once
    kinds = [e.kind.value for e in ctx.case(cid).timeline()]
    assert kinds == ["alert", "triage", "finding", "finding", "decision-request", "handoff"], kinds


@pytest.mark.anyio
async def test_a_draining_replica_releases_at_once_and_the_other_resumes_at_the_checkpoint(
    ctx: SharedContext,
) -> None:
    a = Dispatcher(ctx, SlowPartnerAgent(delay=30.0), owner="replica-a", lease_seconds=60.0)
    b = Dispatcher(ctx, SlowPartnerAgent(delay=0.0), owner="replica-b", lease_seconds=60.0)
    [opened] = await a.submit([ALERT])
    cid = opened.case_id
    assert cid is not None
    for _ in range(100):
        inv = ctx.store.get_investigation(cid)
        if inv is not None and inv.step == "consult":
            break
        await asyncio.sleep(0.05)
    await a.shutdown(grace=0.2)  # SIGTERM: the slow step does not finish in time; it is abandoned
    got = ctx.store.get_investigation(cid)
    assert got is not None and (got.step, got.owner) == ("consult", None)  # released, not left to expire
    assert await b.scan() == 1
    assert await b.idle(20)
    counts = step_titles(ctx, cid)
    assert counts and max(counts.values()) == 1, counts
    resolved = ALERT.model_copy(update={"status": "resolved"})
    await b.submit([resolved])
    assert await b.idle(20)
    assert ctx.case(cid).status == "resolved"
    kinds = [e.kind.value for e in ctx.case(cid).timeline()]
    assert kinds.count("resolution") == 1 and kinds.count("verification") == 1


@pytest.mark.anyio
async def test_the_heartbeat_keeps_a_step_longer_than_the_lease_with_its_owner(ctx: SharedContext) -> None:
    a = Dispatcher(ctx, SlowPartnerAgent(delay=2.5), owner="replica-a", lease_seconds=1.0)
    b = Dispatcher(ctx, SlowPartnerAgent(delay=0.0), owner="replica-b", lease_seconds=1.0)
    [opened] = await a.submit([ALERT])
    cid = opened.case_id
    assert cid is not None
    taken = 0
    while a.running:  # b keeps looking for orphans while a's consult outlasts its lease 2.5 times
        taken += await b.scan()
        await asyncio.sleep(0.1)
    assert taken == 0 and await b.idle(5)
    got = ctx.store.get_investigation(cid)
    assert got is not None and got.step == "awaiting-recovery" and got.token == 1  # never taken over
    assert max(step_titles(ctx, cid).values()) == 1


@pytest.mark.anyio
async def test_a_case_opened_by_a_replica_that_died_before_beginning_its_investigation_is_begun_by_a_repeat(
    ctx: SharedContext,
) -> None:
    """The intake opens the case and begins its investigation in two transactions; a replica killed in
    between leaves a case with none. Alertmanager's retry (the same notification: `repeat`) begins it."""
    from datetime import UTC, datetime

    from sharedctx.context import NewEntry
    from sharedctx.model import format_ts

    alert = ALERT.model_copy(update={"starts_at": datetime(2026, 1, 1, 10, tzinfo=UTC)})
    first = NewEntry(EntryKind.ALERT, "Alert firing: Checkout down", attrs={
        "fingerprint": alert.fingerprint, "status": "firing", "starts_at": format_ts(alert.starts_at)})  # fmt: skip
    case = ctx.open_case(alert.case_title, service="checkout", fingerprint=alert.fingerprint, first=first)
    assert ctx.store.get_investigation(case.id) is None  # what the dead replica left
    disp = Dispatcher(ctx, SlowPartnerAgent(delay=0.0), owner="replica-b", lease_seconds=5.0)
    [again] = await disp.submit([alert])
    assert (again.action, again.case_id) == ("repeat", case.id)
    assert await disp.idle(20)
    got = ctx.store.get_investigation(case.id)
    assert got is not None and got.step == "awaiting-recovery"
    [again] = await disp.submit([alert])  # once investigated, a repeat adds nothing and begins nothing
    assert again.action == "repeat" and not disp.running
    assert [e.kind.value for e in case.timeline()].count("handoff") == 1


class ActingAgent(PrimaryAgent):
    """The primary agent allowed to act (`dry_run=False`), with one runbook that acts at once and then takes
    `delay` seconds to report (a rollout being watched), and a reasoner that always chooses it."""

    def __init__(self, delay: float, acted: list[str], who: str) -> None:
        super().__init__([], runbooks={"rollback_deploy": self._rollback}, dry_run=False, reasoner=_AlwaysRollBack())
        self.delay, self.acted, self.who = delay, acted, who

    async def _consult_partners(self, inv: Investigation) -> Step:
        return Step.CORRELATE

    async def _rollback(self, args: dict[str, Any], *, dry_run: bool) -> RunbookResult:
        assert not dry_run
        self.acted.append(self.who)  # `kubectl rollout undo` has run: done twice, it undoes itself
        await asyncio.sleep(self.delay)
        return RunbookResult(done=True, summary="Rolled back checkout.")


class _AlwaysRollBack(RuleBasedReasoner):
    async def remediate(self, correlation: Correlation, runbooks: list[str]) -> RemediationPlan | None:
        return RemediationPlan(runbook="rollback_deploy", args={"service": "checkout"}, rationale="the deploy")


async def two_replicas_one_acting(ctx: SharedContext, delay: float, lease: float
                                  ) -> tuple[Dispatcher, Dispatcher, str, list[str]]:
    """Replica a (its runbook `delay` s long) takes ALERT and has started the rollback; b stands by."""
    acted: list[str] = []
    a = Dispatcher(ctx, ActingAgent(delay, acted, "replica-a"), owner="replica-a", lease_seconds=lease)
    b = Dispatcher(ctx, ActingAgent(0.0, acted, "replica-b"), owner="replica-b", lease_seconds=lease)
    [opened] = await a.submit([ALERT])
    assert opened.case_id is not None
    for _ in range(400):
        if acted:
            break
        await asyncio.sleep(0.02)
    assert acted == ["replica-a"]
    return a, b, opened.case_id, acted


@pytest.mark.anyio
async def test_a_runbook_started_by_a_replica_that_stopped_is_never_started_again_by_the_one_that_resumes(
    ctx: SharedContext,
) -> None:
    a, b, cid, acted = await two_replicas_one_acting(ctx, 30.0, 60.0)
    await a.shutdown(grace=0.2)  # SIGTERM while the rollback is being watched: its outcome is never recorded
    got = ctx.store.get_investigation(cid)
    assert got is not None and (got.step, got.owner) == ("remediate", None)
    assert await b.scan() == 1
    assert await b.idle(20)
    assert acted == ["replica-a"]  # not run a second time
    timeline = ctx.case(cid).timeline()
    [started] = [e for e in timeline if e.kind == EntryKind.ACTION]
    assert started.title == "Starting runbook rollback_deploy"
    [ask] = [e for e in timeline if e.kind == EntryKind.DECISION_REQUEST]
    assert "may or may not have run" in ask.title and "not started again" in ask.title
    assert not [e for e in timeline if e.kind == EntryKind.REMEDIATION]  # nobody claims it was done
    counts = step_titles(ctx, cid)
    assert max(counts.values()) == 1, counts


@pytest.mark.anyio
async def test_a_runbook_that_finishes_is_recorded_once_after_its_start(ctx: SharedContext) -> None:
    acted: list[str] = []
    a = Dispatcher(ctx, ActingAgent(0.0, acted, "replica-a"), owner="replica-a", lease_seconds=60.0)
    [opened] = await a.submit([ALERT])
    assert opened.case_id is not None and await a.idle(20)
    kinds = [e.kind.value for e in ctx.case(opened.case_id).timeline()]
    assert kinds == ["alert", "triage", "finding", "action", "remediation", "handoff"], kinds
    assert acted == ["replica-a"] and ctx.case(opened.case_id).status == "mitigated"


# -- attacks on the at-most-once runbook (adversarial review) ------------------------------------------
_ROLLBACK = RemediationPlan(runbook="rollback_deploy", args={"service": "checkout"}, rationale="the deploy")
_CORRELATION = Correlation(summary="deploy 4411 broke checkout", headline="bad deploy", confidence=0.9,
                           cause="bad_deploy", service="checkout")  # fmt: skip


def _resumed(ctx: SharedContext, state: dict[str, Any]) -> Investigation:
    """An investigation as another replica rebuilds it from a stored REMEDIATE checkpoint (`from_state`)."""
    case = ctx.open_case("Checkout down", service="checkout", severity="critical")
    base = Investigation(case=case, alert=ALERT, traceparent=new_traceparent(), correlation=_CORRELATION).to_state()
    return Investigation.from_state(case, Step.REMEDIATE.value, {**base, **state})


@pytest.mark.anyio
async def test_a_resumed_remediation_that_was_acting_is_not_run_again_even_if_its_plan_was_not_kept(
    ctx: SharedContext,
) -> None:
    """`acting` is the promise that the runbook was started; a stored state that lost its `plan` (written by
    hand, a corrupt row) must not make the resuming replica pick a plan afresh and run it a second time."""
    acted: list[str] = []
    inv = _resumed(ctx, {"acting": True, "plan": None})
    assert inv.acting and inv.plan is None
    await ActingAgent(0.0, acted, "replica-b").run(inv)
    assert acted == []
    kinds = [e.kind.value for e in inv.case.timeline()]
    assert "decision-request" in kinds and "remediation" not in kinds, kinds


@pytest.mark.anyio
async def test_the_handoff_after_a_resumed_acting_remediation_does_not_say_nothing_was_changed(
    ctx: SharedContext,
) -> None:
    """The runbook may have run (a rollback half done): telling the person "Nothing was changed." is wrong."""
    acted: list[str] = []
    inv = _resumed(ctx, {"acting": True, "plan": _ROLLBACK.model_dump(mode="json")})
    await ActingAgent(0.0, acted, "replica-b").run(inv)
    assert acted == []
    [handoff] = [e for e in inv.case.timeline() if e.kind == EntryKind.HANDOFF]
    assert "may or may not have run" in handoff.body
    assert "Nothing was changed" not in handoff.body, handoff.body


@pytest.mark.anyio
async def test_a_lease_lost_while_committing_the_runbooks_start_never_runs_it(ctx: SharedContext) -> None:
    acted: list[str] = []
    calls: list[Step] = []

    async def lost(inv: Investigation, finished: Step, entries: list[PendingEntry]) -> bool:
        calls.append(finished)
        return False  # another replica owns it now: nothing recorded

    inv = _resumed(ctx, {})
    inv.checkpoint = lost
    with pytest.raises(LeaseLost):
        await ActingAgent(0.0, acted, "replica-a").run(inv)
    assert acted == [] and calls == [Step.REMEDIATE] and inv.step == Step.REMEDIATE


@pytest.mark.anyio
async def test_outside_serve_a_runbook_that_acts_records_no_start_entry(ctx: SharedContext) -> None:
    acted: list[str] = []
    case = ctx.open_case("Checkout down", service="checkout", severity="critical")
    inv = await ActingAgent(0.0, acted, "cli").investigate(case, ALERT)
    assert acted == ["cli"] and not inv.acting
    kinds = [e.kind.value for e in case.timeline()]
    assert kinds == ["triage", "finding", "remediation", "handoff"], kinds


@pytest.mark.anyio
async def test_a_frozen_replica_that_finishes_its_runbook_after_a_takeover_records_nothing_twice_and_the_case_closes(
    ctx: SharedContext,
) -> None:
    """Replica a starts the rollback, then freezes (no heartbeat); b takes over after the lease expired, asks a
    person, and hands off; a's rollback then finishes and its commit is fenced. The resolved alert closes it."""
    a, b, cid, acted = await two_replicas_one_acting(ctx, 2.5, 1.0)
    for t in asyncio.all_tasks():  # a freezes: its heartbeat stops, its runbook goes on
        if t.get_coro().__qualname__.startswith("HeldInvestigation.heartbeat"):  # type: ignore[union-attr]
            t.cancel()
    await asyncio.sleep(1.2)
    assert await b.scan() == 1
    assert await b.idle(20) and await a.idle(20)
    assert acted == ["replica-a"]
    counts = step_titles(ctx, cid)
    assert counts and max(counts.values()) == 1, counts
    kinds = [e.kind.value for e in ctx.case(cid).timeline()]
    assert kinds == ["alert", "triage", "finding", "action", "decision-request", "handoff"], kinds
    await b.submit([ALERT.model_copy(update={"status": "resolved"})])
    assert await b.idle(20)
    assert ctx.case(cid).status == "resolved"


@pytest.mark.anyio
async def test_an_acting_remediation_whose_stored_plan_is_corrupt_is_parked_for_a_human(ctx: SharedContext) -> None:
    acted: list[str] = []
    case = ctx.open_case("Checkout down", service="checkout", severity="critical")
    state = Investigation(case=case, alert=ALERT, traceparent=new_traceparent(), correlation=_CORRELATION).to_state()
    lease = ctx.store.begin_investigation(case.id, "replica-a", 60.0, step=Step.REMEDIATE.value,
                                          state={**state, "acting": True, "plan": {"runbook": 5}})  # fmt: skip
    assert lease is not None and ctx.store.release_investigation(case.id, "replica-a", lease.token)
    b = Dispatcher(ctx, ActingAgent(0.0, acted, "replica-b"), owner="replica-b", lease_seconds=60.0)
    assert await b.scan() == 1
    assert await b.idle(20)
    assert acted == []  # holds today: the runbook is never run again
    got = ctx.store.get_investigation(case.id)
    assert got is not None and got.step == Step.FAILED.value, got.step
    [why] = [e for e in case.timeline() if e.title.startswith("The primary agent could not resume")]
    assert "remediate" in why.body and "No step was run" in why.body
    assert got.state.get("plan") == {"runbook": 5}  # kept as it was, for a person to read
    assert got.owner is None  # released, not left to expire
    assert await b.scan() == 0  # parked: no replica takes it again


class _AlwaysEscalate(RuleBasedReasoner):
    async def remediate(self, correlation: Correlation, runbooks: list[str]) -> RemediationPlan | None:
        return RemediationPlan(runbook="escalate", args={"service": "checkout"}, rationale="no safe action")


class EscalatingAgent(PrimaryAgent):
    def __init__(self) -> None:
        super().__init__([], dry_run=False, reasoner=_AlwaysEscalate())

    async def _consult_partners(self, inv: Investigation) -> Step:
        return Step.CORRELATE


@pytest.mark.anyio
async def test_a_runbook_that_changes_nothing_is_not_announced_as_acting_for_real(ctx: SharedContext) -> None:
    """`escalate` only hands the case to a person: "Starting runbook escalate … for real" would tell the
    on-call human something was about to change. Runbooks in `CHANGES_NOTHING` run without that record."""
    a = Dispatcher(ctx, EscalatingAgent(), owner="replica-a", lease_seconds=60.0)
    [opened] = await a.submit([ALERT])
    assert opened.case_id is not None and await a.idle(20)
    kinds = [e.kind.value for e in ctx.case(opened.case_id).timeline()]
    assert kinds == ["alert", "triage", "finding", "decision-request", "handoff"], kinds
    got = ctx.store.get_investigation(opened.case_id)
    assert got is not None and not got.state.get("acting")
