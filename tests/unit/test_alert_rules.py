"""The example alert rules in deploy/prometheus: valid, firing when they should, and about metrics we export.

With promtool installed (CI installs Debian's prometheus) the rules are checked and unit-tested by
Prometheus itself; without it the YAML is parsed. Either way every metric a rule names must be one that
`/metrics` really serves, so a renamed metric cannot leave a silent rule behind.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from sharedctx.context import SharedContext
from sharedctx.observability import metrics_registry, render_metrics

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")


def rules() -> list[dict]:
    doc = yaml.safe_load((RULES / "sharedctx-rules.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (the YAML is still checked below)")
@pytest.mark.parametrize("command", [["check", "rules", "sharedctx-rules.yml"],
                                     ["test", "rules", "sharedctx-rules.test.yml"]])
def test_promtool_accepts_the_rules_and_their_unit_tests_pass(command: list[str]) -> None:
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, *command], cwd=RULES, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_rule_is_complete() -> None:
    names = [r["alert"] for r in rules()]
    assert len(names) == len(set(names)) >= 3
    for r in rules():
        assert r["expr"].strip() and r["labels"]["severity"] in {"warning", "critical"}
        assert r["annotations"]["summary"] and r["annotations"]["description"]


def test_every_metric_a_rule_names_is_served_by_metrics(ctx: SharedContext) -> None:
    ctx.open_case("c").record("finding", "f", "")
    served = {f.name for f in text_string_to_metric_families(
        render_metrics(metrics_registry(ctx.store, ctx.backend_names)).decode())}  # fmt: skip
    for r in rules():
        named = set(re.findall(r"\b(sharedctx_[a-z_]+)", r["expr"]))
        assert named, r["alert"]
        assert named <= served, f"{r['alert']} names {named - served}, which /metrics does not serve"
