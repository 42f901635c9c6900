"""The pagerduty connector against its spec-checked double: the shared suite, plus what is special to it."""

from __future__ import annotations

import pytest

from tests.backends import harness
from tests.backends.harness import Harness
from tests.backends.suite import *  # noqa: F403  (the shared behaviour suite)


@pytest.fixture
def svc(monkeypatch: pytest.MonkeyPatch) -> Harness:
    return harness.pagerduty(monkeypatch)


def test_every_request_carries_from_and_the_double_refuses_a_note_without_it(svc: Harness) -> None:
    import httpx

    from tests.backends.conftest import make_case, make_chain

    b = svc.backend
    thread = b.bind(case := make_case())
    b.append(thread, make_chain(case.id, 1)[0])
    assert all(r.headers.get("from") == "bot@acme.io" for r in svc.double.requests)
    svc.double.validate = False  # this request is off-spec on purpose: the double must refuse it
    raw = httpx.Client(transport=httpx.MockTransport(svc.double.handle))
    resp = raw.post(f"https://api.pagerduty.com/incidents/{thread.id}/notes", json={"note": {"content": "hi"}},
                    headers={"Authorization": "Token token=pd-test-token",
                             "Accept": "application/vnd.pagerduty+json;version=2", "From": ""})
    assert resp.status_code == 400 and "From" in resp.json()["error"]["message"]


def test_search_returns_nothing_because_pagerduty_has_no_text_search(svc: Harness) -> None:
    assert svc.backend.search("latency") == []


def test_without_a_given_incident_or_service_id_binding_is_rejected_with_what_to_set(svc: Harness) -> None:
    from sharedctx.errors import Rejected
    from tests.backends.conftest import make_case

    with pytest.raises(Rejected, match="service_id"):
        svc.make(service_id=None).bind(make_case())
