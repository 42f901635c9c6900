"""The matrix connector against a real Synapse: the shared backend suite, plus what is special to Matrix."""

from __future__ import annotations

import json

import pytest

from sharedctx.backends.base import HumanItem
from sharedctx.backends.matrix import ENTRY_KEY, MatrixBackend, MatrixOptions
from sharedctx.errors import AuthFailed, Rejected, Retryable
from sharedctx.model import Author
from tests.backends.conftest import make_case, make_chain
from tests.backends.harness import Harness
from tests.backends.suite import *  # noqa: F403  (the shared behaviour suite)
from tests.matrix.server import FaultProxy, MatrixServer, q


def harness(monkeypatch: pytest.MonkeyPatch, server: MatrixServer, room: str) -> Harness:
    import httpx

    monkeypatch.setenv("SCTX_MATRIX_TOKEN", server.bot_token)
    proxy = FaultProxy()

    def make(**kw: object) -> MatrixBackend:
        opts = {"homeserver": server.url, "room_id": room, "token": "env:SCTX_MATRIX_TOKEN", **kw}
        return MatrixBackend("matrix", MatrixOptions(**opts), client=httpx.Client(transport=httpx.MockTransport(
            proxy.handle), timeout=30))

    def add_human(root: str, text: str) -> None:
        server.reply(server.human_token, room, root, text)

    def delete(root: str) -> None:
        server.call("PUT", f"/_matrix/client/v3/rooms/{q(room)}/redact/{q(root)}/{root[1:9]}x", server.bot_token, {})

    def given() -> tuple[str, str]:
        return "matrix.thread", server.send(server.human_token, room, {"msgtype": "m.text", "body": "db pool alert"})

    return Harness("matrix", proxy, make, add_human, delete, given)


@pytest.fixture(scope="module")
def room(synapse: MatrixServer) -> str:
    return synapse.new_room("backend-suite")


@pytest.fixture
def svc(monkeypatch: pytest.MonkeyPatch, synapse: MatrixServer, room: str) -> Harness:
    return harness(monkeypatch, synapse, room)


def test_a_deleted_bound_thread_is_rejected_saying_so(svc: Harness) -> None:  # replaces the suite's test
    """Matrix differs: a redacted root still holds its thread, and Element still shows it. Entries keep
    landing there (nothing is lost) and the thread still rebuilds; only a root the server does not know
    is refused, at bind time (see test_bind_is_safe_to_repeat_and_honours_a_given_thread)."""
    b = svc.backend
    thread = b.bind(case := make_case())
    svc.delete(thread.id)
    e1, e2 = make_chain(case.id, 2)
    b.append(thread, e1)
    b.append(thread, e2)
    assert b.read_back(thread).entries == [e1, e2]


def test_each_entry_is_a_thread_reply_rendered_for_people_with_the_copy_out_of_sight(
        svc: Harness, synapse: MatrixServer, room: str) -> None:
    b = svc.backend
    thread = b.bind(case := make_case())
    (e,) = make_chain(case.id, 1)
    b.append(thread, e)
    (ev,) = synapse.thread(room, thread.id)
    c = ev["content"]
    assert c["m.relates_to"]["rel_type"] == "m.thread" and c["m.relates_to"]["event_id"] == thread.id
    assert c["format"] == "org.matrix.custom.html"
    assert "<strong>" in c["formatted_body"] and '<a href="https://grafana.example/d/1">' in c["formatted_body"]
    assert e.title in c["body"] and "sharedctx:entry" not in c["body"] + c["formatted_body"]
    assert c[ENTRY_KEY]["id"] == e.id and c[ENTRY_KEY]["part"] == 1 and c[ENTRY_KEY]["parts"] == 1
    root = synapse.call("GET", f"/_matrix/client/v3/rooms/{q(room)}/event/{q(thread.id)}", synapse.bot_token)
    assert "m.relates_to" not in root["content"] and case.title in root["content"]["body"]


