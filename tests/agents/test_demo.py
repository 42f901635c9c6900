"""`sharedctx demo` from a fresh directory: the seven steps, both agents' entries, over stdio and HTTP."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sharedctx.config import Config, WorkerSettings
from sharedctx.context import SharedContext

ROOT = Path(__file__).resolve().parents[2]


def sharedctx(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "160"}
    env.pop("SHAREDCTX_CONFIG", None)
    for key in ("MATRIX_URL", "MATRIX_BOT_TOKEN", "MATRIX_ROOM_ID"):  # .ci/run exports them; this demo is offline
        env.pop(key, None)
    return subprocess.run([sys.executable, "-m", "sharedctx.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def check_demo_case(tmp_path: Path, stdout: str) -> str:
    m = re.search(r"The human-readable record: (\.sharedctx/cases/(\w+)\.md)", stdout)
    assert m, stdout
    md, case_id = tmp_path / m.group(1), m.group(2)
    with SharedContext.open(Config(base_dir=tmp_path, worker=WorkerSettings(enabled=False)), worker=False) as ctx:
        case = ctx.case(case_id)
        assert case.status == "resolved"
        assert case.verify().ok
        entries = case.timeline()
    by = {(e.author.kind, e.kind.value) for e in entries}
    # (1) alert (2) triage (3)+(4) partner findings (5) correlated + remediation (6) handoff (7) verify + close
    for step in [("system", "alert"), ("primary", "triage"), ("partner", "finding"), ("primary", "finding"),
                 ("primary", "remediation"), ("primary", "handoff"), ("primary", "verification"),
                 ("primary", "resolution")]:  # fmt: skip
        assert step in by, f"missing {step} in {sorted(by)}"
    partner = [e for e in entries if e.author.kind == "partner"]
    assert {e.attrs["capability"] for e in partner} == {"query_metrics", "search_logs", "analyze_spans"}
    assert all(e.author.name == "telemetry" for e in partner)
    # the call and the entries both sides wrote share one trace
    primary_traces = {e.trace_id for e in entries if e.author.kind == "primary"}
    assert len(primary_traces) == 1 and primary_traces == {e.trace_id for e in partner}
    correlated = next(e for e in entries if e.title.startswith("Correlated:"))
    assert "bad deploy of payments 2.14.0" in correlated.title
    text = md.read_text(encoding="utf-8")
    assert "partner **telemetry**" in text and "status **resolved**" in text
    return case_id


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_the_demo_runs_the_seven_steps_in_a_fresh_directory(tmp_path: Path, transport: str) -> None:
    run = sharedctx(tmp_path, "demo", "--transport", transport)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"transport {transport}" in run.stdout
    case_id = check_demo_case(tmp_path, run.stdout)
    listed = sharedctx(tmp_path, "case", "list")
    assert case_id in listed.stdout


def test_running_the_demo_twice_opens_a_second_case_after_the_first_resolved(tmp_path: Path) -> None:
    first = sharedctx(tmp_path, "demo")
    second = sharedctx(tmp_path, "demo")
    assert first.returncode == 0 and second.returncode == 0, second.stdout + second.stderr
    first_id, second_id = check_demo_case(tmp_path, first.stdout), check_demo_case(tmp_path, second.stdout)
    assert first_id != second_id
    # the second investigation starts from the first: triage consults similar earlier cases
    with SharedContext.open(Config(base_dir=tmp_path, worker=WorkerSettings(enabled=False)), worker=False) as ctx:
        [triage] = ctx.case(second_id).timeline(kinds=["triage"])
    assert triage.title.endswith("1 similar earlier case(s)")
    assert first_id in triage.body


def test_an_interrupted_demo_case_is_picked_up_by_the_next_run(tmp_path: Path) -> None:
    """An open case with the demo's fingerprint (e.g. Ctrl-C mid-run) is finished, not duplicated."""
    with SharedContext.open(Config(base_dir=tmp_path, worker=WorkerSettings(enabled=False)), worker=False) as ctx:
        left = ctx.open_case("Checkout 5xx ratio above 5% (checkout)", fingerprint="alertmanager:5ac0ffee00c0ffee")
        left.record("alert", "Alert firing: Checkout 5xx ratio above 5%", author="system:alertmanager")
    run = sharedctx(tmp_path, "demo")
    assert run.returncode == 0, run.stdout + run.stderr
    assert check_demo_case(tmp_path, run.stdout) == left.id


def test_an_unknown_transport_is_a_usage_error(tmp_path: Path) -> None:
    run = sharedctx(tmp_path, "demo", "--transport", "pigeon")
    assert run.returncode == 2
    assert "use stdio, http or a2a" in run.stderr
