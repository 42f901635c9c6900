"""Shared pieces of `sharedctx backends check` for the HTTP connectors (GitHub, PagerDuty, ServiceNow, Jira).

A setup check reads, never writes, and never raises: each finding is a `Check` in plain words that says what
is wrong and which setting or permission fixes it. The connectors read status codes themselves here instead
of going through `http.check`, because a setup check wants to tell "the token is wrong" (401) from "the
token may not see this" (403) from "this does not exist" (404) in words specific to what it looked at.
Secrets never appear in a detail: only the *reference* (`env:GITHUB_TOKEN`) is named, and the service's
own error text is kept short (`http.error_text`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from ..errors import BackendError
from .base import Check
from .http import error_text

Get = Callable[..., httpx.Response]


class Stop(Exception):
    """A finding after which the remaining checks cannot run (no credentials, no target)."""

    def __init__(self, check: Check) -> None:
        super().__init__(check.detail)
        self.check = check


def fetch(get: Get, url: str, what: str, **kw: Any) -> httpx.Response:
    """GET through the connector's own header-building `get`; an unreachable service stops the checks."""
    try:
        return get(url, **kw)
    except BackendError as exc:  # e.g. the secret's environment variable is not set
        raise Stop(Check(what=what, ok=False, detail=str(exc))) from None
    except httpx.HTTPError as exc:
        raise Stop(Check(what=what, ok=False, detail=f"could not reach {url.split('?')[0]}: "
                         f"{type(exc).__name__}: {exc}. Check base_url/instance_url and the network")) from None


def json_body(resp: httpx.Response, what: str) -> Any:
    try:
        return resp.json()
    except ValueError:
        raise Stop(Check(what=what, ok=False, detail=(
            f"{resp.request.url.path} answered {resp.status_code} with "
            f"{resp.headers.get('content-type') or 'no content-type'} instead of JSON: is base_url the API, "
            "and no proxy or login page in front of it?"))) from None


def says(resp: httpx.Response) -> str:
    """`(<status>: <the service's own words>)`, short, for the end of a detail."""
    return f"({resp.status_code}: {error_text(resp)})"


def run(steps: Callable[[list[Check]], None]) -> list[Check]:
    """Run a connector's checks into one list; `Stop` ends them with its finding, anything else is reported."""
    out: list[Check] = []
    try:
        steps(out)
    except Stop as stop:
        out.append(stop.check)
    except Exception as exc:  # a check must never raise: say what broke instead
        out.append(Check(what="check", ok=False, detail=f"the check itself failed: {type(exc).__name__}: {exc}"))
    return out
