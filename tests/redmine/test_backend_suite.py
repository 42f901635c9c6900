"""The shared backend suite against a REAL Redmine, through the fault-injecting proxy."""

from __future__ import annotations

import pytest

from tests.backends.harness import Harness
from tests.backends.suite import *  # noqa: F403  (the shared behaviour suite)
from tests.redmine import harness
from tests.redmine.proxy import FaultProxy
from tests.redmine.server import RedmineEnv


@pytest.fixture
def svc(monkeypatch: pytest.MonkeyPatch, redmine_env: RedmineEnv, proxy: FaultProxy) -> Harness:
    return harness.redmine(monkeypatch, redmine_env, proxy)
