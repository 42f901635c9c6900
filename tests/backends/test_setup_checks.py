"""`sharedctx backends check` for GitHub, PagerDuty, ServiceNow and Jira against their spec-checked doubles.

For each: a good setup passes every check; each broken setting gives its own failure in plain words (what is
wrong, which setting or permission fixes it); a check reads only (nothing a person would see is written);
and no detail ever contains the secret itself.
"""

from __future__ import annotations

import httpx
import pytest

from sharedctx.backends.base import Check, Checkable
from tests.backends import harness
from tests.backends.harness import Harness

SECRETS = ("gh-test-token", "pd-test-token", "sn-test-pass", "jira-test-token")


def run(backend: Checkable, double: object) -> dict[str, Check]:
    before = len(double.requests)  # type: ignore[attr-defined]
    got = backend.check()
    sent: list[httpx.Request] = double.requests[before:]  # type: ignore[attr-defined]
    assert sent and all(r.method == "GET" for r in sent), [f"{r.method} {r.url.path}" for r in sent]
    for c in got:
        assert not any(s in c.detail for s in SECRETS), c
    names = [c.what for c in got]
    assert len(names) == len(set(names)), names
    return {c.what: c for c in got}


def failed(checks: dict[str, Check] | list[Check]) -> dict[str, str]:
    listed = list(checks.values()) if isinstance(checks, dict) else checks
    return {c.what: c.detail for c in listed if not c.ok}


# ---------------------------------------------------------------------------------------------- GitHub
@pytest.fixture
def gh(monkeypatch: pytest.MonkeyPatch) -> Harness:
    return harness.github(monkeypatch)


def test_github_good_setup_passes(gh: Harness) -> None:
    got = run(gh.backend, gh.double)
    assert list(got) == ["credentials", "repository", "permission", "scopes"]
    assert not failed(got), got
    assert "sharedctx-bot" in got["credentials"].detail and "write access" in got["permission"].detail


def test_github_bad_token_says_so_and_names_the_variable_not_the_secret(gh: Harness) -> None:
    gh.double.token = "another-token"
    got = failed(run(gh.backend, gh.double))
    assert list(got) == ["credentials"]  # nothing else can be checked without credentials
    detail = got["credentials"]
    assert "refused the token in env:GITHUB_TOKEN" in detail and "401" in detail


