"""What is special to Redmine, against the real server: its quirks (silently ignored writes and statuses,
open-only listings, second-granular `updated_on`), both text formats, private notes, `backends check`,
and who may decide."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharedctx.backends.base import HumanItem
from sharedctx.backends.redmine.text import markdown_to_textile
from sharedctx.errors import Rejected
from sharedctx.model import Author
from tests.backends.conftest import make_case, make_chain
from tests.backends.harness import Harness
from tests.redmine import harness
from tests.redmine.proxy import FaultProxy
from tests.redmine.server import RedmineEnv


@pytest.fixture
def svc(monkeypatch: pytest.MonkeyPatch, redmine_env: RedmineEnv, proxy: FaultProxy) -> Harness:
    return harness.redmine(monkeypatch, redmine_env, proxy)


@pytest.mark.parametrize("fmt", ["textile", "markdown"])
@pytest.mark.parametrize("private", [False, True])
def test_both_text_formats_and_private_notes_round_trip(svc: Harness, redmine_env: RedmineEnv, fmt: str,
                                                        private: bool) -> None:
    b = svc.make(text_format=fmt, private_notes=private)
    thread = b.bind(case := make_case())
    entries = make_chain(case.id, 2)
    for e in entries:
        b.append(thread, e)
    b.resolve(thread, entries[-1])
    journals = redmine_env.journals(thread.id)
    first = journals[0]["notes"]
    assert "{{collapse(sharedctx:entry:" in first and journals[0]["private_notes"] is private
    if fmt == "textile":
        assert '"dashboard":https://grafana.example/d/1' in first and "@checkout@" in first
        assert '<pre><code class="promql">' in first
    else:
        assert "[dashboard](https://grafana.example/d/1)" in first and "`checkout`" in first
    back = b.read_back(thread)
    assert back.entries == entries
    assert back.humans == []  # a private note's split-off status journal is ours too, not a person's


def test_a_write_redmine_silently_ignores_is_rejected_not_reported_delivered(svc: Harness) -> None:
    b = svc.backend
    thread = b.bind(case := make_case())
    svc.double.inject("strip_content_type", method="PUT")  # Redmine answers 204 and stores nothing
    with pytest.raises(Rejected, match="did not store"):
        b.append(thread, make_chain(case.id, 1)[0])


def test_a_status_the_workflow_ignores_is_reported_with_the_allowed_ones(svc: Harness) -> None:
    b = svc.make(closed_status_id=987654)
    thread = b.bind(case := make_case())
    with pytest.raises(Rejected, match=r"ignored status 987654.*Allowed: .*5=Closed"):
        b.resolve(thread, make_chain(case.id, 1)[0])


def test_a_422_from_redmine_is_rejected_with_its_reason(svc: Harness) -> None:
    with pytest.raises(Rejected, match="Subject cannot be blank"):  # Redmine's own {"errors": [...]} text
        svc.backend._call("POST", "/issues.json", json={"issue": {"project_id": svc.backend.options.project}})


def test_an_unknown_project_is_rejected_saying_so(svc: Harness) -> None:
    with pytest.raises(Rejected, match="project 'no-such-project' does not exist"):
        svc.make(project="no-such-project").bind(make_case())


def test_bind_finds_a_closed_issue_again(svc: Harness, redmine_env: RedmineEnv) -> None:
    """/issues.json lists open issues only unless asked for all: a resolved case's issue is still found."""
    for field in (redmine_env.external_id_field, None):  # by custom field, and by the description marker
        b = svc.make(external_id_field=field)
        case = make_case()
        thread = b.bind(case)
        b.resolve(thread, make_chain(case.id, 1)[0])
        assert b.bind(case).id == thread.id


def test_changed_since_lists_updated_issues_once_despite_the_repeats(svc: Harness, redmine_env: RedmineEnv) -> None:
    b = svc.backend
    since = datetime.now(UTC) - timedelta(seconds=1)
    thread = b.bind(make_case())
    seen: set[tuple[str, str]] = set()
    assert thread.id in b.changed_since(since, seen=seen)
    assert thread.id not in b.changed_since(since, seen=seen)  # the same second again: dropped
    time.sleep(1.1)  # Redmine's updated_on has one-second resolution
    redmine_env.add_note(thread.id, "still looking", as_user="alice")
    assert thread.id in b.changed_since(since, seen=seen)


