"""PagerDuty, ServiceNow and Jira: a person's note reaches the timeline and every OTHER backend exactly once;
their webhooks are verified (forged and stale refused, nothing recorded); allow-lists decide who decides."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from sharedctx.context import Case
from sharedctx.model import Entry
from tests.humans.conftest import SECRETS, World
from tests.humans.doubles import (
    github_hook,
    jira_comment_payload,
    jira_hook,
    pagerduty_annotated,
    pagerduty_hook,
    servicenow_hook,
)
from tests.humans.test_decisions import ask


def copies(w: World, case: Case, entry: Entry) -> dict[str, int]:
    """How many times `entry` landed in each backend's thread (its machine-copy marker, part 1)."""
    mark = f"sharedctx:entry:{entry.id} part 1/"
    issue = int(w.thread(case.id, "github"))
    inc = w.thread(case.id, "pagerduty")
    sn = w.thread(case.id, "servicenow")
    key = w.thread(case.id, "jira")
    return {
        "github": sum(mark in c["body"] for c in w.gh.comments_of(issue)),
        "pagerduty": sum(mark in (n.get("content") or "") for n in w.pd.notes.get(inc, [])),
        "servicenow": sum(mark in r["value"] for r in w.sn.journal_of(sn)),
        "jira": sum(mark in json.dumps(c["body"]) for c in w.jira.comments.get(key, [])),
    }


def opened(w: World) -> Case:
    case = w.ctx.open_case("payments DB failover", service="payments")
    case.record("finding", "primary DB unreachable from az-b", author="primary:triage")
    w.deliver()
    return case


def the_human_entry(case: Case, name: str) -> Entry:
    (entry,) = [e for e in case.timeline(kinds=["note"]) if e.author.kind == "human" and e.author.name == name]
    return entry


def test_pagerduty_note_reaches_the_timeline_and_is_mirrored_once(world: World) -> None:
    w = world
    case = opened(w)
    inc = w.thread(case.id, "pagerduty")
    w.pd.add_human_note(inc, "Failing over to az-c manually, hold remediation", name="Alice Oncall")
    w.poller.poll_once()
    w.deliver()
    w.poller.poll_once()  # reading everything back again takes nothing in twice
    w.deliver()
    human = the_human_entry(case, "Alice Oncall")
    assert human.attrs["external"]["backend"] == "pagerduty" and human.attrs["external"]["url"]
    assert copies(w, case, human) == {"github": 1, "pagerduty": 0, "servicenow": 1, "jira": 1}
    assert "— Alice Oncall on pagerduty" in human.body  # attribution travels with the mirror
    # ...and the mirror on GitHub/Jira/ServiceNow is ours (machine copy), not read back as a new human comment
    assert [e.author.name for e in case.timeline() if e.author.kind == "human"] == ["Alice Oncall"]


def test_pagerduty_webhook_and_polling_of_the_same_note_count_once(world: World) -> None:
    w = world
    case = opened(w)
    inc = w.thread(case.id, "pagerduty")
    text = "Customer impact confirmed by support"
    w.pd.add_human_note(inc, text)

    async def scenario() -> None:
        body, headers = pagerduty_hook(SECRETS["pagerduty"], pagerduty_annotated(inc, text))
        resp = await w.post("pagerduty", body, headers)
        assert resp.status_code == 200 and resp.json()["results"][0]["duplicate"] is False

    asyncio.run(scenario())
    w.poller.poll_once()
    w.deliver()
    human = the_human_entry(case, "Alice Oncall")
    assert copies(w, case, human) == {"github": 1, "pagerduty": 0, "servicenow": 1, "jira": 1}


def test_pagerduty_allow_listed_user_decides_and_others_do_not(world: World) -> None:
    w = world

    async def scenario() -> tuple[Any, Case]:
        case = w.ctx.open_case("payments DB failover")
        task, _ = await ask(w, case)
        inc = w.thread(case.id, "pagerduty")
        for who, uid in (("Bob Intern", "PBOB0001"), ("Alice Oncall", "PALICE1")):
            body, headers = pagerduty_hook(SECRETS["pagerduty"],
                                           pagerduty_annotated(inc, "/approve", user_id=uid, name=who))
            assert (await w.post("pagerduty", body, headers)).status_code == 200
        return await asyncio.wait_for(task, 20), case

    d, case = asyncio.run(scenario())
    assert d.approved and d.decided_by == "Alice Oncall" and d.rule == "allow:pagerduty"
    (refused,) = [e for e in case.timeline(kinds=["note"]) if e.attrs.get("unauthorised")]
    assert "Bob Intern" in refused.title


def test_pagerduty_forged_or_stale_events_are_refused_and_record_nothing(world: World) -> None:
    w = world
    case = opened(w)
    inc = w.thread(case.id, "pagerduty")
    before = case.info.last_seq

    async def scenario() -> list[int]:
        forged = pagerduty_hook(SECRETS["pagerduty"], pagerduty_annotated(inc, "/note hi"), forge=True)
        stale = pagerduty_hook(SECRETS["pagerduty"], pagerduty_annotated(inc, "/note hi",
                                                                          occurred_at="2020-01-01T00:00:00Z"))
        return [(await w.post("pagerduty", *forged)).status_code, (await w.post("pagerduty", *stale)).status_code]

    assert asyncio.run(scenario()) == [401, 401]
    assert case.info.last_seq == before


