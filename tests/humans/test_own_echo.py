"""What counts as our own echo, and who may decide from GitHub.

A person's comment is never dropped because it mentions or quotes one of our markers; only what
sharedctx itself wrote (which always *ends* with the exact hidden marker) is skipped on read-back.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sharedctx.context import Case
from sharedctx.decisions import Decision
from sharedctx.humans import get_decision
from sharedctx.model import SYSTEM, Entry, EntryKind, utcnow
from sharedctx.render import adf_part, github_part, is_own_echo, plain_part, render_parts, wiki_part
from tests.humans.conftest import SECRETS, World, make_world
from tests.humans.doubles import github_comment_payload, github_hook, pagerduty_annotated, pagerduty_hook
from tests.humans.test_decisions import ask

QUOTES = [
    "/approve\n\n> the issue body said <!-- sharedctx:case:01JABCDEFGHJKMNPQRSTVWXYZ0 -->",
    "/approve — I checked sharedctx:case 01JABC, looks right",
    "/approve <!-- sharedctx:case:01JABCDEFGHJKMNPQRSTVWXYZ0 -->",
    "/approve (the bot wrote [sharedctx:resolved:01JABC] on the other incident, not this one)",
    "/approve see `sharedctx:entry:01JABC part 1/1` above",
    "sharedctx:case",
]


@pytest.fixture
def entry() -> Entry:
    e = Entry(id="01JABCDEFGHJKMNPQRSTVWXYZ0", case_id="01JCASEABCDEFGHJKMNPQRSTVW", seq=3, ts=utcnow(),
              author=SYSTEM, kind=EntryKind.FINDING, title="p99 up 8x", body="since deploy 4411\n" * 50)
    return e.model_copy(update={"hash": e.compute_hash()})


@pytest.mark.parametrize("part", [github_part, plain_part, wiki_part])
def test_everything_we_render_is_our_own_echo(entry: Entry, part: object) -> None:
    for limit in (100_000, 2_500):  # one part, and several numbered parts
        parts = render_parts(entry, "human text\n" * 80, limit, part, len)  # type: ignore[arg-type]
        assert parts and all(is_own_echo(p) for p in parts)
        assert all(is_own_echo(p + "\n\n") for p in parts)  # services may add trailing whitespace


def test_adf_copies_are_our_own_echo(entry: Entry) -> None:
    doc = adf_part(entry, 1, 1, "human text", "QUJD")
    assert is_own_echo("human text", doc)
    assert not is_own_echo("human text", {"type": "doc", "content": [*doc["content"][:-1]]})


def test_our_resolution_notes_are_our_own_echo() -> None:
    for note in ["**Resolved** — Rolled back (summary entry `01JA`)\n\n<!-- sharedctx:resolved:01JA -->",
                 "Resolved - Rolled back (sharedctx entry 01JA) [sharedctx:resolved:01JA]"]:
        assert is_own_echo(note)


@pytest.mark.parametrize("text", QUOTES)
def test_a_person_quoting_a_marker_is_not_our_echo(text: str) -> None:
    assert not is_own_echo(text)


def test_a_github_approve_quoting_the_case_marker_is_taken_in_and_decides(github_only: World) -> None:
    """Webhook and polling alike: the comment reaches the journal, and an authorised one decides."""
    w = github_only
    w.gh.roles.update(alice="write", bob="write")

    async def scenario() -> tuple[Decision, Case]:
        case = w.ctx.open_case("checkout 5xx")
        task, _ = await ask(w, case)
        issue = int(w.thread(case.id, "github"))
        for i, text in enumerate(QUOTES[1:3]):  # by webhook...
            comment = w.gh.comment_as(issue, text.replace("/approve", "/note") if i else text, "alice")
            payload = github_comment_payload(w.gh, issue, comment)
            body, headers = github_hook(SECRETS["github"], "issue_comment", payload)
            assert (await w.post("github", body, headers)).status_code == 200
        w.gh.comment_as(issue, QUOTES[0], "bob")  # ...and by polling
        await asyncio.to_thread(w.poller.poll_once)
        return await asyncio.wait_for(task, 20), case

    d, case = asyncio.run(scenario())
    assert d.approved and d.decided_by == "alice"
    said = [e.attrs["human"]["command"] for e in case.timeline(kinds=["note"]) if e.author.kind == "human"]
    assert said == ["approve", "note", "approve"]  # every comment kept; the first authorised answer decided


def test_a_pagerduty_note_mentioning_the_resolved_marker_is_taken_in(world: World) -> None:
    w = world
    case = w.ctx.open_case("payments failover")
    case.record("finding", "primary DB unreachable", author="primary:triage")
    w.deliver()
    inc = w.thread(case.id, "pagerduty")
    text = "the bot said [sharedctx:resolved:01JA] on the old incident; this one is NOT resolved"
    w.pd.add_human_note(inc, text, name="Alice Oncall")
    w.poller.poll_once()
    body, headers = pagerduty_hook(SECRETS["pagerduty"], pagerduty_annotated(inc, text + " (2)"))
    assert asyncio.run(w.post("pagerduty", body, headers)).status_code == 200
    humans = [e.body for e in case.timeline(kinds=["note"]) if e.author.kind == "human"]
    assert len(humans) == 2 and all(h.startswith("the bot said") for h in humans)


def test_our_own_comments_are_never_taken_in(world: World) -> None:
    """Everything sharedctx writes in all four services (entries, a long split one, the resolution) reads
    back as nothing human."""
    w = world
    case = w.ctx.open_case("payments failover")
    case.record("finding", "primary DB unreachable", "x " * 40_000, author="primary:triage")
    case.resolve("Failed over to az-c", author="primary:triage")
    w.deliver()
    taken = w.poller.poll_once()
    assert [(i.item.backend, i.item.text[:40]) for i in taken if i.item.kind != "status"] == []
    assert [e for e in case.timeline() if e.author.kind == "human"] == []


def test_github_allow_list_decides_without_repository_permission(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = make_world(tmp_path, monkeypatch, humans={"allow": {"github": ["erin"]}}, backends=("github",))
    try:
        async def scenario() -> tuple[str, Decision]:
            case = w.ctx.open_case("checkout 5xx")
            task, req = await ask(w, case)
            issue = int(w.thread(case.id, "github"))
            w.gh.comment_as(issue, "/approve", "mallory")  # neither listed nor a collaborator
            await asyncio.to_thread(w.poller.poll_once)
            pending = get_decision(w.ctx, req.id).status
            w.gh.comment_as(issue, "/approve", "erin")  # listed, not a collaborator
            await asyncio.to_thread(w.poller.poll_once)
            return pending, await asyncio.wait_for(task, 20)

        pending, d = asyncio.run(scenario())
        assert pending == "pending"
        assert d.approved and d.decided_by == "erin" and d.rule == "allow:github"
    finally:
        w.ctx.close()


def test_an_answer_recorded_through_the_api_stands_against_a_later_github_approve(github_only: World) -> None:
    w = github_only
    w.gh.roles["alice"] = "write"

    async def scenario() -> tuple[Decision, Case, Entry]:
        case = w.ctx.open_case("checkout 5xx")
        task, req = await ask(w, case)
        first = case.record(EntryKind.DECISION, "Rejected at the console", author="human:dana", ref=req.id,
                            attrs={"outcome": "rejected"})  # fmt: skip
        w.gh.comment_as(int(w.thread(case.id, "github")), "/approve", "alice")
        await asyncio.to_thread(w.poller.poll_once)
        return await asyncio.wait_for(task, 20), case, first

    d, case, first = asyncio.run(scenario())
    assert d.entry == first and not d.approved
    assert [e.id for e in case.timeline(kinds=["decision"])] == [first.id]  # the late approve decided nothing
    (note,) = [e for e in case.timeline(kinds=["note"]) if e.attrs.get("conflict")]
    assert "rejected" in note.title


def test_an_approve_posted_with_sharedctx_own_github_account_decides_nothing(github_only: World) -> None:
    """An agent in the same process holds the GitHub token; posting `/approve` (or 👍) as the bot account,
    which has write access to the repo, must not pass for a person."""
    w = github_only
    w.gh.roles.update({"sharedctx-bot": "admin", "alice": "write"})

    async def scenario() -> tuple[str, Decision, Case]:
        case = w.ctx.open_case("checkout 5xx")
        task, req = await ask(w, case)
        issue = int(w.thread(case.id, "github"))
        comment = w.gh.comment_as(issue, "/approve", "sharedctx-bot")  # by webhook...
        payload = github_comment_payload(w.gh, issue, comment)
        assert (await w.post("github", *github_hook(SECRETS["github"], "issue_comment", payload))).status_code == 200
        w.gh.react(w.gh.comment_for_entry(issue, req.id)["id"], "+1", "sharedctx-bot")  # ...and a 👍 by polling
        await asyncio.to_thread(w.poller.poll_once)
        pending = get_decision(w.ctx, req.id).status
        w.gh.comment_as(issue, "/reject not now", "alice")
        await asyncio.to_thread(w.poller.poll_once)
        return pending, await asyncio.wait_for(task, 20), case

    pending, d, case = asyncio.run(scenario())
    assert pending == "pending"
    assert d.outcome == "rejected" and d.decided_by == "alice"
    refused = [e.attrs["rule"] for e in case.timeline(kinds=["note"]) if e.attrs.get("unauthorised")]
    assert refused == ["github:sharedctx-bot is the account sharedctx writes as, not a person"] * 2
