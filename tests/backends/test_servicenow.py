"""The servicenow connector against its spec-checked double: the shared suite, plus what is special to it."""

from __future__ import annotations

import pytest

from tests.backends import harness
from tests.backends.harness import Harness
from tests.backends.suite import *  # noqa: F403  (the shared behaviour suite)


@pytest.fixture
def svc(monkeypatch: pytest.MonkeyPatch) -> Harness:
    return harness.servicenow(monkeypatch)


def test_entries_can_go_to_customer_visible_comments_instead_of_work_notes(svc: Harness) -> None:
    from tests.backends.conftest import make_case, make_chain

    b = svc.make(journal_field="comments")
    thread = b.bind(case := make_case())
    (e,) = make_chain(case.id, 1)
    b.append(thread, e)
    assert {r["element"] for r in svc.double.journal_of(thread.id)} == {"comments"}
    assert b.read_back(thread).entries == [e]


def test_user_text_cannot_change_the_encoded_query(svc: Harness) -> None:
    from tests.backends.conftest import make_case

    svc.backend.bind(make_case())
    assert svc.backend.search("latency^ORshort_descriptionISNOTEMPTY") == []
