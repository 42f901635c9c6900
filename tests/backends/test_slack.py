"""The Slack connector against its spec-checked double: the shared suite, plus what is special to Slack."""

from __future__ import annotations

import pytest

from tests.backends import harness
from tests.backends.harness import Harness
from tests.backends.suite import *  # noqa: F403  (the shared behaviour suite)


@pytest.fixture
def svc(monkeypatch: pytest.MonkeyPatch) -> Harness:
    return harness.slack(monkeypatch)
