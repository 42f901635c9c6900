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


# ------------------------------------------------------------------------------------------------ Jira
@pytest.fixture
def jira(monkeypatch: pytest.MonkeyPatch) -> Harness:
    return harness.jira(monkeypatch)


def test_jira_good_setup_passes(jira: Harness) -> None:
    jira.double.add_issue("an open task")
    got = run(jira.backend, jira.double)
    assert list(got) == ["credentials", "project", "issue type", "permissions", "transition"]
    assert not failed(got), got
    assert "offers 'Done'" in got["transition"].detail


def test_jira_bad_token(jira: Harness) -> None:
    jira.double.api_token = "revoked"
    got = failed(run(jira.backend, jira.double))
    assert list(got) == ["credentials"] and "refused bot@acme.io with the API token in env:JIRA_TOKEN" in got[
        "credentials"]


def test_jira_missing_project(jira: Harness) -> None:
    got = failed(run(jira.make(project="NOPE"), jira.double))
    assert list(got) == ["project"] and "project NOPE does not exist" in got["project"]


def test_jira_issue_type_and_permissions(jira: Harness) -> None:
    jira.double.permissions -= {"TRANSITION_ISSUES", "ADD_COMMENTS"}
    got = failed(run(jira.make(issue_type="Incident"), jira.double))
    assert list(got) == ["issue type", "permissions"]
    assert "'Incident' is not an issue type of OPS" in got["issue type"] and "Task, Bug, Epic" in got["issue type"]
    assert "lacks Add comments, Transition issues in OPS" in got["permissions"]


def test_jira_missing_transition(jira: Harness) -> None:
    jira.double.add_issue("an open task")
    jira.double.transitions = {"21": "In Progress", "41": "Close"}
    got = failed(run(jira.backend, jira.double))
    assert list(got) == ["transition"]
    assert "offer no transition 'Done'" in got["transition"] and "Close (id 41)" in got["transition"]
    assert not failed(run(jira.make(resolve_transition="41"), jira.double))  # an id works too


def test_jira_transition_without_an_open_issue_is_said_unverified(jira: Harness) -> None:
    got = run(jira.backend, jira.double)
    assert got["transition"].ok and got["transition"].detail.startswith("not verified")


# ------------------------------------------------------------------------------------------------- CLI
def test_cli_backends_check_exits_non_zero_on_any_failure(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """The four connectors configured in sharedctx.toml, their HTTP routed to the doubles by host."""
    import json

    from typer.testing import CliRunner

    from sharedctx import cli
    from sharedctx.backends import github, jira, pagerduty, servicenow
    from tests.doubles.github import GitHubDouble
    from tests.doubles.jira import JiraDouble
    from tests.doubles.pagerduty import PagerDutyDouble
    from tests.doubles.servicenow import ServiceNowDouble

    doubles = {"api.github.com": GitHubDouble(), "api.pagerduty.com": PagerDutyDouble(),
               "acme.service-now.com": ServiceNowDouble(), "your-domain.atlassian.net": JiraDouble()}

    def client(timeout: float) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(lambda r: doubles[r.url.host].handle(r)))

    for mod in (github, jira, pagerduty, servicenow):
        monkeypatch.setattr(mod, "new_client", client)
    for var, value in {"GITHUB_TOKEN": "gh-test-token", "PD_TOKEN": "pd-test-token", "SN_PASSWORD": "sn-test-pass",
                       "JIRA_TOKEN": "jira-test-token"}.items():
        monkeypatch.setenv(var, value)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SHAREDCTX_CONFIG", raising=False)
    runner = CliRunner()
    assert runner.invoke(cli.app, ["init"]).exit_code == 0
    base_config = (tmp_path / "sharedctx.toml").read_text()

    def configure(from_email: str) -> None:
        (tmp_path / "sharedctx.toml").write_text(base_config + f"""
[[backends]]
name = "gh"
type = "github"
repo = "acme/payments"
token = "env:GITHUB_TOKEN"

[[backends]]
name = "pd"
type = "pagerduty"
token = "env:PD_TOKEN"
from_email = "{from_email}"
service_id = "PSVC001"

[[backends]]
name = "sn"
type = "servicenow"
instance_url = "https://acme.service-now.com"
username = "sharedctx.bot"
password = "env:SN_PASSWORD"

[[backends]]
name = "jira"
type = "jira"
base_url = "https://your-domain.atlassian.net"
project = "OPS"
email = "bot@acme.io"
api_token = "env:JIRA_TOKEN"
""")

    configure("bot@acme.io")
    ok = runner.invoke(cli.app, ["backends", "check", "--json"])
    assert ok.exit_code == 0, ok.output
    got = json.loads(ok.output)
    assert {"gh", "pd", "sn", "jira"} <= set(got) and all(c["ok"] for n in ("gh", "pd", "sn", "jira") for c in got[n])
    configure("nobody@acme.io")
    bad = runner.invoke(cli.app, ["backends", "check"])
    assert bad.exit_code == 6, bad.output
    assert "FAIL pd: from: the From address nobody@acme.io is not a user" in " ".join(bad.output.split())
    assert not any(s in bad.output for s in SECRETS)
    one = runner.invoke(cli.app, ["backends", "check", "gh"])  # one backend: the others' failures do not count
    assert one.exit_code == 0, one.output


# ------------------------------------------------------------------------------------ faults, all four
FAULTS = [("html", {"status": 200}), ("html", {"status": 502}), ("5xx", {"status": 503}), ("reset", {}),
          ("429", {"retry_after": 1.0}), ("401", {})]


@pytest.mark.parametrize("service", ["github", "pagerduty", "servicenow", "jira"])
@pytest.mark.parametrize(("fault", "kw"), FAULTS, ids=[f"{f}-{k.get('status', '')}" for f, k in FAULTS])
def test_a_check_never_raises_and_fails_in_words_whatever_answers(
    service: str, fault: str, kw: dict[str, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy's HTML page, a 5xx, a reset, a 429 or a 401 on any one request: a failed check, never an exception,
    and never an "ok" for what was not seen. Each request position is hit in turn."""
    svc: Harness = getattr(harness, service)(monkeypatch)
    if service == "jira":
        svc.double.add_issue("open")
    n = len(run(svc.backend, svc.double))  # how many checks a good setup has
    for position in range(8):
        svc.double.faults.clear()
        before = len(svc.double.requests)
        svc.double.inject(fault, times=1, **kw)
        svc.double.requests[before:] = []
        for _ in range(position):  # let `position` requests through first
            svc.double.faults.insert(0, type(svc.double.faults[0])("latency", times=1, seconds=0.0))
        got = svc.backend.check()
        assert isinstance(got, list) and got
        bad = [c for c in got if not c.ok]
        if svc.double.faults and svc.double.faults[-1].times == 1:
            continue  # fewer requests than `position`: the fault was never served
        assert bad, (position, got)
        assert all(c.detail and not any(s in c.detail for s in SECRETS) for c in got)
        assert len(got) <= n + 1