def test_html_a_person_could_inject_through_an_entry_is_escaped(svc: Harness, synapse: MatrixServer,
                                                                 room: str) -> None:
    b = svc.backend
    thread = b.bind(case := make_case())
    (e,) = make_chain(case.id, 1, body='<img src=x onerror=alert(1)> and <script>alert(2)</script>')
    b.append(thread, e)
    (ev,) = synapse.thread(room, thread.id)
    assert "<img" not in ev["content"]["formatted_body"] and "<script" not in ev["content"]["formatted_body"]
    assert b.read_back(thread).entries == [e]


def test_every_part_of_a_split_entry_fits_the_event_limit_in_bytes(svc: Harness) -> None:
    b = svc.backend
    (e,) = make_chain("01J0000000000000000000000", 1, body="🔥 p99 regression, all shards 🔥\n" * 4000)
    parts = b.render(e)
    assert len(parts) > 2
    assert all(len(json.dumps(p, ensure_ascii=False).encode()) <= 60_000 for p in parts)


def test_a_repeated_send_returns_the_same_event_so_nothing_is_posted_twice(svc: Harness, synapse: MatrixServer,
                                                                         room: str) -> None:
    b = svc.backend
    thread = b.bind(case := make_case())
    (e,) = make_chain(case.id, 1)
    first = b.append(thread, e)
    again = svc.make().append(thread, e)  # a new process after a crash: no lookup, same txnId
    assert first == again
    assert len(synapse.thread(room, thread.id)) == 1


def test_a_real_429_body_is_honoured_with_its_retry_after_ms(svc: Harness) -> None:
    import httpx

    req = httpx.Request("PUT", "http://hs/_matrix/client/v3/rooms/x/send/m.room.message/t")
    resp = httpx.Response(429, request=req, headers={"Retry-After": "5"},
                          json={"errcode": "M_LIMIT_EXCEEDED", "error": "Too Many Requests", "retry_after_ms": 4616})
    assert MatrixBackend._rate_limited(resp) == pytest.approx(4.616)


def test_a_bot_outside_the_room_is_auth_failed_and_check_says_why(svc: Harness, synapse: MatrixServer) -> None:
    other = synapse.call("POST", "/_matrix/client/v3/createRoom", synapse.human_token, {"preset": "private_chat"})
    b = svc.make(room_id=other["room_id"])
    with pytest.raises(AuthFailed, match="M_FORBIDDEN"):
        b.bind(make_case())
    checks = {c.what: c for c in b.check()}
    assert checks["credentials"].ok and not checks["room membership"].ok
    assert "has not joined" in checks["room membership"].detail


def test_check_says_when_nobody_but_the_bot_may_decide(svc: Harness, synapse: MatrixServer) -> None:
    room = synapse.new_room("check")
    checks = {c.what: c for c in svc.make(room_id=room).check()}
    assert not checks["deciders"].ok and "nobody" in checks["deciders"].detail
    assert all(c.ok for what, c in checks.items() if what != "deciders")
    checks = {c.what: c for c in svc.make(room_id=room, deciders=[synapse.human_user]).check()}
    assert checks["deciders"].ok and synapse.human_user in checks["deciders"].detail
    synapse.set_power(room, synapse.human_user, 50)
    assert all(c.ok for c in svc.make(room_id=room).check())


def test_check_passes_for_the_configured_bot_and_fails_for_a_bad_token(svc: Harness) -> None:
    assert all(c.ok for c in svc.make(deciders=["@human:localhost"]).check())
    svc.double.auth_ok = False
    (bad,) = svc.backend.check()
    assert not bad.ok and "M_UNKNOWN_TOKEN" in bad.detail


