"""End to end with the real Prometheus and Alertmanager: spike -> rule fires -> webhook -> agents -> resolved.

    exporter (this process)  --scrape 1s-->  prometheus  --rule, for: 1s-->  alertmanager
        --webhook (group_wait 1s)-->  sharedctx serve  --stdio MCP-->  telemetry partner
        --query_range-->  the same prometheus

The exporter serves `http_requests_total` counters for `checkout`, with 30% of requests failing
until the test has seen the investigation's handoff, then none. Prometheus resolves the alert,
Alertmanager sends `resolved`, and the primary verifies (asking the partner, which re-queries
Prometheus) and closes the case. Everything listens on 127.0.0.1 on free ports, lives in a temp
dir, is waited for with a deadline and killed at the end. Skipped only if the binaries are absent
(Debian packages `prometheus` and `prometheus-alertmanager`).
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sharedctx.channel.net import free_port
from sharedctx.context import SharedContext
from sharedctx.model import CaseRecord

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        PROMETHEUS is None or ALERTMANAGER is None,
        reason="needs the `prometheus` and `prometheus-alertmanager` binaries "
        "(apt-get install -y prometheus prometheus-alertmanager)",
    ),
]
T = TypeVar("T")
# In the form Prometheus prints it (matchers sorted), since the query comes back via `generatorURL`.
EXPR = (
    'sum by (service) (rate(http_requests_total{code=~"5..",service="checkout"}[5s])) / '
    'sum by (service) (rate(http_requests_total{service="checkout"}[5s]))'
)


def wait_for(what: str, check: Callable[[], T | None], timeout: float, diagnose: Callable[[], str] = str) -> T:
    """Poll `check` until it returns something truthy; fail with `what` and a diagnosis after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except Exception:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}\n{diagnose()}")
        time.sleep(0.2)


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as resp:
        return bool(resp.status == 200)


class Exporter:
    """`/metrics` with request counters that grow with time: 100 req/s, `error_share` of them 500s."""

    def __init__(self) -> None:
        self.error_share = 0.3
        self._ok = 0.0
        self._err = 0.0
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def render(self) -> bytes:
        with self._lock:
            now = time.monotonic()
            n, self._last = 100 * (now - self._last), now
            self._err += n * self.error_share
            self._ok += n * (1 - self.error_share)
            lines = [
                "# TYPE http_requests_total counter",
                f'http_requests_total{{service="checkout",code="200"}} {self._ok:.0f}',
                f'http_requests_total{{service="checkout",code="500"}} {self._err:.0f}',
            ]
        return ("\n".join(lines) + "\n").encode()

    @contextmanager
    def serve(self) -> Iterator[int]:
        exporter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.render()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield int(server.server_address[1])
        finally:
            server.shutdown()
            server.server_close()


@contextmanager
def process(name: str, cmd: list[str], logs: Path, **kw: Any) -> Iterator[subprocess.Popen[bytes]]:
    log = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - closed below, after the process
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, **kw)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log.close()


