"""Decision requests answered on GitHub (webhook, polling, reaction), authorisation, conflicts, timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from sharedctx.context import Case
from sharedctx.humans import Decision, get_decision, parse_command
from sharedctx.model import Entry
from tests.humans.conftest import SECRETS, World
from tests.humans.doubles import github_comment_payload, github_hook


async def eventually(probe: Callable[[], Any], what: str, bound: float = 20.0) -> Any:
    """Wait for `probe()` to be truthy: a liveness bound, not a timing assertion."""
    loop = asyncio.get_running_loop()
    end = loop.time() + bound
    while loop.time() < end:
        got = await asyncio.to_thread(probe)
        if got:
            return got
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def ask(w: World, case: Case, **kw: Any) -> tuple[asyncio.Task[Decision], Entry]:
    kw.setdefault("timeout", 60)
    task = asyncio.create_task(case.request_decision("Roll back deploy 4411?", ("approve", "reject"), **kw))
    (req,) = await eventually(lambda: case.timeline(kinds=["decision-request"]), "the request is recorded")
    await asyncio.to_thread(w.deliver)
    return task, req


def kinds(case: Case) -> list[tuple[str, str]]:
    return [(e.kind.value, str(e.author)) for e in case.timeline()]


def test_commands_parse_and_typos_are_recognised_as_such() -> None:
    assert parse_command("/approve") == parse_command("  /approve  ")
    assert parse_command("/reject p99 still up\nsee graph").arg == "p99 still up\nsee graph"  # type: ignore[union-attr]
    typo = parse_command("/aprove")
    assert typo is not None and typo.name is None and typo.guess == "approve"
    assert parse_command("lgtm, go ahead") is None
    assert parse_command("/frobnicate").guess is None  # type: ignore[union-attr]


def test_authorised_approve_by_signed_webhook_lets_the_agent_proceed(github_only: World) -> None:
    w = github_only
    w.gh.roles["alice"] = "write"

    async def scenario() -> Decision:
        case = w.ctx.open_case("checkout 5xx", service="checkout")
        task, req = await ask(w, case)
        issue = int(w.thread(case.id, "github"))
        assert "/approve" in w.gh.comment_for_entry(issue, req.id)["body"]  # people see how to answer
        comment = w.gh.comment_as(issue, "/approve", "alice")
        body, headers = github_hook(SECRETS["github"], "issue_comment", github_comment_payload(w.gh, issue, comment))
        resp = await w.post("github", body, headers)
        assert resp.status_code == 200, resp.text
        return await asyncio.wait_for(task, 20)

    d = asyncio.run(scenario())
    assert d.approved and d.outcome == "approved" and d.decided_by == "alice"
    assert d.rule == "github:permission>=write (write)"
    assert d.entry is not None and d.entry.attrs["via"] == "github" and d.entry.attrs["source"]["url"]


def test_approve_by_polling_only(github_only: World) -> None:
    w = github_only
    w.gh.roles["alice"] = "admin"

    async def scenario() -> Decision:
        case = w.ctx.open_case("checkout 5xx")
        task, _ = await ask(w, case)
        w.gh.comment_as(int(w.thread(case.id, "github")), "/approve", "alice")
        poller = asyncio.create_task(w.poller.run())
        try:
            return await asyncio.wait_for(task, 20)
        finally:
            poller.cancel()

    d = asyncio.run(scenario())
    assert d.approved and d.decided_by == "alice" and "(admin)" in (d.rule or "")


def test_approve_by_thumbs_up_reaction_on_the_request(github_only: World) -> None:
    w = github_only
    w.gh.roles["carol"] = "maintain"

    async def scenario() -> Decision:
        case = w.ctx.open_case("checkout 5xx")
        task, req = await ask(w, case)
        comment = w.gh.comment_for_entry(int(w.thread(case.id, "github")), req.id)
        w.gh.react(comment["id"], "+1", "carol")
        await asyncio.to_thread(w.poller.poll_once)
        return await asyncio.wait_for(task, 20)

    d = asyncio.run(scenario())
    assert d.approved and d.decided_by == "carol"


def test_thumbs_down_rejects(github_only: World) -> None:
    w = github_only
    w.gh.roles["carol"] = "write"

    async def scenario() -> Decision:
        case = w.ctx.open_case("checkout 5xx")
        task, req = await ask(w, case)
        w.gh.react(w.gh.comment_for_entry(int(w.thread(case.id, "github")), req.id)["id"], "-1", "carol")
        await asyncio.to_thread(w.poller.poll_once)
        return await asyncio.wait_for(task, 20)

    d = asyncio.run(scenario())
    assert d.outcome == "rejected" and not d.approved


def test_unauthorised_approve_is_recorded_and_does_not_decide(github_only: World) -> None:
    w = github_only
    w.gh.roles["bob"] = "read"  # a collaborator, but read-only; mallory is not one at all
    w.gh.roles["alice"] = "write"

    async def scenario() -> tuple[Decision, Case]:
        case = w.ctx.open_case("checkout 5xx")
        task, req = await ask(w, case)
        issue = int(w.thread(case.id, "github"))
        w.gh.comment_as(issue, "/approve", "bob")
        w.gh.comment_as(issue, "/approve ship it", "mallory")
        await asyncio.to_thread(w.poller.poll_once)
        assert get_decision(w.ctx, req.id).status == "pending"
        assert not task.done()
        w.gh.comment_as(issue, "/reject too risky at peak", "alice")
        await asyncio.to_thread(w.poller.poll_once)
        return await asyncio.wait_for(task, 20), case

    d, case = asyncio.run(scenario())
    assert d.outcome == "rejected" and d.decided_by == "alice" and d.reason == "too risky at peak"
    refused = [e for e in case.timeline(kinds=["note"]) if e.attrs.get("unauthorised")]
    assert [e.attrs["rule"] for e in refused] == ["github:permission>=write (read)", "github:permission>=write (none)"]
    humans = [e for e in case.timeline(kinds=["note"]) if e.author.kind == "human"]
    assert [e.author.name for e in humans] == ["bob", "mallory", "alice"]  # every comment is in the journal


def test_first_authorised_answer_wins_and_a_later_one_is_recorded(github_only: World) -> None:
    w = github_only
    w.gh.roles.update(alice="write", dave="admin")

    async def scenario() -> tuple[Decision, Case]:
        case = w.ctx.open_case("checkout 5xx")
        task, _ = await ask(w, case)
        issue = int(w.thread(case.id, "github"))
        w.gh.comment_as(issue, "/approve", "alice")
        w.gh.comment_as(issue, "/reject no", "dave")
        await asyncio.to_thread(w.poller.poll_once)
        return await asyncio.wait_for(task, 20), case

    d, case = asyncio.run(scenario())
    assert d.outcome == "approved" and d.decided_by == "alice"
    assert len(case.timeline(kinds=["decision"])) == 1
    (conflict,) = [e for e in case.timeline(kinds=["note"]) if e.attrs.get("conflict")]
    assert conflict.attrs["outcome_claimed"] == "rejected" and "approved by alice" in conflict.title


def test_timeout_takes_the_configured_default_and_records_it(github_only: World) -> None:
    w = github_only

    async def scenario() -> tuple[Decision, Case]:
        case = w.ctx.open_case("checkout 5xx")
        task, _ = await ask(w, case, timeout=0.2, on_timeout="default", default="reject")
        return await asyncio.wait_for(task, 20), case

    d, case = asyncio.run(scenario())
    assert d.outcome == "timeout" and d.choice == "reject" and d.rule == "timeout:default" and not d.approved
    (entry,) = case.timeline(kinds=["decision"])
    assert entry.author.kind == "system" and entry.attrs["outcome"] == "timeout"


def test_timeout_with_escalate_stays_pending_and_a_later_answer_still_decides(github_only: World) -> None:
    w = github_only
    w.gh.roles["alice"] = "write"

    async def scenario() -> tuple[Decision, Decision]:
        case = w.ctx.open_case("checkout 5xx")
        task, req = await ask(w, case, timeout=0.2, on_timeout="escalate")
        first = await asyncio.wait_for(task, 20)
        w.gh.comment_as(int(w.thread(case.id, "github")), "/approve", "alice")
        await asyncio.to_thread(w.deliver)
        await asyncio.to_thread(w.poller.poll_once)
        return first, get_decision(w.ctx, req.id)

    first, later = asyncio.run(scenario())
    assert first.status == "pending" and first.escalated and first.outcome is None
    assert later.outcome == "approved" and later.decided_by == "alice"


def test_the_same_answer_by_webhook_and_by_polling_counts_once(github_only: World) -> None:
    w = github_only
    w.gh.roles["alice"] = "write"

    async def scenario() -> Case:
        case = w.ctx.open_case("checkout 5xx")
        task, _ = await ask(w, case)
        issue = int(w.thread(case.id, "github"))
        comment = w.gh.comment_as(issue, "/approve", "alice")
        body, headers = github_hook(SECRETS["github"], "issue_comment", github_comment_payload(w.gh, issue, comment))
        assert (await w.post("github", body, headers)).status_code == 200
        await asyncio.to_thread(w.poller.poll_once)
        again = await w.post("github", body, headers)  # the service retries the same delivery
        assert again.json() == {"duplicate": headers["X-GitHub-Delivery"]}
        body2, headers2 = github_hook(SECRETS["github"], "issue_comment", github_comment_payload(w.gh, issue, comment))
        replay = await w.post("github", body2, headers2)  # same comment, new delivery id (a replay)
        assert replay.json()["results"][0]["duplicate"] is True
        await asyncio.wait_for(task, 20)
        return case

    case = asyncio.run(scenario())
    assert len([e for e in case.timeline(kinds=["note"]) if e.author.name == "alice"]) == 1
    assert len(case.timeline(kinds=["decision"])) == 1


def test_an_organisation_webhook_for_another_repos_issue_with_the_same_number_decides_nothing(
        github_only: World) -> None:
    """An organisation webhook delivers the issues of every repo in it, signed with the one secret. Issue
    numbers are per repo: an approver's "/approve" on issue #N of another repo is not an answer on our #N."""
    w = github_only
    w.gh.roles["alice"] = "write"

    async def scenario() -> tuple[Case, dict[str, Any]]:
        case = w.ctx.open_case("checkout 5xx")
        task, _ = await ask(w, case, timeout=0.5, on_timeout="escalate")
        issue = int(w.thread(case.id, "github"))
        before = case.info.last_seq
        comment = w.gh.comment_as(issue, "/approve", "alice")
        payload = github_comment_payload(w.gh, issue, comment)
        elsewhere = {**payload, "repository": {"full_name": "acme/some-other-repo"},
                     "issue": {**payload["issue"], "html_url": "https://github.com/acme/some-other-repo/issues/1"}}
        resp = await w.post("github", *github_hook(SECRETS["github"], "issue_comment", elsewhere))
        assert resp.status_code == 200, resp.text
        assert case.info.last_seq == before  # not recorded into our case
        closed = {"action": "closed", "issue": {**elsewhere["issue"], "closed_at": "2026-01-01T00:00:00Z"},
                  "repository": elsewhere["repository"], "sender": comment["user"]}
        await w.post("github", *github_hook(SECRETS["github"], "issues", closed))
        d = await asyncio.wait_for(task, 20)
        assert d.status == "pending" and d.outcome is None  # timed out undecided, not approved
        # the same repo, named as GitHub spells it (another case than the config's): still our thread
        same = {**payload, "repository": {"full_name": w.gh.repo.upper()}}
        again = await w.post("github", *github_hook(SECRETS["github"], "issue_comment", same))
        return case, {"elsewhere": resp.json(), "same": again.json()}

    case, got = asyncio.run(scenario())
    [result] = got["elsewhere"]["results"]
    assert result["case"] is None and "acme/some-other-repo" in result["meaning"]
    assert got["same"]["results"][0]["case"] == case.id
    assert case.info.status != "resolved"