def test_servicenow_signed_webhook_note_is_mirrored_once(world: World) -> None:
    w = world
    case = opened(w)
    sn = w.thread(case.id, "servicenow")
    w.sn.add_human_note(sn, "Change freeze is on until 18:00", who="alice.oncall")
    row = w.sn.journal_of(sn)[-1]
    payload = {"type": "journal", **{k: row[k] for k in ("sys_id", "element", "element_id", "value",
                                                         "sys_created_by", "sys_created_on")}}

    async def scenario() -> list[int]:
        ok = await w.post("servicenow", *servicenow_hook(SECRETS["servicenow"], payload, b64=True))
        stale = await w.post("servicenow", *servicenow_hook(SECRETS["servicenow"], payload, ts=time.time() - 3600))
        forged = await w.post("servicenow", *servicenow_hook(SECRETS["servicenow"], payload, forge=True))
        return [ok.status_code, stale.status_code, forged.status_code]

    assert asyncio.run(scenario()) == [200, 401, 401]
    w.poller.poll_once()  # the same journal row by polling: already taken in
    w.deliver()
    human = the_human_entry(case, "alice.oncall")
    assert human.attrs["human"]["via"] == "webhook"
    assert copies(w, case, human) == {"github": 1, "pagerduty": 1, "servicenow": 0, "jira": 1}


def test_jira_comment_by_polling_then_webhook_is_mirrored_once(world: World) -> None:
    w = world
    case = opened(w)
    key = w.thread(case.id, "jira")
    w.jira.add_human_comment(key, "Vendor ticket opened: AWS case 123", name="Alice Oncall")
    w.poller.poll_once()
    comment = w.jira.comments[key][-1]

    async def scenario() -> list[int]:
        good = await w.post("jira", *jira_hook(SECRETS["jira"], jira_comment_payload(key, comment)))
        stale = await w.post("jira", *jira_hook(SECRETS["jira"], jira_comment_payload(key, comment,
                                                                                      timestamp=time.time() - 900)))
        forged = await w.post("jira", *jira_hook(SECRETS["jira"], jira_comment_payload(key, comment), forge=True))
        return [good.status_code, stale.status_code, forged.status_code]

    assert asyncio.run(scenario()) == [200, 401, 401]
    w.deliver()
    human = the_human_entry(case, "Alice Oncall")
    assert copies(w, case, human) == {"github": 1, "pagerduty": 1, "servicenow": 1, "jira": 0}


def test_unknown_events_are_ignored_and_unconfigured_backends_have_no_webhook(world: World) -> None:
    w = world

    async def scenario() -> list[tuple[int, Any]]:
        payload = {"timestamp": int(time.time() * 1000), "webhookEvent": "jira:worklog_updated"}
        ignored = await w.post("jira", *jira_hook(SECRETS["jira"], payload))
        again = await w.post("jira", *jira_hook(SECRETS["jira"], payload))
        missing = await w.post("nowhere", b"{}", {"Content-Type": "application/json"})
        return [(ignored.status_code, ignored.json()), (again.status_code, None), (missing.status_code, None)]

    got = asyncio.run(scenario())
    assert got == [(202, {"ignored": "jira:worklog_updated"}), (202, None), (404, None)]


def test_mirroring_can_be_turned_off(tmp_path: Any, monkeypatch: Any) -> None:
    from tests.humans.conftest import make_world

    w = make_world(tmp_path, monkeypatch, humans={"mirror": False})
    try:
        case = opened(w)
        w.pd.add_human_note(w.thread(case.id, "pagerduty"), "just a note")
        w.poller.poll_once()
        w.deliver()
        human = the_human_entry(case, "Alice Oncall")
        assert copies(w, case, human) == {"github": 0, "pagerduty": 0, "servicenow": 0, "jira": 0}
    finally:
        w.ctx.close()


def test_webhooks_mount_on_the_serve_app(github_only: World) -> None:
    """`sharedctx serve` mounts the webhook app through `build_app(mounts=...)`: same verification there."""
    import httpx

    from sharedctx.server import build_app
    from sharedctx.webhooks import webhook_mount

    w = github_only
    app = build_app(w.ctx, mounts=[webhook_mount(w.ctx, w.humans)])

    async def scenario() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sharedctx") as client:
            unsigned = await client.post("/webhooks/github", content=b"{}", headers={"X-GitHub-Event": "ping"})
            body, headers = github_hook(SECRETS["github"], "ping", {"zen": "hi"})
            signed = await client.post("/webhooks/github", content=body, headers=headers)
            return [unsigned.status_code, signed.status_code]

    assert asyncio.run(scenario()) == [401, 200]