def test_a_given_event_that_is_itself_a_reply_cannot_be_a_thread_root(svc: Harness, synapse: MatrixServer,
                                                                      room: str) -> None:
    b = svc.backend
    thread = b.bind(make_case())
    reply = synapse.reply(synapse.human_token, room, thread.id, "a reply")
    with pytest.raises(Rejected, match="cannot be a thread root"):
        b.bind(make_case(**{"matrix.thread": reply}))


def test_reactions_and_explicit_replies_answer_the_entry_they_are_on(svc: Harness, synapse: MatrixServer,
                                                                     room: str) -> None:
    b = svc.backend
    thread = b.bind(case := make_case())
    e1, e2 = make_chain(case.id, 2)
    ref1 = b.append(thread, e1)
    b.append(thread, e2)
    synapse.react(synapse.human_token, room, ref1.id, "👍️")  # with a variation selector, as some keyboards send
    synapse.react(synapse.human_token, room, ref1.id, "🎉")  # not an answer: ignored
    synapse.react(synapse.human_token, room, thread.id, "👎")  # on the root, not an entry: ignored
    synapse.reply(synapse.human_token, room, thread.id, "/reject too risky", to=ref1.id)
    humans = b.read_back(thread).humans
    assert [(h.kind, h.text, h.in_reply_to) for h in humans] == [
        ("reaction", "+1", e1.id), ("comment", "/reject too risky", e1.id)]
    assert humans[0].author == Author(kind="human", name=synapse.human_user)


def test_authorize_uses_room_power_levels_and_the_deciders_list(svc: Harness, synapse: MatrixServer) -> None:
    room = synapse.new_room("power")
    third, _ = synapse.user("carol", room)
    synapse.set_power(room, synapse.human_user, 50)
    b = svc.make(room_id=room, deciders=["@dave:localhost"])

    def item(user: str) -> HumanItem:
        return HumanItem(backend="matrix", external_id="$x", author=Author(kind="human", name=user), at="",
                         raw={"user_id": user})

    assert b.authorize(item(synapse.human_user)) == (True, "matrix:power>=50 (50)")
    assert b.authorize(item(third)) == (False, "matrix:power>=50 (0)")
    assert b.authorize(item("@dave:localhost")) == (True, "matrix:deciders (@dave:localhost)")
    erin, _ = synapse.user("erin", room)
    synapse.set_power(room, erin, 100)
    assert b.authorize(item(erin)) == (False, "matrix:power>=50 (0)")  # power levels are cached (power_ttl)
    assert svc.make(room_id=room, power_ttl=0).authorize(item(erin)) == (True, "matrix:power>=50 (100)")
    assert b.authorize(item(synapse.bot_user)) == (False, "matrix:@bot:localhost is the account sharedctx writes as, "
                                                          "not a person")  # though it created the room
    theirs = synapse.call("POST", "/_matrix/client/v3/createRoom", synapse.human_token,
                          {"preset": "private_chat", "invite": [synapse.bot_user]})["room_id"]
    synapse.call("POST", f"/_matrix/client/v3/join/{q(theirs)}", synapse.bot_token, {})
    assert svc.make(room_id=theirs).authorize(item(synapse.human_user)) == (True, "matrix:power>=50 (creator)")
    other = HumanItem(backend="github", external_id="1", author=Author(kind="human", name="x"), at="")
    assert b.authorize(other) is None


def test_an_injected_429_without_a_body_hint_uses_retry_after(svc: Harness) -> None:
    b = svc.backend
    thread = b.bind(case := make_case())
    svc.double.inject("429", retry_after=3)
    with pytest.raises(Retryable) as err:
        b.append(thread, make_chain(case.id, 1)[0])
    assert err.value.retry_after == pytest.approx(3)