def test_github_missing_token_variable_is_named(gh: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_TOKEN")
    assert "GITHUB_TOKEN" in failed(gh.backend.check())["credentials"]


def test_github_missing_repo(gh: Harness) -> None:
    got = failed(run(gh.make(repo="acme/nope"), gh.double))
    assert list(got) == ["repository"] and "acme/nope does not exist, or the token cannot see it" in got["repository"]


def test_github_renamed_archived_or_issueless_repo(gh: Harness) -> None:
    gh.double.renamed_to = "acme/payments-v2"
    assert "renamed or transferred" in failed(run(gh.backend, gh.double))["repository"]
    gh.double.renamed_to = None
    gh.double.archived = True
    assert "archived" in failed(run(gh.backend, gh.double))["repository"]
    gh.double.archived, gh.double.has_issues = False, False
    assert "Issues disabled" in failed(run(gh.backend, gh.double))["repository"]


def test_github_read_only_user_cannot_label_or_close(gh: Harness) -> None:
    gh.double.permission = "pull"
    got = failed(run(gh.backend, gh.double))
    assert list(got) == ["permission"] and "only read access" in got["permission"] and "triage" in got["permission"]
    gh.double.permission = "triage"
    assert not failed(run(gh.backend, gh.double))


def test_github_classic_token_without_repo_scope(gh: Harness) -> None:
    gh.double.scopes = "read:org, gist"
    assert "needs repo" in failed(run(gh.backend, gh.double))["scopes"]
    gh.double.private, gh.double.scopes = False, "public_repo"
    assert not failed(run(gh.backend, gh.double))
    gh.double.scopes = None  # fine-grained: nothing to read, said so
    assert "fine-grained" in run(gh.backend, gh.double)["scopes"].detail


def test_github_unreachable_is_a_failed_check_not_an_exception(gh: Harness) -> None:
    gh.double.inject("reset", times=1)
    got = failed(gh.backend.check())
    assert "could not reach" in got["credentials"]


# ------------------------------------------------------------------------------------------- PagerDuty
@pytest.fixture
def pd(monkeypatch: pytest.MonkeyPatch) -> Harness:
    return harness.pagerduty(monkeypatch)


def test_pagerduty_good_setup_passes(pd: Harness) -> None:
    got = run(pd.backend, pd.double)
    assert list(got) == ["credentials", "from", "service", "incidents"]
    assert not failed(got), got
    assert "sharedctx bot" in got["from"].detail


def test_pagerduty_bad_key(pd: Harness) -> None:
    pd.double.token = "rotated"
    got = failed(run(pd.backend, pd.double))
    assert list(got) == ["credentials"] and "refused the API key in env:PD_TOKEN" in got["credentials"]


def test_pagerduty_bad_from_fails_at_setup_in_plain_words(pd: Harness) -> None:
    got = failed(run(pd.make(from_email="oncall@acme.io"), pd.double))
    assert list(got) == ["from"]
    assert "oncall@acme.io is not a user of this PagerDuty account" in got["from"]
    assert "Set from_email" in got["from"]
    # a query match on part of an address is not the user: only the exact address counts
    assert "from" in failed(run(pd.make(from_email="ice@acme.io"), pd.double))


def test_pagerduty_read_only_from_user(pd: Harness) -> None:
    pd.double.users["bot@acme.io"] = ("PBOT001", "sharedctx bot", "observer")
    assert "read-only role 'observer'" in failed(run(pd.backend, pd.double))["from"]


def test_pagerduty_missing_or_disabled_service(pd: Harness) -> None:
    got = failed(run(pd.make(service_id="PNOPE01"), pd.double))
    assert list(got) == ["service"] and "service PNOPE01 does not exist" in got["service"]
    pd.double.services["PSVC001"] = "disabled"
    assert "disabled" in failed(run(pd.backend, pd.double))["service"]
    assert not failed(run(pd.make(service_id=None), pd.double))  # optional: said what it means, not a failure


def test_pagerduty_scoped_token_without_incident_access(pd: Harness) -> None:
    pd.double.scoped_denied = {"/incidents"}
    assert "may not read incidents" in failed(run(pd.backend, pd.double))["incidents"]


# ------------------------------------------------------------------------------------------ ServiceNow
@pytest.fixture
def sn(monkeypatch: pytest.MonkeyPatch) -> Harness:
    return harness.servicenow(monkeypatch)


def test_servicenow_good_setup_passes(sn: Harness) -> None:
    got = run(sn.backend, sn.double)
    assert list(got) == ["credentials", "incident table", "journal", "resolved state", "close code"]
    assert not failed(got), got


def test_servicenow_bad_password(sn: Harness) -> None:
    sn.double.password = "changed"
    got = failed(run(sn.backend, sn.double))
    assert list(got) == ["credentials"]
    assert "refused user sharedctx.bot with the password in env:SN_PASSWORD" in got["credentials"]


def test_servicenow_table_access(sn: Harness) -> None:
    sn.double.denied_tables = {"incident"}
    got = failed(run(sn.backend, sn.double))
    assert list(got) == ["incident table"] and "itil" in got["incident table"]
    sn.double.denied_tables = {"sys_journal_field"}
    got = failed(run(sn.backend, sn.double))
    assert list(got) == ["journal"] and "never read them back" in got["journal"]


def test_servicenow_resolve_target_choices(sn: Harness) -> None:
    got = failed(run(sn.make(resolved_state="9", close_code="Fixed"), sn.double))
    assert list(got) == ["resolved state", "close code"]
    assert "resolved_state = '9' is not an incident state choice" in got["resolved state"]
    assert "'6'=Resolved" in got["resolved state"]
    assert "'Solved (Permanently)'" in got["close code"] and "Set close_code" in got["close code"]