def test_a_forged_signature_is_refused_and_nothing_is_recorded(github_only: World) -> None:
    w = github_only
    w.gh.roles["alice"] = "write"

    async def scenario() -> Case:
        case = w.ctx.open_case("checkout 5xx")
        task, _ = await ask(w, case, timeout=0.3, on_timeout="escalate")
        issue = int(w.thread(case.id, "github"))
        comment = w.gh.comment_as(issue, "/approve", "alice")
        before = case.info.last_seq
        body, headers = github_hook(SECRETS["github"], "issue_comment", github_comment_payload(w.gh, issue, comment),
                                    forge=True)
        resp = await w.post("github", body, headers)
        assert resp.status_code == 401 and "X-Hub-Signature-256" in resp.json()["error"]
        unsigned = {k: v for k, v in headers.items() if k != "X-Hub-Signature-256"}
        assert (await w.post("github", body, unsigned)).status_code == 401
        assert case.info.last_seq == before
        assert w.ctx.store.action_entry("github", str(comment["id"])) is None
        # the forged delivery id was not burnt either: the genuine delivery with the same id still counts
        good_body, good = github_hook(SECRETS["github"], "issue_comment",
                                      github_comment_payload(w.gh, issue, comment),
                                      delivery=headers["X-GitHub-Delivery"])  # fmt: skip
        assert (await w.post("github", good_body, good)).status_code == 200
        assert (await asyncio.wait_for(task, 20)).outcome == "approved"
        return case

    asyncio.run(scenario())


