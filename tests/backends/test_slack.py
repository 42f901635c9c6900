"""The Slack connector against its spec-checked double: the shared suite, plus what is special to Slack."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.backends import harness
from tests.backends.harness import Harness
from tests.backends.suite import *  # noqa: F403  (the shared behaviour suite)


@pytest.fixture
def svc(monkeypatch: pytest.MonkeyPatch) -> Harness:
    return harness.slack(monkeypatch)


# ---- Slack answers 200 with ok:false: one table maps the codes --------------------------------------------
@pytest.mark.parametrize(("code", "cls", "words"), [
    ("invalid_auth", "AuthFailed", "not valid"), ("not_authed", "AuthFailed", "no token"),
    ("account_inactive", "AuthFailed", "deactivated"), ("token_revoked", "AuthFailed", "revoked"),
    ("missing_scope", "AuthFailed", "scope"), ("channel_not_found", "Rejected", "channel ID"),
    ("not_in_channel", "Rejected", "/invite"), ("is_archived", "Rejected", "archived"),
    ("fatal_error", "Ambiguous", "may have been applied"), ("invalid_blocks", "Rejected", "invalid_blocks"),
    ("metadata_too_large", "Rejected", 'machine_copy = "text"'), ("some_new_code", "Rejected", "some_new_code"),
])
def test_ok_false_codes_map_to_the_right_error_class_in_plain_words(svc: Harness, code: str, cls: str,
                                                                     words: str) -> None:
    from sharedctx import errors
    from tests.backends.conftest import make_case, make_chain

    b = svc.backend
    thread = b.bind(case := make_case())
    svc.double.error_next.append((code, "chat.postMessage"))
    with pytest.raises(errors.BackendError) as err:
        b.append(thread, make_chain(case.id, 1)[0])
    assert type(err.value) is getattr(errors, cls) and words in str(err.value)
    assert svc.double.replies(thread.id) == []  # nothing landed


def test_a_missing_scope_names_what_is_needed(svc: Harness) -> None:
    from sharedctx.errors import AuthFailed

    b = svc.backend
    resp = b._error("chat.postMessage", {"ok": False, "error": "missing_scope", "needed": "chat:write",
                                         "provided": "channels:history"}, not_found=None)
    assert isinstance(resp, AuthFailed) and "needed: chat:write" in str(resp) and "has: channels:history" in str(resp)


def test_ratelimited_429_is_retryable_after_retry_after_and_holds_that_methods_pacer(svc: Harness) -> None:
    from sharedctx.errors import Ambiguous, Retryable
    from tests.backends.conftest import make_case, make_chain

    b = svc.backend
    thread = b.bind(case := make_case())
    svc.double.inject("429", retry_after=12, path="chat.postMessage")
    with pytest.raises(Retryable) as err:
        b.append(thread, make_chain(case.id, 1)[0])
    assert not isinstance(err.value, Ambiguous) and err.value.retry_after == 12
    with pytest.raises(Retryable, match="pacing"):
        b.pacers["post"].acquire()  # every thread posting through this backend now waits
    b.pacers["read"].acquire()  # reads have their own tier and are not held


def test_posts_are_paced_per_channel_at_about_one_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    from sharedctx.errors import Retryable
    from tests.backends.conftest import make_case, make_chain

    now = [0.0]
    svc = harness.slack(monkeypatch)
    b = svc.make(posts_per_second=1.0, max_block=0.0)
    b.pacers["post"]._clock = lambda: now[0]
    thread = b.bind(case := make_case())  # the root post takes this second's slot
    e1, e2 = make_chain(case.id, 2)
    with pytest.raises(Retryable, match="pacing") as err:
        b.append(thread, e1)
    assert err.value.retry_after == pytest.approx(1.1)  # one second plus the pacing margin
    now[0] += 1.05
    with pytest.raises(Retryable, match="pacing"):
        b.append(thread, e1)
    now[0] += 0.05
    b.append(thread, e1)
    now[0] += 1.1
    b.append(thread, e2)
    assert b.read_back(thread).entries == [e1, e2]


# ---- msg_too_long: render smaller parts ---------------------------------------------------------------
def test_msg_too_long_renders_smaller_parts_and_nothing_is_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.backends.conftest import make_case, make_chain

    svc = harness.slack(monkeypatch, max_text=3_000)  # a workspace that refuses what our budget allows
    b = svc.make(max_message_chars=20_000)
    thread = b.bind(case := make_case())
    big = make_chain(case.id, 1, body="p99 spans by region, all of them. " * 400 + "THE-END")[0]
    before = len(b.render(big))
    b.append(thread, big)
    assert len(b.render(big)) > before  # the backend keeps the smaller budget
    assert b.read_back(thread).entries == [big]
    assert all(len(m["text"]) <= 3_000 for m in svc.double.replies(thread.id))


def test_msg_too_long_after_some_parts_landed_leaves_orphans_that_never_mix(svc: Harness) -> None:
    from tests.backends.conftest import make_case, make_chain

    b = svc.make(max_message_chars=12_000)
    thread = b.bind(case := make_case())
    big = make_chain(case.id, 1, body="x " * 20_000 + "THE-END")[0]
    assert len(b.render(big)) >= 2
    real_post = svc.double._post
    calls = [0]

    def second_post_too_long(args: dict) -> object:
        calls[0] += 1
        return svc.double.fail("msg_too_long") if calls[0] == 2 else real_post(args)

    svc.double._post = second_post_too_long  # type: ignore[method-assign]
    b.append(thread, big)
    assert b.read_back(thread).entries == [big] and b.lookup(thread, big.id) is not None
    totals = {svc.double.metadata_of(m)["event_payload"]["of"] for m in svc.double.replies(thread.id)}
    assert len(totals) == 2  # the first rendering's part 1 is still there, ignored


# ---- rendering --------------------------------------------------------------------------------------
def test_people_see_blocks_and_readable_text_and_no_machine_copy(svc: Harness) -> None:
    from tests.backends.conftest import make_case, make_chain

    b = svc.backend
    thread = b.bind(case := make_case())
    (e,) = make_chain(case.id, 1)
    b.append(thread, e)
    (msg,) = svc.double.replies(thread.id)
    visible = msg["text"] + json.dumps(msg["blocks"])
    copy = svc.double.metadata_of(msg)["event_payload"]["copy"]
    assert copy and copy.split("\n")[0] not in visible  # the machine copy is only in metadata
    assert e.title in msg["text"] and "**" not in msg["text"]
    assert "<https://grafana.example/d/1|dashboard>" in msg["text"]  # Markdown links as mrkdwn links
    assert {blk["type"] for blk in msg["blocks"]} <= {"section", "context", "actions"}


def test_the_text_fallback_copy_round_trips_when_metadata_is_off(svc: Harness) -> None:
    from tests.backends.conftest import make_case, make_chain

    b = svc.make(machine_copy="text")
    case = make_case()
    thread = b.bind(case)
    assert b.bind(case).id == thread.id  # found again by the text marker
    entries = make_chain(case.id, 2)
    entries += make_chain(case.id, 1, body="long & <odd> " * 3000, start=3, prev=entries[1].hash)
    for e in entries:
        b.append(thread, e)
    assert len(b.render(entries[2])) > 1
    assert b.read_back(thread).entries == entries
    assert all(svc.double.metadata_of(m) is None for m in svc.double.replies(thread.id))
    b.resolve(thread, entries[0])
    assert b.read_back(thread).humans == []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=3000),
       title=st.text(min_size=1, max_size=200))
def test_any_entry_text_round_trips_through_slack(svc: Harness, body: str, title: str) -> None:
    from tests.backends.conftest import make_case, make_chain

    b = svc.make(max_message_chars=2_000)
    thread = b.bind(case := make_case())
    (e,) = make_chain(case.id, 1, body=body or "x")
    e = e.model_copy(update={"title": title})
    e = e.model_copy(update={"hash": e.compute_hash()})
    b.append(thread, e)
    assert b.read_back(thread).entries == [e]


# ---- check() and the starter config --------------------------------------------------------------
def test_check_reports_token_scopes_channel_and_membership(monkeypatch: pytest.MonkeyPatch) -> None:
    svc = harness.slack(monkeypatch)
    assert all(c.ok for c in svc.backend.check())
    svc = harness.slack(monkeypatch, scopes="chat:write,users:read")
    svc.double.member = False
    got = {c.what: c for c in svc.backend.check()}
    assert not got["scopes"].ok and "channels:history" in got["scopes"].detail and "reinstall" in got["scopes"].detail
    assert not got["membership"].ok and "/invite" in got["membership"].detail
    svc.double.auth_ok = False
    (bad,) = svc.backend.check()
    assert not bad.ok and bad.what == "credentials" and "invalid_auth" in bad.detail


def test_the_starter_config_example_builds_a_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    import re
    import tomllib

    from sharedctx.backends import make_backend
    from sharedctx.cli import STARTER
    from sharedctx.config import BackendSettings

    block = STARTER[STARTER.index('# type = "slack"'):].split("\n\n")[0]
    table = tomllib.loads("\n".join(re.sub(r"^# ?", "", ln).split("  #")[0] for ln in block.splitlines()))
    backend = make_backend(BackendSettings.model_validate(table))
    assert backend.type == "slack" and backend.options.deciders == ["U0123ABCD"]


def test_deciders_are_user_ids_or_the_current_members_of_a_user_group(monkeypatch: pytest.MonkeyPatch) -> None:
    from sharedctx.backends.base import HumanItem
    from sharedctx.errors import Rejected
    from sharedctx.model import Author

    svc = harness.slack(monkeypatch)
    svc.double.groups["S0ONCALL01"] = ["U0BOB00001"]
    b = svc.make(deciders=["U0ALICE001", "S0ONCALL01"], group_ttl=0)

    def by(user: str, backend: str = "slack") -> HumanItem:
        return HumanItem(backend=backend, external_id="1", author=Author(kind="human", name=user), at="",
                         raw={"user_id": user})

    assert b.authorize(by("U0ALICE001")) == (True, "slack:deciders (U0ALICE001)")
    assert b.authorize(by("U0BOB00001")) == (True, "slack:deciders (U0BOB00001 in user group S0ONCALL01)")
    assert b.authorize(by("U0MALLORY1"))[0] is False  # type: ignore[index]
    assert b.authorize(by("U0ALICE001", backend="github")) is None  # not ours to say
    svc.double.groups["S0ONCALL01"] = []  # Bob handed over the pager
    assert b.authorize(by("U0BOB00001"))[0] is False  # type: ignore[index]
    assert svc.make().authorize(by("U0ALICE001")) is None  # no deciders: [humans.allow] decides alone
    assert svc.make(deciders=["U0BOT00001"]).authorize(by("U0BOT00001"))[0] is False  # type: ignore[index]
    with pytest.raises(Rejected, match="does not exist"):
        svc.make(deciders=["S0NOSUCH01"]).authorize(by("U0BOB00001"))


def test_a_quiet_poll_costs_one_read_and_reactions_get_only_when_a_thumb_shows(svc: Harness) -> None:
    from sharedctx.model import EntryKind
    from tests.backends.conftest import make_case, make_chain

    b = svc.backend
    thread = b.bind(case := make_case())
    (e,) = make_chain(case.id, 1)
    e = e.model_copy(update={"kind": EntryKind.DECISION_REQUEST})
    e = e.model_copy(update={"hash": e.compute_hash()})
    ref = b.append(thread, e)

    def methods_during(fn: Callable[[], object]) -> list[str]:
        before = len(svc.double.requests)
        fn()
        return [r.url.path.removeprefix("/api/") for r in svc.double.requests[before:]]

    cursor = b.read_back(thread).cursor
    assert methods_during(lambda: b.read_back(thread, cursor)) == ["conversations.replies"]
    svc.double.add_reaction(ref.id, "eyes", "U0ALICE001")
    assert methods_during(lambda: b.read_back(thread, cursor)) == ["conversations.replies"]
    svc.double.add_reaction(ref.id, "+1::skin-tone-2", "U0ALICE001")
    got: list[object] = []
    assert methods_during(lambda: got.append(b.read_back(thread, cursor))) == [
        "conversations.replies", "reactions.get", "users.info"]
    (item,) = got[0].humans  # type: ignore[attr-defined]
    assert (item.kind, item.text, item.in_reply_to, item.author.name) == ("reaction", "+1", e.id, "alice")


def test_resolution_is_a_final_reply_optionally_broadcast_to_the_channel(svc: Harness) -> None:
    from tests.backends.conftest import make_case, make_chain

    for broadcast in (False, True):
        b = svc.make(broadcast_resolution=broadcast)
        thread = b.bind(case := make_case())
        (e,) = make_chain(case.id, 1)
        b.append(thread, e)
        b.resolve(thread, e)
        last = svc.double.replies(thread.id)[-1]
        assert "Resolved" in last["text"] and svc.double.metadata_of(last)["event_type"] == "sharedctx_resolved"
        assert (last.get("subtype") == "thread_broadcast") is broadcast
        sent = [r for r in svc.double.requests if r.url.path.endswith("chat.postMessage")][-1]
        assert (b"reply_broadcast=true" in sent.content) is broadcast


def test_a_reaction_event_on_a_message_this_process_never_saw_is_located_by_lookup(svc: Harness) -> None:
    from sharedctx.backends.base import HumanItem
    from sharedctx.model import Author
    from tests.backends.conftest import make_case, make_chain

    writer = svc.backend
    thread = writer.bind(case := make_case())
    e1, e2 = make_chain(case.id, 2)
    writer.append(thread, e1)
    ref = writer.append(thread, e2)
    reader = svc.make()  # another process (sharedctx serve): nothing cached
    event_item = HumanItem(backend="slack", external_id=f"reaction:C0INCIDENT1:{ref.id}:U0ALICE001:+1",
                           kind="reaction", author=Author(kind="human", name="U0ALICE001"), at="", text="+1",
                           raw={"user_id": "U0ALICE001", "channel": "C0INCIDENT1", "ts": ref.id})
    got = reader.complete_item("", event_item)
    assert got is not None
    thread_id, item = got
    assert (thread_id, item.in_reply_to, item.author.name) == (thread.id, e2.id, "alice")
    assert reader.complete_item("", event_item.model_copy(update={"raw": {**event_item.raw, "ts": thread.id}})) is None
    assert reader.complete_item("", event_item.model_copy(update={"raw": {**event_item.raw, "channel": "C0OTHER001"}}
                                                          )) is None


def test_a_person_quoting_our_marker_is_still_a_person_and_the_bots_own_reaction_is_not(svc: Harness) -> None:
    from tests.backends.conftest import make_case, make_chain

    b = svc.make(machine_copy="text")
    thread = b.bind(case := make_case())
    (e,) = make_chain(case.id, 1)
    ref = b.append(thread, e)
    ours = svc.double.replies(thread.id)[0]["text"]
    svc.double.add_human_reply(thread.id, "/approve\n> " + ours.replace("&", "&amp;") + "\nlooks right to me")
    svc.double.add_reaction(ref.id, "+1", "U0BOT00001")
    back = b.read_back(thread)
    (item,) = back.humans
    assert item.text.startswith("/approve") and back.entries == [e]


def test_after_the_configured_channel_changes_older_cases_stay_in_the_channel_they_were_bound_in(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Switching a backend is a config change: a team moves `channel` to a new channel. A thread ts names a
    message only within its channel, so the new channel's message with the same ts is someone else's thread;
    the cases bound before the switch must go on writing, reading and resolving their own thread in the old
    channel, with links, reaction ids and the channel people answer in naming the old one."""
    import httpx

    from sharedctx.backends.base import HumanItem, ThreadRef
    from sharedctx.backends.slack import SlackBackend, SlackOptions
    from sharedctx.model import Author
    from tests.backends.conftest import make_case, make_chain
    from tests.doubles.slack import SlackDouble

    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test-token")
    old, new = SlackDouble(channel="C0INCIDENT1"), SlackDouble(channel="C0INCIDENT2")

    def route(request: httpx.Request) -> httpx.Response:
        channel = {**dict(request.url.params), **SlackDouble._form(request)}.get("channel")
        return (new if channel == new.channel else old).handle(request)

    def backend(channel: str) -> SlackBackend:
        return SlackBackend("slack", SlackOptions(channel=channel, token="env:SLACK_BOT_TOKEN", posts_per_second=1000,
                                                  max_block=0.0),
                            client=httpx.Client(transport=httpx.MockTransport(route)))

    case = make_case()
    first, second, third = make_chain(case.id, 3)
    bound = backend(old.channel).bind(case)
    ref = backend(old.channel).append(bound, first)
    stored = bound.model_dump(exclude_none=True)  # what the store keeps as the case's binding
    assert stored["channel"] == old.channel

    theirs = new.add_message("another team's incident")["ts"]  # the same ts, in the new channel
    assert theirs == bound.id
    after = backend(new.channel)
    thread = ThreadRef.model_validate(stored)
    got_ref = after.append(thread, second)
    assert f"/archives/{old.channel}/" in str(got_ref.url)
    old.add_human_reply(bound.id, "rollback done", user="U0BOB00001")
    old.add_reaction(ref.id, "+1", "U0ALICE001")
    got = after.read_back(thread)
    assert [e.id for e in got.entries] == [first.id, second.id]
    (reply,) = [h for h in got.humans if h.kind == "comment"]
    assert reply.text == "rollback done" and reply.raw["channel"] == old.channel
    assert f"/archives/{old.channel}/" in str(reply.url)
    (thumb,) = [h for h in got.humans if h.kind == "reaction"]  # the id the Events API builds for it
    assert thumb.external_id == f"reaction:{old.channel}:{ref.id}:U0ALICE001:+1"
    assert after.lookup(thread, second.id) is not None
    after.resolve(thread, third)
    assert "Resolved" in old.replies(bound.id)[-1]["text"]
    assert new.replies(theirs) == []  # theirs untouched

    # a reply in the old thread arriving by the Events API is passed on (the receiver looks the thread up in
    # the old channel); a reaction there is left to polling
    event = HumanItem(backend="slack", external_id="1760000999.000001", author=Author(kind="human", name="U0BOB00001"),
                      at="", text="any update?", raw={"user_id": "U0BOB00001", "channel": old.channel,
                                                     "thread_ts": bound.id, "ts": "1760000999.000001"})
    taken = after.complete_item(bound.id, event)
    assert taken is not None and taken[0] == bound.id and f"/archives/{old.channel}/" in str(taken[1].url)
    assert after.complete_item("", thumb.model_copy(update={"url": None})) is None

    fresh = after.bind(make_case())  # a new case opens in the new channel
    assert fresh.model_dump()["channel"] == new.channel and fresh.id in new.messages


def test_a_permalink_naming_another_channel_is_refused_not_bound_to_our_message_with_that_ts(svc: Harness) -> None:
    """`slack.thread` may be a message permalink. A ts names a message only within its channel: a permalink
    into another channel is refused, not bound to whatever message of ours has that ts."""
    from sharedctx.errors import Rejected
    from tests.backends.conftest import make_case

    ts = svc.double.add_message("an existing alert thread")["ts"]
    b = svc.backend
    other = f"https://acme.slack.com/archives/C0OTHERTEAM/p{ts.replace('.', '')}"
    with pytest.raises(Rejected, match="another channel"):
        b.bind(make_case(**{"slack.thread": other}))
    ours = f"https://acme.slack.com/archives/{b.options.channel}/p{ts.replace('.', '')}"
    assert b.bind(make_case(**{"slack.thread": ours})).id == ts
    assert b.bind(make_case(**{"slack.thread": ts})).id == ts