def test_polling_quiet_issues_costs_one_scan_and_a_change_is_still_read(svc: Harness, redmine_env: RedmineEnv) -> None:
    b = svc.make(poll_scan_seconds=0.5)
    threads = [b.bind(make_case()) for _ in range(3)]
    time.sleep(2.1)  # a read within 2 s of a change is never trusted to be complete: updated_on has seconds
    cursors = {t.id: b.read_back(t).cursor for t in threads}
    before = len(svc.double.requests)
    for t in threads:
        assert b.read_back(t, cursors[t.id]).humans == []
    paths = [r.path for r in svc.double.requests[before:]]
    assert paths == ["/issues.json"], paths  # one project scan, no issue read back in full
    redmine_env.add_note(threads[1].id, "/approve", as_user="alice")
    time.sleep(0.6)
    got = {t.id: b.read_back(t, cursors[t.id]) for t in threads}
    assert [h.text for h in got[threads[1].id].humans] == ["/approve"]
    assert got[threads[0].id].humans == got[threads[2].id].humans == []


def test_backends_check_says_what_is_wrong_in_plain_words(svc: Harness, redmine_env: RedmineEnv) -> None:
    good = svc.backend.check()
    assert [c.what for c in good] == ["credentials", "project", "closed status", "external id field"]
    assert all(c.ok for c in good), good
    bad = {c.what: c for c in svc.make(closed_status_id=2, tracker_id=77, external_id_field=424242).check()}
    assert not bad["tracker"].ok and "1=Bug" in bad["tracker"].detail
    assert not bad["closed status"].ok and "5=Closed" in bad["closed status"].detail
    assert not bad["external id field"].ok and "ignored the filter" in bad["external id field"].detail
    (project,) = [c for c in svc.make(project="nope").check() if c.what == "project"]
    assert not project.ok and "does not exist" in project.detail
    svc.double.auth_ok = False
    (cred,) = svc.backend.check()
    assert not cred.ok and "401" in cred.detail


def test_deciders_match_login_or_id_and_say_nothing_when_empty(svc: Harness) -> None:
    def item(login: str, uid: str) -> HumanItem:
        return HumanItem(backend="redmine", external_id="journal:1", author=Author(kind="human", name=login),
                         at="2026-01-01T00:00:00Z", raw={"login": login, "user_id": uid})

    assert svc.make().authorize(item("alice", "6")) is None
    b = svc.make(deciders=["Alice", "42"])
    assert b.authorize(item("alice", "6")) == (True, "redmine:deciders (alice)")
    assert b.authorize(item("carol", "42")) == (True, "redmine:deciders (42)")
    assert b.authorize(item("bob", "7")) == (False, "redmine:deciders (bob is not on it)")


def test_markdown_becomes_textile_people_can_read() -> None:
    got = markdown_to_textile("### Cause\nThe **pool** is `full`, see [graph](https://g.example).\n- a\n1. b\n"
                              "```sql\nselect 1;\n```")
    assert got.split("\n") == ["h3. Cause", "", 'The *pool* is @full@, see "graph":https://g.example.', "* a",
                               "# b", '<pre><code class="sql">', "select 1;", "</code></pre>"]


NASTY = ("}} {{collapse(x)\n<pre>\n</pre>\n``` {{toc}} !{{x}} *not bold* @x@ \"a\":b h1. nope\r\n"
         "sharedctx:entry:01FAKE part 1/1 --- end sharedctx --- <!-- --> ü ✓ 𝄞 😀 \u200b \t\\ %s %(x)s {0}")


@pytest.mark.parametrize("fmt", ["textile", "markdown"])
def test_bodies_full_of_markup_and_fake_markers_round_trip_through_real_redmine(svc: Harness, fmt: str) -> None:
    b = svc.make(text_format=fmt)
    thread = b.bind(case := make_case())
    entries = make_chain(case.id, 2, body=NASTY)
    for e in entries:
        b.append(thread, e)
    assert b.read_back(thread).entries == entries
    assert b.lookup(thread, entries[1].id) is not None