def test_a_typo_gets_a_reply_in_that_thread_saying_what_was_understood(world: World) -> None:
    w = world
    w.gh.roles["alice"] = "write"

    async def scenario() -> tuple[Case, Entry]:
        case = w.ctx.open_case("checkout 5xx")
        task, req = await ask(w, case, timeout=0.3, on_timeout="escalate")
        issue = int(w.thread(case.id, "github"))
        w.gh.comment_as(issue, "/aprove", "alice")
        await asyncio.to_thread(w.poller.poll_once)
        await asyncio.to_thread(w.deliver)
        await asyncio.wait_for(task, 20)
        return case, req

    case, req = asyncio.run(scenario())
    assert get_decision(w.ctx, req.id).status == "pending"  # a guess never decides
    (reply,) = [e for e in case.timeline(kinds=["note"]) if e.attrs.get("typed") == "aprove"]
    assert reply.attrs["understood"] == "approve" and "/approve" in reply.title
    issue = int(w.thread(case.id, "github"))
    assert any(reply.id in c["body"] and "Did you mean" in c["body"] for c in w.gh.comments_of(issue))
    assert not any(reply.id in (n.get("content") or "") for ns in w.pd.notes.values() for n in ns)  # that thread only


def test_a_decision_on_a_resolved_case_is_a_note_saying_so(github_only: World) -> None:
    w = github_only
    w.gh.roles["alice"] = "write"

    async def scenario() -> tuple[Case, Entry]:
        case = w.ctx.open_case("checkout 5xx")
        task, req = await ask(w, case, timeout=0.2, on_timeout="escalate")
        await asyncio.wait_for(task, 20)
        case.resolve("Recovered on its own")
        await asyncio.to_thread(w.deliver)
        w.gh.comment_as(int(w.thread(case.id, "github")), "/approve", "alice")
        await asyncio.to_thread(w.poller.poll_once)
        return case, req

    case, req = asyncio.run(scenario())
    assert get_decision(w.ctx, req.id).status == "pending"
    assert [e for e in case.timeline(kinds=["note"]) if e.attrs.get("late")]


