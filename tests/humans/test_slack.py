"""Slack read-back: the Events API on the serve app (signed, fresh, deduped) and polling, which must agree.

A forged or stale signature is 401 and records nothing; the same reaction arriving by event and by poll
counts once (in both orders); 👍 from a decider decides, from anyone else it is recorded and does not.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from sharedctx.backends.slack import SlackBackend, SlackOptions
from sharedctx.backends.slack.events import signature
from sharedctx.config import parse_config
from sharedctx.context import Case, SharedContext
from sharedctx.humans import Decision, Humans, Poller
from sharedctx.model import Entry
from sharedctx.webhooks import webhooks_app
from tests.doubles.base import specs_available, violations
from tests.doubles.slack import CHANNEL, SlackDouble
from tests.humans.test_decisions import eventually

SECRET = "slack-signing-secret"
ALICE, BOB = "U0ALICE001", "U0BOB00001"

pytestmark = pytest.mark.skipif(not specs_available(), reason="shared/specs not found")


@dataclass
class SlackWorld:
    ctx: SharedContext
    humans: Humans
    poller: Poller
    slack: SlackDouble
    app: Any

    def deliver(self) -> None:
        assert self.ctx.drain(timeout=30)

    def thread(self, case_id: str) -> str:
        return str(self.ctx.store.get_case(case_id).bindings["slack"]["id"])

    def message_of(self, case_id: str, entry: Entry) -> dict[str, Any]:
        (msg,) = [m for m in self.slack.replies(self.thread(case_id))
                  if (self.slack.metadata_of(m) or {}).get("event_payload", {}).get("entry") == entry.id]
        return msg

    async def post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sharedctx") as client:
            return await client.post("/slack", content=body, headers=headers)

    def send(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return asyncio.run(self.post(body, headers))


def signed(payload: dict[str, Any] | bytes, *, secret: str = SECRET, at: float | None = None,
           form: bool = False) -> tuple[bytes, dict[str, str]]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    ts = str(int(time.time() if at is None else at))
    ctype = "application/x-www-form-urlencoded" if form else "application/json"
    return body, {"x-slack-request-timestamp": ts, "x-slack-signature": signature(secret, ts, body),
                  "content-type": ctype}


def event(ev: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {"type": "event_callback", "team_id": "T0ACME0001", "event_id": event_id or f"Ev{time.time_ns()}",
            "event_time": int(time.time()), "event": ev}


def reaction_event(ts: str, user: str, name: str = "+1") -> dict[str, Any]:
    return event({"type": "reaction_added", "user": user, "reaction": name, "item_user": "U0BOT00001",
                  "item": {"type": "message", "channel": CHANNEL, "ts": ts}, "event_ts": f"{time.time():.6f}"})


def reply_event(thread_ts: str, ts: str, user: str, text: str) -> dict[str, Any]:
    return event({"type": "message", "channel": CHANNEL, "user": user, "text": text, "ts": ts,
                  "thread_ts": thread_ts, "event_ts": ts, "channel_type": "channel"})


@pytest.fixture
def sw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SlackWorld]:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test-token")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SECRET)
    before = len(violations())
    d = SlackDouble()
    backend = SlackBackend("slack", SlackOptions(channel=CHANNEL, token="env:SLACK_BOT_TOKEN", posts_per_second=1000,
                                                 max_block=0.0, deciders=[ALICE], interactivity=True),
                           client=httpx.Client(transport=httpx.MockTransport(d.handle)))
    cfg = parse_config({"store": "journal.db", "backends": [{"type": "slack"}], "humans": {
        "poll_interval": 0.05, "wait_interval": 0.02, "webhooks": {"slack": {"secret": "env:SLACK_SIGNING_SECRET"}}}},
        base_dir=tmp_path)
    ctx = SharedContext.open(cfg, backends={"slack": backend}, worker=False)
    h = Humans(ctx)
    yield SlackWorld(ctx, h, Poller(ctx, h), d, webhooks_app(ctx, h))
    ctx.close()
    assert violations()[before:] == [], "a request or response broke Slack's OpenAPI description"


def opened(w: SlackWorld) -> tuple[Case, Entry]:
    case = w.ctx.open_case("payments DB failover", service="payments")
    finding = case.record("finding", "primary DB unreachable from az-b", author="primary:triage")
    w.deliver()
    return case, finding


def human_notes(case: Case) -> list[Entry]:
    """What people did, as taken in (one entry per item; verdicts and decisions follow from them)."""
    return [e for e in case.timeline(kinds=["note"]) if e.author.kind == "human" and "external" in e.attrs]


def test_forged_stale_or_unsigned_events_are_401_and_record_nothing(sw: SlackWorld) -> None:
    case, finding = opened(sw)
    ts = sw.message_of(case.id, finding)["ts"]
    sw.slack.add_reaction(ts, "+1", ALICE)
    before = case.info.last_seq
    payload = reaction_event(ts, ALICE)
    body, good = signed(payload)
    forged = {**good, "x-slack-signature": signature("not-the-secret", good["x-slack-request-timestamp"], body)}
    stale_body, stale = signed(payload, at=time.time() - 301)  # correctly signed, 5 min + 1 s old
    future_body, future = signed(payload, at=time.time() + 400)
    tampered = body.replace(ALICE.encode(), BOB.encode())
    unsigned = {"content-type": "application/json"}
    answers = [sw.send(body, forged).status_code, sw.send(stale_body, stale).status_code,
               sw.send(future_body, future).status_code, sw.send(tampered, good).status_code,
               sw.send(body, unsigned).status_code]
    assert answers == [401] * 5
    assert case.info.last_seq == before and human_notes(case) == []
    assert sw.send(body, good).status_code == 200  # the same event, properly signed, is taken in
    assert len(human_notes(case)) == 1


def test_url_verification_is_answered_only_when_signed(sw: SlackWorld) -> None:
    challenge = {"type": "url_verification", "token": "legacy",
                 "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
    resp = sw.send(*signed(challenge))
    assert resp.status_code == 200 and resp.json() == {"challenge": challenge["challenge"]}
    assert sw.send(*signed(challenge, secret="wrong")).status_code == 401


def test_the_same_reaction_by_event_and_by_poll_counts_once_in_either_order(sw: SlackWorld) -> None:
    case, finding = opened(sw)
    ts = sw.message_of(case.id, finding)["ts"]
    sw.slack.add_reaction(ts, "+1", ALICE)
    assert sw.send(*signed(reaction_event(ts, ALICE))).status_code == 200  # event first
    sw.poller.poll_once()  # then the poll sees the same reaction
    sw.slack.add_reaction(ts, "thumbsdown::skin-tone-3", BOB)
    sw.poller.poll_once()  # poll first
    assert sw.send(*signed(reaction_event(ts, BOB, "thumbsdown::skin-tone-3"))).status_code == 200
    sw.poller.poll_once()
    notes = human_notes(case)
    assert sorted((n.attrs["external"]["id"], n.ref) for n in notes) == [
        (f"reaction:{CHANNEL}:{ts}:{ALICE}:+1", finding.id), (f"reaction:{CHANNEL}:{ts}:{BOB}:-1", finding.id)]
    assert {n.author.name for n in notes} == {"alice", "bob"}  # names resolved both ways


def test_a_thumbs_up_from_a_decider_decides_and_from_anyone_else_does_not(sw: SlackWorld) -> None:
    async def scenario() -> tuple[Decision, Case]:
        case = sw.ctx.open_case("checkout 5xx", service="checkout")
        task = asyncio.create_task(case.request_decision("Roll back deploy 4411?", ("approve", "reject"), timeout=60))
        (req,) = await eventually(lambda: case.timeline(kinds=["decision-request"]), "the request is recorded")
        await asyncio.to_thread(sw.deliver)
        msg = sw.message_of(case.id, req)
        assert any(b["type"] == "actions" for b in msg["blocks"])  # buttons: interactivity is on
        sw.slack.add_reaction(msg["ts"], "+1", BOB)
        await asyncio.to_thread(sw.poller.poll_once)  # Bob's 👍 by polling (reactions.get): not a decider
        assert not task.done()
        assert (await sw.post(*signed(reaction_event(msg["ts"], ALICE)))).status_code == 200
        return await asyncio.wait_for(task, 20), case

    d, case = asyncio.run(scenario())
    assert d.approved and d.decided_by == "alice" and d.rule is not None and d.rule.startswith("slack:deciders")
    (refused,) = [e for e in case.timeline(kinds=["note"]) if e.attrs.get("unauthorised")]
    assert "bob" in refused.title


def test_a_button_click_decides_and_a_threaded_reply_is_taken_in_once(sw: SlackWorld) -> None:
    async def scenario() -> tuple[Decision, Case]:
        case = sw.ctx.open_case("checkout 5xx", service="checkout")
        task = asyncio.create_task(case.request_decision("Fail over?", ("approve", "reject"), timeout=60))
        (req,) = await eventually(lambda: case.timeline(kinds=["decision-request"]), "the request is recorded")
        await asyncio.to_thread(sw.deliver)
        msg, thread = sw.message_of(case.id, req), sw.thread(case.id)
        reply = sw.slack.add_human_reply(
            thread, "looking at the failover runbook &amp; the <https://grafana.example/d/1|dash>", BOB)
        assert (await sw.post(*signed(reply_event(thread, reply["ts"], BOB, reply["text"])))).status_code == 200
        await asyncio.to_thread(sw.poller.poll_once)
        click = {"type": "block_actions", "user": {"id": ALICE, "username": "alice"}, "trigger_id": "1.2.3",
                 "container": {"type": "message", "message_ts": msg["ts"], "channel_id": CHANNEL,
                               "thread_ts": thread},
                 "channel": {"id": CHANNEL}, "message": {"ts": msg["ts"], "thread_ts": thread},
                 "actions": [{"action_id": "sharedctx_approve", "value": req.id, "action_ts": f"{time.time():.6f}",
                              "type": "button"}]}
        body = urlencode({"payload": json.dumps(click)}).encode()
        assert (await sw.post(*signed(body, form=True))).status_code == 200
        return await asyncio.wait_for(task, 20), case

    d, case = asyncio.run(scenario())
    assert d.approved and d.decided_by == "alice"
    (click,) = [n for n in human_notes(case) if n.attrs["external"]["id"].startswith("action:")]
    assert click.attrs["external"]["url"].startswith("https://acme.slack.com/archives/C0INCIDENT1/p")
    replies = [n for n in human_notes(case) if n.attrs["human"]["kind"] == "comment" and n.author.name == "bob"]
    assert len(replies) == 1
    assert "looking at the failover runbook & the dash (https://grafana.example/d/1)" in replies[0].body


def test_our_own_posts_and_other_channels_are_not_taken_for_people(sw: SlackWorld) -> None:
    case, finding = opened(sw)
    thread = sw.thread(case.id)
    mine = sw.message_of(case.id, finding)
    ours = event({"type": "message", "channel": CHANNEL, "user": "U0BOT00001", "bot_id": "B0BOT00001",
                  "text": mine["text"], "ts": mine["ts"], "thread_ts": thread})
    elsewhere = reply_event(thread, "1760000999.000001", ALICE, "wrong room")
    elsewhere["event"]["channel"] = "C0ELSEWHER1"
    edit = event({"type": "message", "subtype": "message_changed", "channel": CHANNEL, "ts": "1760000999.000002"})
    assert [sw.send(*signed(p)).status_code for p in (ours, elsewhere)] == [200, 200]
    assert sw.send(*signed(edit)).status_code == 202
    sw.poller.poll_once()
    assert human_notes(case) == []


def test_a_button_click_in_another_channel_on_a_thread_with_our_ts_decides_nothing(sw: SlackWorld) -> None:
    """Clicks are taken from any channel (older cases live in the channel they were bound in), so the
    channel the click names is what keeps them apart: a thread ts names a message only within its channel.
    A click carrying our request id, in another channel's thread with our thread's ts, or naming no
    channel at all, reaches no case; the same click in our channel decides."""
    async def scenario() -> tuple[Decision, list[dict[str, Any]]]:
        case = sw.ctx.open_case("checkout 5xx", service="checkout")
        task = asyncio.create_task(case.request_decision("Fail over?", ("approve", "reject"), timeout=60))
        (req,) = await eventually(lambda: case.timeline(kinds=["decision-request"]), "the request is recorded")
        await asyncio.to_thread(sw.deliver)
        msg, thread = sw.message_of(case.id, req), sw.thread(case.id)

        def click(channel: str | None) -> bytes:
            c: dict[str, Any] = {
                "type": "block_actions", "user": {"id": ALICE, "username": "alice"}, "trigger_id": "1.2.3",
                "container": {"type": "message", "message_ts": msg["ts"], "thread_ts": thread},
                "message": {"ts": msg["ts"], "thread_ts": thread},
                "actions": [{"action_id": "sharedctx_approve", "value": req.id, "action_ts": f"{time.time():.6f}",
                             "type": "button"}]}
            if channel is not None:
                c["container"]["channel_id"] = channel
                c["channel"] = {"id": channel}
            return urlencode({"payload": json.dumps(c)}).encode()

        answers = []
        for channel in ("C0ELSEWHER1", "G0PRIVATE01", "D0DIRECTMSG", None):
            resp = await sw.post(*signed(click(channel), form=True))
            assert resp.status_code == 200, resp.text
            answers.append(resp.json())
        assert not task.done() and case.timeline(kinds=["decision"]) == []
        assert (await sw.post(*signed(click(CHANNEL), form=True))).status_code == 200
        return await asyncio.wait_for(task, 20), answers

    d, answers = asyncio.run(scenario())
    assert [r["case"] for a in answers for r in a["results"]] == [None] * 4
    assert d.approved and d.decided_by == "alice"
