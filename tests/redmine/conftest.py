"""Fixtures for the tests that run against a real Redmine (see tests/redmine/server.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.redmine.proxy import FaultProxy
from tests.redmine.server import RedmineEnv, Unavailable, redmine, stop


@pytest.fixture(scope="session")
def redmine_env() -> Iterator[RedmineEnv]:
    try:
        env = redmine()
    except Unavailable as exc:
        if os.environ.get("SHAREDCTX_SKIP_REAL_SERVERS") == "1":
            pytest.skip(f"real Redmine unavailable and SHAREDCTX_SKIP_REAL_SERVERS=1: {exc}")
        pytest.fail(f"a real Redmine is required for these tests: {exc}\n(set SHAREDCTX_SKIP_REAL_SERVERS=1 to skip "
                    "them locally; CI starts one in .ci/run)")
    yield env
    stop(env)


@pytest.fixture
def proxy(redmine_env: RedmineEnv) -> Iterator[FaultProxy]:
    p = FaultProxy(redmine_env.url).start()
    yield p
    p.stop()