def test_override_is_a_decision_and_search_finds_what_humans_overrode(github_only: World) -> None:
    w = github_only
    w.gh.roles["alice"] = "write"

    async def scenario() -> tuple[Decision, Entry]:
        case = w.ctx.open_case("checkout 5xx")
        task, req = await ask(w, case)
        w.gh.comment_as(int(w.thread(case.id, "github")), "/override scale out to 6 replicas instead", "alice")
        await asyncio.to_thread(w.poller.poll_once)
        return await asyncio.wait_for(task, 20), req

    d, req = asyncio.run(scenario())
    assert d.outcome == "overridden" and d.instead == "scale out to 6 replicas instead"
    assert w.ctx.store.get_entry(req.id).title == "Roll back deploy 4411?"  # the request itself is untouched
    (found,) = w.ctx.search("outcome:overridden").cases  # "what did a human override?"
    assert found.outcome is not None and "scale out to 6 replicas instead" in found.outcome.overridden[0]


def test_verdicts_on_findings(github_only: World) -> None:
    w = github_only
    case = w.ctx.open_case("checkout 5xx")
    f1 = case.record("finding", "p99 latency up 8x since deploy 4411", author="primary:triage")
    f2 = case.record("finding", "DB connection pool exhausted", author="partner:telemetry")
    w.deliver()
    issue = int(w.thread(case.id, "github"))
    w.gh.react(w.gh.comment_for_entry(issue, f1.id)["id"], "+1", "erin")
    w.gh.comment_as(issue, f"/dispute {f2.id} the pool graph is per-pod, not global", "erin")
    w.poller.poll_once()
    verdicts = {e.ref: e.attrs for e in case.timeline(kinds=["note"]) if e.attrs.get("verdict")}
    assert verdicts[f1.id]["verdict"] == "verified"
    assert verdicts[f2.id]["verdict"] == "disputed"
    assert verdicts[f2.id]["reason"] == "the pool graph is per-pod, not global"
    assert [c.case_id for c in w.ctx.search("outcome:disputed").cases] == [case.id]


