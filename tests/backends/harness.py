"""One harness per service so the same behaviour suite (suite.py) runs against all four connectors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from sharedctx.backends.github import GitHubBackend, GitHubOptions
from sharedctx.backends.jira import JiraBackend, JiraOptions
from sharedctx.backends.pagerduty import PagerDutyBackend, PagerDutyOptions
from sharedctx.backends.servicenow import ServiceNowBackend, ServiceNowOptions
from sharedctx.backends.slack import SlackBackend, SlackOptions
from tests.doubles.base import ServiceDouble
from tests.doubles.github import GitHubDouble
from tests.doubles.jira import SITE, JiraDouble
from tests.doubles.pagerduty import PagerDutyDouble
from tests.doubles.servicenow import HOST, ServiceNowDouble
from tests.doubles.slack import CHANNEL, SlackDouble


@dataclass
class Harness:
    name: str
    double: Any
    make: Callable[..., Any]  # (**option overrides) -> backend
    add_human: Callable[[str, str], None]  # (thread id, text)
    delete: Callable[[str], None]
    given_label: Callable[[], tuple[str, str]]  # -> (label key, value) of a pre-existing thread
    writes: int = 0

    @property
    def backend(self) -> Any:
        return self.make()


def client_for(double: ServiceDouble) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(double.handle))


def github(monkeypatch: pytest.MonkeyPatch, **dkw: Any) -> Harness:
    monkeypatch.setenv("GITHUB_TOKEN", "gh-test-token")
    d = GitHubDouble(**dkw)

    def make(**kw: Any) -> GitHubBackend:
        opts = {"repo": "acme/payments", "token": "env:GITHUB_TOKEN", "max_block": 0.0, **kw}
        return GitHubBackend("github", GitHubOptions(**opts), client=client_for(d))

    return Harness("github", d, make, lambda t, x: d.add_human_comment(int(t), x) and None,
                   lambda t: d.delete_issue(int(t)), lambda: ("github.issue", str(d.add_issue())))


def pagerduty(monkeypatch: pytest.MonkeyPatch) -> Harness:
    monkeypatch.setenv("PD_TOKEN", "pd-test-token")
    d = PagerDutyDouble()

    def make(**kw: Any) -> PagerDutyBackend:
        opts = {"token": "env:PD_TOKEN", "from_email": "bot@acme.io", "service_id": "PSVC001", **kw}
        return PagerDutyBackend("pagerduty", PagerDutyOptions(**opts), client=client_for(d))

    return Harness("pagerduty", d, make, lambda t, x: d.add_human_note(t, x) and None, d.delete_incident,
                   lambda: ("pagerduty.incident", d.add_incident()))


def servicenow(monkeypatch: pytest.MonkeyPatch) -> Harness:
    monkeypatch.setenv("SN_PASSWORD", "sn-test-pass")
    d = ServiceNowDouble()

    def make(**kw: Any) -> ServiceNowBackend:
        opts = {"instance_url": HOST, "username": "sharedctx.bot", "password": "env:SN_PASSWORD", **kw}
        return ServiceNowBackend("servicenow", ServiceNowOptions(**opts), client=client_for(d))

    return Harness("servicenow", d, make, d.add_human_note, d.delete_incident,
                   lambda: ("servicenow.incident", d.add_incident()["number"]))


def jira(monkeypatch: pytest.MonkeyPatch, api_version: int = 3) -> Harness:
    monkeypatch.setenv("JIRA_TOKEN", "jira-test-token")
    d = JiraDouble()

    def make(**kw: Any) -> JiraBackend:
        opts = {"base_url": SITE, "project": "OPS", "email": "bot@acme.io", "api_token": "env:JIRA_TOKEN",
                "api_version": api_version, **kw}
        return JiraBackend("jira", JiraOptions(**opts), client=client_for(d))

    return Harness("jira", d, make, d.add_human_comment, d.delete_issue, lambda: ("jira.issue", d.add_issue()))


def slack(monkeypatch: pytest.MonkeyPatch, **dkw: Any) -> Harness:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test-token")
    d = SlackDouble(**dkw)

    def make(**kw: Any) -> SlackBackend:
        opts = {"channel": CHANNEL, "token": "env:SLACK_BOT_TOKEN", "posts_per_second": 1000.0, "max_block": 0.0,
                **kw}
        return SlackBackend("slack", SlackOptions(**opts), client=client_for(d))

    return Harness("slack", d, make, lambda t, x: d.add_human_reply(t, x) and None, d.delete_message,
                   lambda: ("slack.thread", d.add_message("an existing alert thread")["ts"]))
