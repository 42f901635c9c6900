"""The github connector against its spec-checked double: the shared suite, plus what is special to it."""

from __future__ import annotations

import httpx
import pytest

from tests.backends import harness
from tests.backends.harness import Harness
from tests.backends.suite import *  # noqa: F403  (the shared behaviour suite)


@pytest.fixture
def svc(monkeypatch: pytest.MonkeyPatch) -> Harness:
    return harness.github(monkeypatch)


def test_a_secondary_limit_403_is_retryable_after_retry_after_and_holds_the_pacer(svc: Harness) -> None:
    from sharedctx.errors import Retryable
    from tests.backends.conftest import make_case, make_chain

    b = svc.backend
    thread = b.bind(case := make_case())
    resp_fault = svc.double.inject("status", status=403, method="POST")
    resp_fault.kind = "secondary"
    svc.double.enforce_secondary, svc.double.limits = True, [(0, 60.0)]  # next creation is over the limit
    with pytest.raises(Retryable) as err:
        b.append(thread, make_chain(case.id, 1)[0])
    assert err.value.retry_after == 60
    with pytest.raises(Retryable, match="pacing"):  # every thread of this backend now waits
        b.pacer.acquire()


def test_an_exhausted_primary_budget_waits_until_the_reset() -> None:
    import time

    import httpx

    from sharedctx.backends.http import check
    req = httpx.Request("POST", "https://api.github.com/repos/a/b/issues/1/comments")
    resp = httpx.Response(403, request=req, json={"message": "API rate limit exceeded"},
                          headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()) + 120)})
    from sharedctx.backends.github import GitHubBackend, GitHubOptions
    from sharedctx.errors import Retryable
    b = GitHubBackend("gh", GitHubOptions(repo="a/b", token="env:X"), client=httpx.Client())
    with pytest.raises(Retryable) as err:
        check(resp, service="GitHub", auth_hint="", is_rate_limited=b._rate_limited)
    assert 100 < (err.value.retry_after or 0) <= 120


def test_a_plain_403_is_auth_failed_not_a_rate_limit() -> None:
    import httpx

    from sharedctx.backends.http import check
    from sharedctx.errors import AuthFailed
    req = httpx.Request("POST", "https://api.github.com/repos/a/b/issues/1/comments")
    resp = httpx.Response(403, request=req, json={"message": "Resource not accessible by personal access token"})
    with pytest.raises(AuthFailed, match="not accessible"):
        check(resp, service="GitHub", auth_hint="", is_rate_limited=lambda r: None)


def test_the_pacer_allows_a_burst_then_spaces_requests_and_never_exceeds_the_window() -> None:
    from sharedctx.backends.http import Pacer
    from sharedctx.errors import Retryable

    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    p = Pacer([(80, 60.0), (500, 3600.0)], max_block=1.0, clock=lambda: now[0], sleep=sleep)
    stamps = []
    for _ in range(200):
        try:
            p.acquire()
        except Retryable as err:
            now[0] += err.retry_after or 0
            p.acquire()
        stamps.append(now[0])
    assert all(sum(1 for t in stamps if s <= t < s + 60) <= 80 for s in stamps)
    assert stamps[-1] - stamps[0] < 60 * 200 / 80  # and it sustains the allowed rate


def test_the_double_enforces_githubs_secondary_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    from sharedctx.errors import Retryable
    from tests.backends.conftest import make_case, make_chain

    svc = harness.github(monkeypatch, enforce_secondary=True, per_minute=3)
    b = svc.make(per_minute=1000)  # a connector that does not pace
    thread = b.bind(case := make_case())
    entries = make_chain(case.id, 3)
    b.append(thread, entries[0])
    b.append(thread, entries[1])
    with pytest.raises(Retryable):
        b.append(thread, entries[2])
    assert svc.double.secondary_violations == 1


