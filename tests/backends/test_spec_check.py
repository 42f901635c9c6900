"""Every request the connectors sent in this suite (and every non-fault answer) met the official
OpenAPI descriptions. Runs a short scenario per service itself, so it holds when run alone too."""

from __future__ import annotations

import pytest

from tests.backends import harness
from tests.backends.conftest import make_case, make_chain
from tests.doubles import base


@pytest.mark.parametrize("name", ["github", "pagerduty", "servicenow", "jira"])
def test_every_request_the_connectors_sent_validated_against_the_description(name: str,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    svc = getattr(harness, name)(monkeypatch)
    b = svc.backend
    thread = b.bind(case := make_case())
    for e in make_chain(case.id, 2):
        b.append(thread, e)
    b.read_back(thread)
    b.search("latency")
    b.resolve(thread, e)
    checked = [c for c in base.SPEC_LOG if c.service == name]
    assert {c.what for c in checked} == {"request", "response"}
    assert len([c for c in checked if c.what == "request"]) >= len(svc.double.requests)
    bad = base.violations(name)
    assert not bad, "\n".join(f"{c.method} {c.path} {c.what}: {c.error}" for c in bad[:5])