@pytest.mark.parametrize("auth", ["bearer", "basic"])
def test_an_alertmanager_alert_is_investigated_with_prometheus_data_and_resolved(tmp_path: Path, auth: str) -> None:
    assert PROMETHEUS and ALERTMANAGER
    prom_port, am_port, serve_port = free_port(), free_port(), free_port()
    prom_url = f"http://127.0.0.1:{prom_port}"
    exporter = Exporter()

    config = tmp_path / "sharedctx.toml"
    partner_cmd = [sys.executable, "-m", "sharedctx.agents.partner", "--transport", "stdio",
                   "--config", str(config), "--prometheus-url", prom_url]  # fmt: skip
    server_auth = ('intake_token = "env:SHAREDCTX_INTAKE_TOKEN"\n' if auth == "bearer" else
                   'intake_basic_user = "alertmanager"\nintake_basic_password = "env:SHAREDCTX_INTAKE_TOKEN"\n')
    config.write_text(
        'store = ".sharedctx/sharedctx.db"\n'
        f'[server]\nhost = "127.0.0.1"\nport = {serve_port}\n{server_auth}'
        f'[[partners]]\nname = "telemetry"\ntransport = "stdio"\ntimeout = 20\ncommand = {json.dumps(partner_cmd)}\n'
        f'env = {{ PYTHONPATH = "{ROOT}" }}\n',
        encoding="utf-8",
    )
    (tmp_path / "rules.yml").write_text(json.dumps({"groups": [{
        "name": "sharedctx-e2e", "interval": "1s",
        "rules": [{
            "alert": "CheckoutHighErrorRate", "expr": f"{EXPR} > 0.05", "for": "1s",
            "labels": {"severity": "critical"},
            "annotations": {"summary": "Checkout 5xx ratio above 5%",
                            "description": "More than 5% of checkout requests fail."},
        }],
    }]}))  # fmt: skip
    # the intake's credentials, as docs/intake.md tells Alertmanager to send them: from a file
    token = "e2e-intake-" + os.urandom(8).hex()
    (tmp_path / "intake-token").write_text(token + "\n", encoding="utf-8")
    secret_file = str(tmp_path / "intake-token")
    http_config = ({"authorization": {"type": "Bearer", "credentials_file": secret_file}} if auth == "bearer"
                   else {"basic_auth": {"username": "alertmanager", "password_file": secret_file}})  # fmt: skip
    (tmp_path / "alertmanager.yml").write_text(json.dumps({
        "route": {"receiver": "sharedctx", "group_by": ["alertname"], "group_wait": "1s",
                  "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "sharedctx", "webhook_configs": [
            {"url": f"http://127.0.0.1:{serve_port}/alerts/alertmanager", "send_resolved": True, "max_alerts": 1000,
             "http_config": http_config}]}],
    }))  # fmt: skip
    logs = tmp_path / "logs"
    logs.mkdir()

    def diagnose() -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(logs.glob("*.log")))

    with ExitStack() as stack:
        exporter_port = stack.enter_context(exporter.serve())
        (tmp_path / "prometheus.yml").write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(tmp_path / "rules.yml")],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
            "scrape_configs": [{"job_name": "checkout",
                                "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]}],
        }))  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT), "SHAREDCTX_CONFIG": str(config),
               "SHAREDCTX_INTAKE_TOKEN": token}  # fmt: skip
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
        wait_for("sharedctx serve", lambda: http_ok(f"http://127.0.0.1:{serve_port}/healthz"), 20, diagnose)
        wait_for("alertmanager", lambda: http_ok(f"http://127.0.0.1:{am_port}/-/ready"), 20, diagnose)
        wait_for("prometheus", lambda: http_ok(f"{prom_url}/-/ready"), 20, diagnose)

        unauthenticated = urllib.request.Request(f"http://127.0.0.1:{serve_port}/alerts", data=b'{"title": "x"}',
                                                 headers={"Content-Type": "application/json"})  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(unauthenticated, timeout=5)
        assert refused.value.code == 401  # so the case below can only come from Alertmanager's token

        ctx = stack.enter_context(SharedContext.open(config, worker=False))

        def the_case() -> CaseRecord | None:
            cases = ctx.cases()
            return cases[0] if cases else None

        case = wait_for("the alert to open a case", the_case, 30, diagnose)
        assert case.fingerprint and case.fingerprint.startswith("alertmanager:")
        assert case.service == "checkout" and case.severity == "critical"

        def handoff_recorded() -> bool:
            return any(e.kind == "handoff" for e in ctx.case(case.id).timeline())

        wait_for("the investigation's handoff", handoff_recorded, 30, diagnose)
        exporter.error_share = 0.0  # the "fix": Prometheus resolves, Alertmanager sends `resolved`
        wait_for("the case to be resolved", lambda: ctx.case(case.id).status == "resolved", 45, diagnose)

        entries = ctx.case(case.id).timeline()
        assert ctx.case(case.id).verify().ok
        kinds = [(e.author.kind, e.kind.value) for e in entries]
        assert kinds[0] == ("system", "alert")
        assert ("primary", "triage") in kinds and ("primary", "handoff") in kinds
        alerts = [e for e in entries if e.kind == "alert"]
        assert {e.attrs["status"] for e in alerts} == {"firing", "resolved"}
        # the partner queried *this* Prometheus, with the expression that fired (threshold removed)
        metrics = [e for e in entries if e.author.kind == "partner" and e.attrs.get("capability") == "query_metrics"]
        assert len(metrics) >= 2, diagnose()  # the investigation and the recovery check
        ev = metrics[0].evidence[0]
        assert (ev.source, ev.query) == ("prometheus", EXPR)
        assert ev.data["peak"] > 0.05 and ev.data["samples"] > 0
        verification = next(e for e in entries if e.kind == "verification")
        assert verification.attrs["verified"] is True, verification.title
        assert "has recovered" in verification.title
        assert entries[-1].kind == "resolution" and entries[-1].author.kind == "primary"
