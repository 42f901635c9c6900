"""Fan-out isolation: one backend refusing its credentials and another that has stalled must not hold up
the healthy ones. This checks the correctness half (the healthy backends get everything, the refused one is
`stopped` with its reason in plain words in `sharedctx outbox status --json`, and it was not hammered);
the rate half is measured, as a ratio, by `bench/delivery.py` (no timing asserts in tests).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sharedctx.cli import app
from sharedctx.config import parse_config
from sharedctx.context import SharedContext
from sharedctx.store.sqlite import SQLiteStore
from tests.backends import harness

CONCURRENCY = 4
WORKER = {"base_delay": 0.01, "max_delay": 0.2, "max_attempts": 1000, "poll_interval": 0.02,
          "concurrency": CONCURRENCY}
CONFIG = """\
store = "journal.db"
[worker]
enabled = false
[[backends]]
type = "github"
repo = "acme/payments"
token = "env:GITHUB_TOKEN"
[[backends]]
type = "pagerduty"
token = "env:PD_TOKEN"
from_email = "bot@acme.io"
service_id = "PSVC001"
[[backends]]
type = "servicenow"
instance_url = "https://acme.service-now.com"
username = "sharedctx.bot"
password = "env:SN_PASSWORD"
[[backends]]
type = "jira"
base_url = "https://acme.atlassian.net"
project = "OPS"
email = "bot@acme.io"
api_token = "env:JIRA_TOKEN"
"""


def cli(*args: str) -> str:
    result = CliRunner().invoke(app, ["--config", "sharedctx.toml", *args])
    assert result.exit_code == 0, result.output
    return result.output


def wait_for(predicate: object, timeout: float = 30.0) -> bool:
    """Poll until `predicate()` holds (a deadline against hanging, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


@pytest.mark.slow
def test_a_401_backend_stops_and_a_stalled_one_waits_while_the_healthy_ones_get_everything(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sharedctx.toml").write_text(CONFIG)
    gh, pd, sn, jira = (harness.github(monkeypatch), harness.pagerduty(monkeypatch), harness.servicenow(monkeypatch),
                        harness.jira(monkeypatch))
    sn.double.auth_ok = False  # every request: 401 Bad credentials
    jira.double.stalled, jira.double.latency = True, 0.3  # hangs, then times out, on every request
    backends = {"github": gh.make(per_minute=100_000, per_hour=100_000), "pagerduty": pd.backend,
                "servicenow": sn.backend, "jira": jira.backend}
    cfg = parse_config({"store": "journal.db", "worker": WORKER}, base_dir=tmp_path)
    store = SQLiteStore(cfg.store_url)
    ctx = SharedContext(cfg, store, backends, worker=True)
    try:
        cases = [ctx.open_case(f"isolation case {c}", service="payments") for c in range(3)]
        for i in range(20):
            for case in cases:
                case.record("finding", f"step {i}", f"span {i} slow", author="partner:telemetry")
        total = 60

        def healthy_done() -> bool:
            counts = store.outbox_counts()
            return all(counts.get(n, {}).get("delivered") == total for n in ("github", "pagerduty"))

        assert wait_for(healthy_done), store.outbox_counts()
        for name in ("github", "pagerduty"):
            for case in cases:
                thread = backends[name].bind(store.get_case(case.id))
                assert backends[name].read_back(thread).entries == case.timeline()

        # The 401 backend: stopped, in plain words, without a retry storm, and nothing lost locally.
        status = {r["backend"]: r for r in json.loads(cli("outbox", "status", "--json"))}
        refused = status["servicenow"]
        assert refused["state"] == "stopped"
        assert "ServiceNow refused our credentials (401" in refused["reason"]
        assert "user/password" in refused["reason"]  # says what to check
        assert refused["pending"] == total and refused["delivered"] == 0 and refused["dead"] == 0
        assert len(sn.double.requests) <= CONCURRENCY, f"{len(sn.double.requests)} requests after a 401"
        # The stalled backend: still running and retrying; nothing delivered, nothing given up on.
        stalled = status["jira"]
        assert stalled["state"] == "running" and stalled["delivered"] == 0 and stalled["dead"] == 0
        assert status["github"]["delivered"] == status["pagerduty"]["delivered"] == total

        # Fix the credentials, restart the backend as the operator would: everything arrives, once.
        sn.double.auth_ok = True
        assert "restarted servicenow" in cli("outbox", "retry", "--backend", "servicenow")
        assert wait_for(lambda: store.outbox_counts()["servicenow"].get("delivered") == total), store.outbox_counts()
        for case in cases:
            thread = backends["servicenow"].bind(store.get_case(case.id))
            assert backends["servicenow"].read_back(thread).entries == case.timeline()
    finally:
        ctx.close()


@pytest.mark.slow
def test_a_neighbour_hanging_in_bind_does_not_hold_up_the_healthy_backends(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    gh, pd, jira = harness.github(monkeypatch), harness.pagerduty(monkeypatch), harness.jira(monkeypatch)
    jira.double.latency = 120.0  # every Jira request hangs (a black-holed connection) until released
    backends = {"jira": jira.backend, "github": gh.make(per_minute=100_000, per_hour=100_000),
                "pagerduty": pd.backend}
    cfg = parse_config({"store": "journal.db", "worker": WORKER}, base_dir=tmp_path)
    store = SQLiteStore(cfg.store_url)
    ctx = SharedContext(cfg, store, backends, worker=True)
    try:
        first = ctx.open_case("jira hangs binding this one", service="payments")
        first.record("finding", "step 0", "body", author="partner:telemetry")
        assert wait_for(lambda: len(jira.double.requests) > 0, timeout=10)  # a Jira lane is inside bind() now
        case = ctx.open_case("a case the healthy backends bind while Jira hangs", service="payments")
        for i in range(5):
            case.record("finding", f"step {i}", "body", author="partner:telemetry")
        done = wait_for(lambda: all(store.outbox_counts().get(n, {}).get("delivered") == 6
                                    for n in ("github", "pagerduty")), timeout=10)
        assert done, f"healthy backends held up by a hanging neighbour: {store.outbox_counts()}"
    finally:
        jira.double.unstall.set()
        ctx.close()
