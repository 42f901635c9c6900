"""Fixtures for the agents: a journal in a temp dir, partner settings for real partner processes."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sharedctx.config import PartnerSettings
from sharedctx.context import SharedContext

ROOT = Path(__file__).resolve().parents[2]
ENV = {"PYTHONPATH": str(ROOT)}


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    """A journal of its own: the test and the partner processes it starts both write there."""
    path = tmp_path / "sharedctx.toml"
    path.write_text('store = ".sharedctx/sharedctx.db"\n[worker]\nenabled = false\n', encoding="utf-8")
    return path


@pytest.fixture
def ctx(config_path: Path) -> Iterator[SharedContext]:
    with SharedContext.open(config_path, worker=False) as c:
        yield c


def telemetry(config: Path, name: str = "telemetry", timeout: float = 20) -> PartnerSettings:
    """The real telemetry partner over stdio, recording into the journal of `config`."""
    cmd = [sys.executable, "-m", "sharedctx.agents.partner", "--transport", "stdio", "--name", name,
           "--config", str(config)]
    return PartnerSettings(name=name, transport="stdio", command=cmd, env=ENV, timeout=timeout)


def faulty(fault: str, capability: str = "query_metrics", timeout: float = 20) -> PartnerSettings:
    cmd = [sys.executable, "-m", "tests.agents.faulty_partner", "--fault", fault, "--capability", capability]
    return PartnerSettings(name=f"faulty-{fault}", transport="stdio", command=cmd, env=ENV, timeout=timeout)