def test_after_the_configured_repo_changes_older_cases_stay_in_the_repo_they_were_bound_in(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Switching a backend is a config change: a team moves `repo` to a new repository. Issue numbers are per
    repo, so the new repo's issue #1 is someone else's thread; the cases bound before the switch must go on
    writing, reading and resolving their own issue #1 in the old repo."""
    from sharedctx.backends.base import ThreadRef
    from sharedctx.backends.github import GitHubBackend, GitHubOptions
    from tests.backends.conftest import make_case, make_chain
    from tests.doubles.github import GitHubDouble

    monkeypatch.setenv("GITHUB_TOKEN", "gh-test-token")
    old, new = GitHubDouble(repo="acme/incidents"), GitHubDouble(repo="acme/incidents-2026")

    def route(request: httpx.Request) -> httpx.Response:
        return (new if request.url.path.startswith("/repos/acme/incidents-2026/") else old).handle(request)

    def backend(repo: str) -> GitHubBackend:
        return GitHubBackend("github", GitHubOptions(repo=repo, token="env:GITHUB_TOKEN", max_block=0.0),
                             client=httpx.Client(transport=httpx.MockTransport(route)))

    case = make_case()
    first, second, third = make_chain(case.id, 3)
    bound = backend("acme/incidents").bind(case)
    backend("acme/incidents").append(bound, first)
    stored = bound.model_dump(exclude_none=True)  # what the store keeps as the case's binding
    assert stored["repo"] == "acme/incidents"

    theirs = new.add_issue("another team's incident")  # the same number, in the new repo
    assert str(theirs) == bound.id
    after = backend("acme/incidents-2026")
    thread = ThreadRef.model_validate(stored)
    after.append(thread, second)
    old.add_human_comment(int(bound.id), "rollback done", login="bob")
    got = after.read_back(thread)
    assert [e.id for e in got.entries] == [first.id, second.id]
    assert [h.text for h in got.humans] == ["rollback done"]
    after.resolve(thread, third)
    assert old.issues[int(bound.id)]["state"] == "closed"
    assert new.comments_of(theirs) == [] and new.issues[theirs]["state"] == "open"  # theirs untouched
    fresh = after.bind(make_case())  # a new case opens in the new repo
    assert fresh.model_dump()["repo"] == "acme/incidents-2026" and int(fresh.id) in new.issues


def test_an_issue_url_naming_another_repo_is_refused_not_bound_to_our_issue_with_that_number(svc: Harness) -> None:
    """`github.issue` may be an issue URL. Issue numbers are per repo: a URL of another repo's #N names a
    thread we do not write to, and binding the configured repo's #N instead would post the case (its
    journal, its decisions) into someone else's issue. Refused; a URL of the configured repo, however GitHub
    spells its case, binds."""
    from sharedctx.errors import Rejected
    from tests.backends.conftest import make_case

    theirs = svc.double.add_issue("another team's incident in our repo")
    b = svc.backend
    for url in (f"https://github.com/acme/secret-project/issues/{theirs}",
                f"https://api.github.com/repos/acme/secret-project/issues/{theirs}/",
                f"https://github.com/someone-else/payments/issues/{theirs}"):
        with pytest.raises(Rejected, match="another repo"):
            b.bind(make_case(**{"github.issue": url}))
    assert svc.double.comments_of(theirs) == []
    for url in (f"https://github.com/ACME/Payments/issues/{theirs}",
                f"https://api.github.com/repos/acme/payments/issues/{theirs}", f"#{theirs}", str(theirs)):
        bound = b.bind(make_case(**{"github.issue": url}))
        assert bound.id == str(theirs) and bound.model_dump()["repo"] == "acme/payments"


def test_a_recorded_repo_that_is_not_owner_slash_name_never_becomes_part_of_a_url(svc: Harness) -> None:
    """`_repo_of` builds every URL of a bound thread from the binding's repo. Anything but a plain
    owner/name (dot segments, a query, a fragment) would send our token's writes to another API path
    (httpx resolves `/repos/../user/issues/1` to `/user/issues/1`); such a value is not a repo, and the
    thread is taken to live in the configured one, as a binding without a repo is."""
    from sharedctx.backends.base import ThreadRef

    b = svc.backend
    for bad in ("../user", "acme/..", "./payments", "acme/payments?x=", "acme/payments#", "acme/pay ments",
                "acme/payments\n"):
        thread = ThreadRef.model_validate({"backend": "github", "id": "1", "repo": bad})
        url = httpx.URL(b._issue(thread, "/comments"))
        assert url.path == "/repos/acme/payments/issues/1/comments" and not url.query, (bad, url)
    ok = ThreadRef.model_validate({"backend": "github", "id": "1", "repo": "acme-corp/incidents.2026_old"})
    assert httpx.URL(b._issue(ok)).path == "/repos/acme-corp/incidents.2026_old/issues/1"


def test_after_the_repo_is_renamed_older_cases_follow_githubs_redirect(monkeypatch: pytest.MonkeyPatch) -> None:
    """A renamed (or transferred) repo keeps its issues and numbers; GitHub answers the old name with a
    redirect (301 for GET, 307 for writes) and `check` tells the operator to set `repo` to the new name.
    The cases bound before keep the old name in their binding: their writes, reads and resolve must follow
    the redirect, not fail as 'the service will not accept this request' (which strands them)."""
    from sharedctx.backends.base import ThreadRef
    from sharedctx.backends.github import GitHubBackend, GitHubOptions
    from tests.backends.conftest import make_case, make_chain
    from tests.doubles.github import GitHubDouble

    monkeypatch.setenv("GITHUB_TOKEN", "gh-test-token")
    d = GitHubDouble(repo="acme/incidents-prod")  # the repo after the rename

    def route(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/repos/acme/incidents/"):
            moved = request.url.copy_with(path=request.url.path.replace("/repos/acme/incidents/",
                                                                        "/repos/acme/incidents-prod/", 1))
            return httpx.Response(301 if request.method == "GET" else 307, headers={"location": str(moved)},
                                  json={"message": "Moved Permanently", "url": str(moved)})
        return d.handle(request)

    b = GitHubBackend("github", GitHubOptions(repo="acme/incidents-prod", token="env:GITHUB_TOKEN", max_block=0.0),
                      client=httpx.Client(transport=httpx.MockTransport(route)))
    case = make_case()
    first, second = make_chain(case.id, 2)
    number = d.add_issue("bound before the rename")
    thread = ThreadRef.model_validate({"backend": "github", "id": str(number), "repo": "acme/incidents"})
    b.append(thread, first)
    d.add_human_comment(number, "rollback done", login="bob")
    got = b.read_back(thread)
    assert [e.id for e in got.entries] == [first.id] and [h.text for h in got.humans] == ["rollback done"]
    b.resolve(thread, second)
    assert d.issues[number]["state"] == "closed"
