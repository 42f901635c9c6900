"""The behaviour every connector must show, written once; each test_<service>.py provides `svc`."""

from __future__ import annotations

import pytest

from sharedctx.backends.http import UnreadableResponse
from sharedctx.errors import Ambiguous, AuthFailed, Rejected, Retryable
from tests.backends.conftest import make_case, make_chain
from tests.backends.harness import Harness

WRITE = r"/(comments|notes|comment|incident/\w+)$"  # the path of an entry write, per service


def _write_method(svc: Harness) -> str:
    return {"servicenow": "PATCH", "redmine": "PUT", "matrix": "PUT"}.get(svc.name, "POST")


def test_entries_read_back_from_the_backend_alone_equal_the_journal(svc: Harness) -> None:
    b = svc.backend
    case = make_case()
    thread = b.bind(case)
    entries = make_chain(case.id, 4)
    for e in entries:
        b.append(thread, e)
    back = b.read_back(thread)
    assert back.entries == entries
    assert all(e.compute_hash() == e.hash for e in back.entries)
    assert [e.prev_hash for e in back.entries[1:]] == [e.hash for e in entries[:-1]]


def test_an_entry_over_the_size_limit_is_split_into_parts_and_reassembled(svc: Harness) -> None:
    b = svc.backend
    case = make_case()
    thread = b.bind(case)
    big = make_chain(case.id, 1, body="All the log lines, none dropped. " * 3000 + "THE-END")[0]
    ref = b.append(thread, big)
    assert isinstance(ref.model_extra["parts"], int | list)
    assert len(b.render(big)) > 1
    (back,) = b.read_back(thread).entries
    assert back == big and back.body.endswith("THE-END")


def test_after_a_timeout_after_apply_lookup_finds_the_entry_and_it_is_not_sent_twice(svc: Harness) -> None:
    b = svc.backend
    case = make_case()
    thread = b.bind(case)
    e1, e2 = make_chain(case.id, 2)
    b.append(thread, e1)
    svc.double.inject("timeout_after_apply", method=_write_method(svc))
    with pytest.raises(Ambiguous):
        b.append(thread, e2)
    assert b.lookup(thread, e2.id) is not None  # the worker reconciles instead of re-sending
    assert b.read_back(thread).entries == [e1, e2]


def test_a_half_written_multi_part_entry_is_completed_without_duplicate_parts(svc: Harness) -> None:
    b = svc.backend
    case = make_case()
    thread = b.bind(case)
    big = make_chain(case.id, 1, body="x " * 60_000)[0]
    n = len(b.render(big))
    svc.double.inject("reset_after_apply", method=_write_method(svc))  # part 1 lands, then the line drops
    with pytest.raises(Ambiguous):
        b.append(thread, big)
    assert b.lookup(thread, big.id) is None  # incomplete: not delivered yet
    b.append(thread, big)
    assert b.lookup(thread, big.id).model_extra["parts"].__len__() == n
    assert b.read_back(thread).entries == [big]


def test_a_refused_token_is_auth_failed_in_plain_words(svc: Harness) -> None:
    b = svc.backend
    svc.double.auth_ok = False
    with pytest.raises(AuthFailed) as err:
        b.bind(make_case())
    assert "environment variable" in str(err.value) or "token" in str(err.value).lower()


