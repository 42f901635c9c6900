"""A context over SQLite with all four connectors against their spec-checked doubles, and `[humans]`
configured the way docs/humans.md describes (webhook secrets by env reference, allow-lists)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sharedctx.backends.github import GitHubBackend, GitHubOptions
from sharedctx.backends.jira import JiraBackend, JiraOptions
from sharedctx.backends.pagerduty import PagerDutyBackend, PagerDutyOptions
from sharedctx.backends.servicenow import ServiceNowBackend, ServiceNowOptions
from sharedctx.config import parse_config
from sharedctx.context import SharedContext
from sharedctx.humans import Humans, Poller
from sharedctx.webhooks import webhooks_app
from tests.doubles.base import violations
from tests.doubles.jira import SITE, JiraDouble
from tests.doubles.pagerduty import PagerDutyDouble
from tests.doubles.servicenow import HOST, ServiceNowDouble
from tests.humans.doubles import HumanGitHubDouble

SECRETS = {"github": "gh-hook-secret", "pagerduty": "pd-hook-secret", "jira": "jira-hook-secret",
           "servicenow": "sn-hook-secret"}


@dataclass
class World:
    ctx: SharedContext
    humans: Humans
    poller: Poller
    gh: HumanGitHubDouble
    pd: PagerDutyDouble
    sn: ServiceNowDouble
    jira: JiraDouble
    app: Any

    def deliver(self) -> None:
        assert self.ctx.drain(timeout=30)

    def thread(self, case_id: str, backend: str) -> str:
        return str(self.ctx.store.get_case(case_id).bindings[backend]["id"])

    async def post(self, name: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sharedctx") as client:
            return await client.post(f"/{name}", content=body, headers=headers)


def client_for(double: Any) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(double.handle))


def make_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, humans: dict[str, Any] | None = None,
               backends: tuple[str, ...] = ("github", "pagerduty", "servicenow", "jira")) -> World:
    for k, v in {"GITHUB_TOKEN": "gh-test-token", "PD_TOKEN": "pd-test-token", "SN_PASSWORD": "sn-test-pass",
                 "JIRA_TOKEN": "jira-test-token"}.items():
        monkeypatch.setenv(k, v)
    for name, secret in SECRETS.items():
        monkeypatch.setenv(f"{name.upper()}_HOOK_SECRET", secret)
    gh, pd, sn, jira = HumanGitHubDouble(), PagerDutyDouble(), ServiceNowDouble(), JiraDouble()
    made = {
        "github": GitHubBackend("github", GitHubOptions(repo="acme/payments", token="env:GITHUB_TOKEN", max_block=0.0),
                                client=client_for(gh)),
        "pagerduty": PagerDutyBackend("pagerduty", PagerDutyOptions(token="env:PD_TOKEN", from_email="bot@acme.io",
                                                                    service_id="PSVC001"), client=client_for(pd)),
        "servicenow": ServiceNowBackend("servicenow", ServiceNowOptions(instance_url=HOST, username="sharedctx.bot",
                                                                        password="env:SN_PASSWORD"),
                                        client=client_for(sn)),
        "jira": JiraBackend("jira", JiraOptions(base_url=SITE, project="OPS", email="bot@acme.io",
                                                api_token="env:JIRA_TOKEN"), client=client_for(jira)),
    }
    cfg_humans: dict[str, Any] = {
        "poll_interval": 0.05, "wait_interval": 0.02,
        "allow": {"pagerduty": ["PALICE1"], "servicenow": ["alice.oncall"], "jira": ["alice-1"]},
        "webhooks": {name: {"secret": f"env:{name.upper()}_HOOK_SECRET"} for name in SECRETS},
        **(humans or {}),
    }
    cfg = parse_config({"store": "journal.db", "humans": cfg_humans,
                        "backends": [{"type": b} for b in backends]}, base_dir=tmp_path)  # fmt: skip
    ctx = SharedContext.open(cfg, backends={b: made[b] for b in backends}, worker=False)
    h = Humans(ctx)
    return World(ctx, h, Poller(ctx, h), gh, pd, sn, jira, webhooks_app(ctx, h))


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    before = len(violations())
    w = make_world(tmp_path, monkeypatch)
    yield w
    w.ctx.close()
    assert violations()[before:] == [], "a request or response broke the services' OpenAPI descriptions"


@pytest.fixture
def github_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    before = len(violations())
    w = make_world(tmp_path, monkeypatch, backends=("github",))
    yield w
    w.ctx.close()
    assert violations()[before:] == []
