"""The Redmine harness for the shared backend suite: the real server, behind the fault proxy."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sharedctx.backends.redmine import RedmineBackend, RedmineOptions
from tests.backends.harness import Harness
from tests.redmine.proxy import FaultProxy
from tests.redmine.server import RedmineEnv

KEY_VAR = "SCTX_REDMINE_TEST_KEY"


def client(proxy: FaultProxy, read_timeout: float = 6.0) -> httpx.Client:
    """A short read timeout: the proxy's `timeout_after_apply` never answers, and the test waits for it."""
    return httpx.Client(timeout=httpx.Timeout(60.0, read=read_timeout), follow_redirects=False)


def options(env: RedmineEnv, proxy: FaultProxy, **kw: Any) -> RedmineOptions:
    return RedmineOptions(**{"url": proxy.url, "api_key": f"env:{KEY_VAR}", "project": env.project,
                             "external_id_field": env.external_id_field, **kw})


def redmine(monkeypatch: pytest.MonkeyPatch, env: RedmineEnv, proxy: FaultProxy, **defaults: Any) -> Harness:
    monkeypatch.setenv(KEY_VAR, env.api_key)
    http = client(proxy)

    def make(**kw: Any) -> RedmineBackend:
        return RedmineBackend("redmine", options(env, proxy, **{**defaults, **kw}), client=http)

    return Harness("redmine", proxy, make, lambda t, x: env.add_note(t, x), env.delete_issue,
                   lambda: ("redmine.issue", env.new_issue()))