def test_a_missing_secret_variable_stops_the_backend_naming_the_variable(svc: Harness,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("GITHUB_TOKEN", "PD_TOKEN", "SN_PASSWORD", "JIRA_TOKEN", "SCTX_REDMINE_TEST_KEY", "SCTX_MATRIX_TOKEN",
                "SLACK_BOT_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(AuthFailed, match="is not set"):
        svc.backend.bind(make_case())


def test_429_is_retryable_with_the_servers_retry_after(svc: Harness) -> None:
    b = svc.backend
    thread = b.bind(case := make_case())
    svc.double.inject("429", retry_after=7)
    with pytest.raises(Retryable) as err:
        b.append(thread, make_chain(case.id, 1)[0])
    assert not isinstance(err.value, Ambiguous)
    assert err.value.retry_after == pytest.approx(7, abs=1)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_retryable(svc: Harness, status: int) -> None:
    b = svc.backend
    thread = b.bind(case := make_case())
    svc.double.inject("status", status=status)
    with pytest.raises(Retryable):
        b.append(thread, make_chain(case.id, 1)[0])


def test_a_body_the_service_refuses_is_rejected_with_its_reason(svc: Harness) -> None:
    b = svc.backend
    thread = b.bind(case := make_case())
    svc.double.inject("status", status=422 if svc.name == "github" else 400)
    with pytest.raises(Rejected):
        b.append(thread, make_chain(case.id, 1)[0])


def test_html_instead_of_json_on_a_write_is_ambiguous_and_on_a_read_retryable(svc: Harness) -> None:
    b = svc.backend
    thread = b.bind(case := make_case())
    svc.double.inject("html", method=_write_method(svc))
    with pytest.raises(UnreadableResponse, match="instead of JSON"):
        b.append(thread, make_chain(case.id, 1)[0])
    svc.double.inject("html", method="GET")
    with pytest.raises(Retryable, match="text/html") as err:
        b.read_back(thread)
    assert not isinstance(err.value, Ambiguous)
    svc.double.inject("html", status=404, method="GET")
    with pytest.raises(Rejected):
        b.read_back(thread)


def test_a_refused_connection_is_retryable_not_ambiguous(svc: Harness) -> None:
    b = svc.backend
    thread = b.bind(case := make_case())
    svc.double.inject("reset")
    with pytest.raises(Retryable) as err:
        b.append(thread, make_chain(case.id, 1)[0])
    assert not isinstance(err.value, Ambiguous)


def test_a_deleted_bound_thread_is_rejected_saying_so(svc: Harness) -> None:
    b = svc.backend
    thread = b.bind(case := make_case())
    svc.delete(thread.id)
    with pytest.raises(Rejected, match="no longer exists"):
        b.append(thread, make_chain(case.id, 1)[0])


def test_human_comments_come_back_as_human_items_with_author_and_link(svc: Harness) -> None:
    b = svc.backend
    thread = b.bind(case := make_case())
    b.append(thread, make_chain(case.id, 1)[0])
    svc.add_human(thread.id, "Rolled back deploy 1234, watching p99.")
    back = b.read_back(thread)
    (item,) = back.humans
    assert item.author.kind == "human" and item.author.name
    assert "Rolled back" in item.text and item.url
    assert len(back.entries) == 1


def test_the_cursor_returns_only_what_is_new(svc: Harness) -> None:
    b = svc.backend
    thread = b.bind(case := make_case())
    e1, e2 = make_chain(case.id, 2)
    b.append(thread, e1)
    first = b.read_back(thread)
    b.append(thread, e2)
    svc.add_human(thread.id, "ack")
    second = b.read_back(thread, first.cursor)
    assert second.entries == [e2] and [h.text for h in second.humans] == ["ack"]
    assert b.read_back(thread, second.cursor).entries == []


def test_bind_is_safe_to_repeat_and_honours_a_given_thread(svc: Harness) -> None:
    b = svc.backend
    case = make_case()
    assert b.bind(case).id == b.bind(case).id  # found again by the case marker, not created twice
    key, value = svc.given_label()
    given = b.bind(make_case(**{key: value}))
    assert value in (given.id, getattr(given, "number", None))
    with pytest.raises(Rejected, match="does not exist"):
        b.bind(make_case(**{key: {"github.issue": "999", "pagerduty.incident": "PNOPE99",
                                  "servicenow.incident": "INC9999999", "jira.issue": "OPS-999",
                                  "redmine.issue": "99999999",
                                  "matrix.thread": "$no-such-event",
                                  "slack.thread": "1111111111.000001"}[key]}))


def test_resolve_closes_the_thread_once(svc: Harness) -> None:
    b = svc.backend
    thread = b.bind(case := make_case())
    (e,) = make_chain(case.id, 1)
    b.append(thread, e)
    b.resolve(thread, e)
    before = len(svc.double.requests)
    b.resolve(thread, e)  # already resolved: one read, no writes
    assert all(r.method == "GET" for r in svc.double.requests[before:])
    assert b.read_back(thread).humans == []  # our resolution note is not mistaken for a person
