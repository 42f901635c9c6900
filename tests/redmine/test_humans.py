"""People in a REAL Redmine, each with their own account and API key: their notes reach the shared timeline
and the other backends exactly once, `/approve` decides only from someone on the deciders list, and
closing the issue by hand is a human resolution."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sharedctx.config import parse_config
from sharedctx.context import Case, SharedContext
from sharedctx.humans import Humans, Poller
from sharedctx.model import Entry
from tests.redmine.harness import KEY_VAR
from tests.redmine.server import RedmineEnv


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redmine_env: RedmineEnv) -> Iterator[SharedContext]:
    monkeypatch.setenv(KEY_VAR, redmine_env.api_key)
    redmine_env.user("alice"), redmine_env.user("bob")
    cfg = parse_config({"store": "journal.db", "humans": {"poll_interval": 0.05, "wait_interval": 0.02},
                        "backends": [
                            {"type": "redmine", "url": redmine_env.url, "api_key": f"env:{KEY_VAR}",
                             "project": redmine_env.project, "external_id_field": redmine_env.external_id_field,
                             "deciders": ["alice"]},
                            {"type": "local", "path": "cases"}]}, base_dir=tmp_path)
    c = SharedContext.open(cfg, worker=False)
    yield c
    c.close()


def deliver(ctx: SharedContext) -> None:
    assert ctx.drain(timeout=60)


def issue(ctx: SharedContext, case: Case) -> str:
    return str(ctx.store.get_case(case.id).bindings["redmine"]["id"])


def local_copies(ctx: SharedContext, case: Case, entry: Entry) -> int:
    path = Path(ctx.config.base_dir) / "cases" / f"{case.id}.jsonl"
    return sum(json.loads(line)["id"] == entry.id for line in path.read_text().splitlines() if line.strip())


def redmine_copies(env: RedmineEnv, number: str, entry: Entry) -> int:
    return sum(f"sharedctx:entry:{entry.id} part 1/" in (j.get("notes") or "") for j in env.journals(number))


def test_a_persons_note_reaches_the_timeline_and_is_mirrored_once(ctx: SharedContext, redmine_env: RedmineEnv) -> None:
    poller = Poller(ctx)
    case = ctx.open_case("payments DB failover", service="payments")
    case.record("finding", "primary DB unreachable from az-b", author="primary:triage")
    deliver(ctx)
    number = issue(ctx, case)
    redmine_env.add_note(number, "Failing over to az-c by hand, hold remediation", as_user="alice")
    for _ in range(2):  # reading everything back again takes nothing in twice
        poller.poll_once()
        deliver(ctx)
    (human,) = [e for e in case.timeline() if e.author.kind == "human"]
    assert human.author.name == "alice" and human.attrs["external"]["backend"] == "redmine"
    assert human.attrs["external"]["url"].endswith(f"/issues/{number}#change-{human.attrs['external']['id'][8:]}")
    assert local_copies(ctx, case, human) == 1  # mirrored to the other backend once
    assert redmine_copies(redmine_env, number, human) == 0  # and never echoed back where it came from
    assert "— alice on redmine" in human.body


def test_approve_decides_only_from_a_listed_redmine_user(ctx: SharedContext, redmine_env: RedmineEnv) -> None:
    poller = Poller(ctx, Humans(ctx))
    case = ctx.open_case("roll back deploy 4411?", service="checkout")

    async def scenario() -> Any:
        task = asyncio.create_task(case.request_decision("Roll back deploy 4411?", ("approve", "reject"), timeout=120))
        while not case.timeline(kinds=["decision-request"]):
            await asyncio.sleep(0.02)
        await asyncio.to_thread(deliver, ctx)
        number = issue(ctx, case)
        await asyncio.to_thread(redmine_env.add_note, number, "/approve", as_user="bob")
        await asyncio.to_thread(poller.poll_once)
        await asyncio.sleep(0.3)
        assert not task.done(), "bob is not on the deciders list: his /approve must not decide"
        await asyncio.to_thread(redmine_env.add_note, number, "/approve looks safe", as_user="alice")
        await asyncio.to_thread(poller.poll_once)
        return await asyncio.wait_for(task, 30)

    d = asyncio.run(scenario())
    assert d.approved and d.decided_by == "alice" and d.rule == "redmine:deciders (alice)"
    (refused,) = [e for e in case.timeline(kinds=["note"]) if e.attrs.get("unauthorised")]
    assert "bob" in refused.title and "redmine:deciders" in refused.attrs["rule"]


def test_closing_the_issue_by_hand_resolves_the_case_once(ctx: SharedContext, redmine_env: RedmineEnv) -> None:
    poller = Poller(ctx)
    case = ctx.open_case("disk full on db-3")
    case.record("finding", "WAL volume at 100%", author="primary:triage")
    deliver(ctx)
    redmine_env.set_status(issue(ctx, case), 5, as_user="alice")
    poller.poll_once()
    poller.poll_once()
    (res,) = case.timeline(kinds=["resolution"])
    assert res.author.name == "alice" and res.attrs["human_resolution"] is True
    assert ctx.store.get_case(case.id).status.value == "resolved"


def test_another_status_move_is_a_note_and_does_not_resolve(ctx: SharedContext, redmine_env: RedmineEnv) -> None:
    poller = Poller(ctx)
    case = ctx.open_case("cert expiry on edge-2")
    case.record("finding", "cert expires in 3 days", author="primary:triage")
    deliver(ctx)
    redmine_env.set_status(issue(ctx, case), 2, as_user="alice")  # New -> In Progress
    poller.poll_once()
    poller.poll_once()
    (note,) = [e for e in case.timeline() if e.author.kind == "human"]
    assert note.title == "alice on redmine: set the status to In Progress (was New)"
    assert case.timeline(kinds=["resolution"]) == [] and ctx.store.get_case(case.id).status.value == "open"