NASTY = ["<script>alert(1)</script>", "\u202egnp.exe", "e\u0301\u0301 ﷽ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "🔥👍🏽‍", "\x00\x07\x1b[31m",
         "&amp; &lt;b&gt;", "```\nunclosed fence", "sharedctx:entry:01J part 1/1", '{"org.sharedctx.entry": 1}']


@pytest.mark.parametrize("nasty", NASTY, ids=range(len(NASTY)))
def test_every_field_with_hostile_text_round_trips_through_the_real_server(svc: Harness, nasty: str) -> None:
    from datetime import UTC, datetime

    from sharedctx.model import GENESIS_HASH, Entry, EntryKind, Evidence, new_id

    b = svc.backend
    thread = b.bind(case := make_case())
    e = Entry(id=new_id(), case_id=case.id, seq=1,
              ts=datetime.now(UTC), author=Author(kind="human", name=f"a{nasty}"), kind=EntryKind.NOTE,
              title=f"t {nasty}", body=f"{nasty}\n\n{nasty}", prev_hash=GENESIS_HASH, ref=None,
              evidence=(Evidence(type="link", source=nasty, summary=nasty, query=nasty,
                                 url=f"https://x.example/?q={nasty}"),), attrs={nasty: [nasty], "k": nasty})
    e = e.model_copy(update={"hash": e.compute_hash()})
    b.append(thread, e)
    assert b.read_back(thread).entries == [e]
    assert b.lookup(thread, e.id) is not None


def test_resolve_posts_a_final_reply_and_marks_the_root_with_a_check(svc: Harness, synapse: MatrixServer,
                                                                   room: str) -> None:
    b = svc.backend
    thread = b.bind(case := make_case())
    (e,) = make_chain(case.id, 1)
    b.append(thread, e)
    b.resolve(thread, e)
    last = synapse.thread(room, thread.id)[-1]["content"]
    assert last["body"].startswith("✅ **Resolved**") and e.title in last["body"]
    marks = synapse.call("GET", f"/_matrix/client/v1/rooms/{q(room)}/relations/{q(thread.id)}/m.annotation",
                         synapse.bot_token)["chunk"]
    assert [(m["sender"], m["content"]["m.relates_to"]["key"]) for m in marks] == [(synapse.bot_user, "✅")]


def test_search_finds_the_case_thread_by_words_in_its_entries(svc: Harness) -> None:
    b = svc.backend
    thread = b.bind(case := make_case())
    word = "zanzibar" + case.id[-6:].lower()
    (e,) = make_chain(case.id, 1, body=f"connection pool {word} exhausted")
    b.append(thread, e)
    hits = b.search(word)
    assert [(h.case_id, h.thread_id) for h in hits] == [(case.id, thread.id)]
    assert b.search("nothing-matches-this-" + word) == []


def test_a_forged_machine_copy_from_a_person_is_neither_an_entry_nor_lost_text(svc: Harness, synapse: MatrixServer,
                                                                              room: str) -> None:
    """Anyone in the room can send any content (Element's devtools): only the bot's own events are entries."""
    b = svc.backend
    thread = b.bind(case := make_case())
    e1, e2 = make_chain(case.id, 2)
    b.append(thread, e1)
    (real,) = synapse.thread(room, thread.id)
    forged = {**real["content"], "body": "approved by the bot, honest"}
    forged[ENTRY_KEY] = {**forged[ENTRY_KEY], "id": e2.id}  # claims to be the next entry
    synapse.send(synapse.human_token, room, forged)
    synapse.send(synapse.human_token, room, real["content"])  # a byte-for-byte replay of ours
    back = b.read_back(thread)
    assert back.entries == [e1] and back.humans == []
    assert b.lookup(thread, e2.id) is None  # the worker would still deliver e2


def test_a_person_quoting_our_markers_in_plain_text_is_still_read(svc: Harness, synapse: MatrixServer,
                                                                  room: str) -> None:
    b = svc.backend
    thread = b.bind(make_case())
    text = "/approve — see sharedctx:entry:01J part 1/1 and org.sharedctx.entry, sharedctx:case:01J"
    synapse.reply(synapse.human_token, room, thread.id, text)
    assert [h.text for h in b.read_back(thread).humans] == [text]
