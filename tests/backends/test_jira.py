"""The jira connector against its spec-checked double: the shared suite, plus what is special to it."""

from __future__ import annotations

import pytest

from tests.backends import harness
from tests.backends.harness import Harness
from tests.backends.suite import *  # noqa: F403  (the shared behaviour suite)


@pytest.fixture
def svc(monkeypatch: pytest.MonkeyPatch) -> Harness:
    return harness.jira(monkeypatch)


def test_the_double_refuses_a_v3_comment_body_that_is_not_adf(svc: Harness) -> None:
    import base64

    import httpx

    key = svc.double.add_issue()
    auth = "Basic " + base64.b64encode(b"bot@acme.io:jira-test-token").decode()
    svc.double.validate = False  # this request is off-spec on purpose: the double must refuse it
    raw = httpx.Client(transport=httpx.MockTransport(svc.double.handle))
    resp = raw.post(f"https://your-domain.atlassian.net/rest/api/3/issue/{key}/comment",
                    json={"body": "**markdown** is not ADF"}, headers={"Authorization": auth})
    assert resp.status_code == 400 and "Atlassian Document Format" in resp.text


def test_markdown_becomes_adf_people_can_read() -> None:
    from sharedctx.render import markdown_to_adf

    doc = markdown_to_adf("## Cause\nThe **pool** is `full`, see [graph](https://g.example).\n\n- a\n- b\n"
                          "```sql\nselect 1;\n```")
    types = [n["type"] for n in doc["content"]]
    assert types == ["heading", "paragraph", "bulletList", "codeBlock"]
    marks = [m["type"] for t in doc["content"][1]["content"] for m in t.get("marks", [])]
    assert marks == ["strong", "code", "link"]
    assert doc["content"][3]["attrs"] == {"language": "sql"}


def test_data_center_v2_uses_wiki_markup_and_round_trips(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.backends.conftest import make_case, make_chain

    svc2 = harness.jira(monkeypatch, api_version=2)
    b = svc2.backend
    thread = b.bind(case := make_case())
    entries = make_chain(case.id, 2)
    for e in entries:
        b.append(thread, e)
    body = svc2.double.comments[thread.id][0]["body"]
    assert isinstance(body, str) and "{code:promql}" in body and "{noformat}" in body
    assert b.read_back(thread).entries == entries