@given(body=st.text(max_size=400), fmt=st.sampled_from(["textile", "markdown"]))
@settings(max_examples=60, deadline=None)
def test_any_body_renders_to_notes_whose_copies_parse_back_to_the_entry(body: str, fmt: str) -> None:
    from sharedctx.backends.redmine import RedmineBackend, RedmineOptions
    from sharedctx.backends.redmine.text import COPY
    from sharedctx.render import CopyPart, assemble, parse_text

    b = RedmineBackend("redmine", RedmineOptions(url="http://unused.invalid", api_key="env:X", project="p",
                                                 text_format=fmt, max_note_chars=2_000))
    try:
        (entry,) = make_chain("01CASE", 1, body=body or " ")
    except ValueError:
        return  # the journal itself refuses it (e.g. a NUL byte): nothing to deliver
    notes = b.render(entry)
    assert all(len(n.encode("utf-8")) <= 2_000 for n in notes)
    parts = [CopyPart(*p) for n in notes if (p := parse_text(n, COPY))]
    assert len(parts) == len(notes) and assemble(parts).entries == [entry]
    b.close()


def test_exactly_once_even_when_the_worker_forgets_an_ambiguous_attempt(svc: Harness, redmine_env: RedmineEnv,
                                                                       tmp_path: Path) -> None:
    """Ambiguous write, then the reconciling lookup itself fails (Retryable): the worker's next attempt
    calls `append` without a lookup. `append` looks for the marker itself, so nothing is written twice."""
    from sharedctx.config import parse_config
    from sharedctx.context import SharedContext

    # retries wait >= 0.5 s, so each `run_once` makes exactly one attempt
    cfg = parse_config({"store": "journal.db", "worker": {"base_delay": 1.0, "max_delay": 1.0}}, base_dir=tmp_path)
    ctx = SharedContext.open(cfg, backends={"redmine": svc.backend}, worker=False)
    try:
        case = ctx.open_case("checkout p99")
        first = case.record("finding", "p99 up 8x", author="primary:triage")
        assert ctx.worker.run_once() == 1
        entry = case.record("action", "rolled back 4412", author="primary:triage")
        svc.double.inject("reset_after_apply", method="PUT")  # applied, then the line drops: Ambiguous
        ctx.worker.run_once()
        svc.double.inject("status", status=502, method="GET")  # the lookup fails: Retryable, ambiguity forgotten
        for _ in range(2):  # attempt 2: the lookup fails; attempt 3: append without a lookup
            time.sleep(1.05)
            ctx.worker.run_once()
        assert ctx.store.outbox_counts()["redmine"].get("delivered") == 2
        number = ctx.store.get_case(case.id).bindings["redmine"]["id"]
        notes = [j.get("notes") or "" for j in redmine_env.journals(number)]
        assert [sum(f"sharedctx:entry:{e.id} part 1/1" in n for n in notes) for e in (first, entry)] == [1, 1]
        assert [s.fault for s in svc.double.requests if s.fault] == ["reset_after_apply", "status"]
        assert [s.method for s in svc.double.requests].count("PUT") == 2  # one note per entry, never a second
    finally:
        ctx.close()


def test_a_person_quoting_our_markers_is_still_a_person(svc: Harness, redmine_env: RedmineEnv) -> None:
    b = svc.backend
    thread = b.bind(case := make_case())
    (e,) = make_chain(case.id, 1)
    b.append(thread, e)
    ours = redmine_env.journals(thread.id)[-1]["notes"]
    text = f"/approve\n\nquoting the bot:\n{ours}\n\nand [sharedctx:resolved:{e.id}] was premature, thanks"
    redmine_env.add_note(thread.id, text, as_user="alice")
    back = b.read_back(thread)
    assert [h.text for h in back.humans] == [text] and back.entries == [e]


def test_check_says_when_private_notes_would_be_stored_public(svc: Harness, redmine_env: RedmineEnv,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    (admin,) = [c for c in svc.make(private_notes=True).check() if c.what == "private notes"]
    assert admin.ok and "administrator" in admin.detail
    for login, member in (("alice", True), ("carol", False)):  # a Manager may; a non-member may not
        monkeypatch.setenv(harness.KEY_VAR, redmine_env.user(login, member=member)[1])
        (c,) = [c for c in svc.make(private_notes=True).check() if c.what == "private notes"]
        assert c.ok is member, c
    assert "would store every note public" in c.detail