def test_a_human_closing_the_issue_is_a_human_resolution(world: World) -> None:
    w = world
    case = w.ctx.open_case("checkout 5xx")
    case.record("finding", "p99 latency up", author="primary:triage")
    w.deliver()
    w.gh.close_as(int(w.thread(case.id, "github")), "alice")
    w.poller.poll_once()
    (res,) = case.timeline(kinds=["resolution"])
    assert res.author.name == "alice" and res.attrs["human_resolution"] and case.status.value == "resolved"
    w.deliver()
    assert w.pd.incidents[w.thread(case.id, "pagerduty")]["status"] == "resolved"  # the other threads follow
    w.poller.poll_once()
    assert len(case.timeline(kinds=["resolution"])) == 1


def test_our_own_resolution_is_not_mistaken_for_a_human_closing(github_only: World) -> None:
    w = github_only
    case = w.ctx.open_case("checkout 5xx")
    case.resolve("done")
    w.deliver()
    assert w.gh.issues[int(w.thread(case.id, "github"))]["state"] == "closed"
    w.poller.poll_once()
    assert [e.kind.value for e in case.timeline()] == ["resolution"]


@pytest.mark.parametrize("etags", [True, False])
def test_polling_an_unchanged_thread_is_conditional(github_only: World, etags: bool) -> None:
    w = github_only
    w.gh.etags = etags
    case = w.ctx.open_case("checkout 5xx")
    case.record("finding", "p99 latency up", author="primary:triage")
    w.deliver()
    w.poller.poll_once()
    full = w.gh.full_answers
    w.poller.poll_once()
    w.poller.poll_once()
    if etags:
        assert w.gh.full_answers == full and w.gh.not_modified >= 4  # comments + issue, twice: all 304
    else:
        assert w.gh.full_answers >= full + 4 and w.gh.not_modified == 0
