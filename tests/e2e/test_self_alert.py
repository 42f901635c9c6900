"""sharedctx watching itself, end to end, with the shipped rules and the real Prometheus and Alertmanager:

    sharedctx serve /metrics  --scrape 1s-->  prometheus (deploy/prometheus/sharedctx-rules.yml)
        --SharedctxBackendStopped-->  alertmanager  --webhook-->  the same sharedctx serve  -> a case

A backend's delivery is stopped in the store (what the worker does on an auth failure); the scrape
reads it from the store, the shipped rule fires, and the alert comes back into sharedctx's own intake
as a case about sharedctx. Skipped only if the binaries are absent.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest

from sharedctx.channel.net import free_port
from sharedctx.context import SharedContext
from sharedctx.model import CaseRecord

from .test_prometheus import ALERTMANAGER, PROMETHEUS, ROOT, http_ok, process, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(PROMETHEUS is None or ALERTMANAGER is None,
                       reason="needs the `prometheus` and `prometheus-alertmanager` binaries"),
]  # fmt: skip


def test_a_stopped_backend_alerts_through_prometheus_back_into_sharedctx(tmp_path: Path) -> None:
    assert PROMETHEUS and ALERTMANAGER
    prom_port, am_port, serve_port = free_port(), free_port(), free_port()
    config = tmp_path / "sharedctx.toml"
    config.write_text(
        'store = ".sharedctx/sharedctx.db"\n'
        f'[server]\nhost = "127.0.0.1"\nport = {serve_port}\nintake_token = "env:SHAREDCTX_INTAKE_TOKEN"\n'
        '[[backends]]\ntype = "local"\n',
        encoding="utf-8",
    )
    token = "self-" + os.urandom(8).hex()
    (tmp_path / "intake-token").write_text(token + "\n", encoding="utf-8")
    shutil.copy(ROOT / "deploy" / "prometheus" / "sharedctx-rules.yml", tmp_path / "rules.yml")
    (tmp_path / "alertmanager.yml").write_text(json.dumps({
        "route": {"receiver": "sharedctx", "group_by": ["alertname"], "group_wait": "1s",
                  "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "sharedctx", "webhook_configs": [
            {"url": f"http://127.0.0.1:{serve_port}/alerts/alertmanager", "send_resolved": True,
             "http_config": {"authorization": {"type": "Bearer",
                                               "credentials_file": str(tmp_path / "intake-token")}}}]}],
    }))  # fmt: skip
    (tmp_path / "prometheus.yml").write_text(json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "rules.yml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
        "scrape_configs": [{"job_name": "sharedctx",
                            "static_configs": [{"targets": [f"127.0.0.1:{serve_port}"]}]}],
    }))  # fmt: skip
    logs = tmp_path / "logs"
    logs.mkdir()

    def diagnose() -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(logs.glob("*.log")))

    with ExitStack() as stack:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "SHAREDCTX_CONFIG": str(config),
               "SHAREDCTX_INTAKE_TOKEN": token}  # fmt: skip
        env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
        stack.enter_context(process("serve", [sys.executable, "-m", "sharedctx.cli", "serve"], logs,
                                    cwd=tmp_path, env=env))  # fmt: skip
        stack.enter_context(process("alertmanager", [
            ALERTMANAGER, f"--config.file={tmp_path / 'alertmanager.yml'}", f"--storage.path={tmp_path / 'am'}",
            f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=", "--log.level=warn",
        ], logs))  # fmt: skip
        stack.enter_context(process("prometheus", [
            PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}", "--rules.alert.resend-delay=1s", "--log.level=warn",
        ], logs))  # fmt: skip
        wait_for("sharedctx serve", lambda: http_ok(f"http://127.0.0.1:{serve_port}/readyz"), 20, diagnose)
        wait_for("alertmanager", lambda: http_ok(f"http://127.0.0.1:{am_port}/-/ready"), 20, diagnose)
        wait_for("prometheus", lambda: http_ok(f"http://127.0.0.1:{prom_port}/-/ready"), 20, diagnose)

        ctx = stack.enter_context(SharedContext.open(config, worker=False))
        assert ctx.cases() == []  # nothing is wrong yet: no alert, no case
        ctx.store.set_backend_state("local", "stopped", "401 Unauthorized: bad token")

        def the_case() -> CaseRecord | None:
            return next((c for c in ctx.cases() if "local" in c.title and "stopped" in c.title), None)

        case = wait_for("the self-alert to open a case", the_case, 45, diagnose)
        assert case.severity == "critical" and case.fingerprint and case.fingerprint.startswith("alertmanager:")
        first = ctx.case(case.id).timeline()[0]
        assert first.kind == "alert" and first.attrs.get("status") == "firing"
