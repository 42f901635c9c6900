"""What every service double shares: spec checking, fault injection, auth, and a request log.

A double is an `httpx.MockTransport` handler (`double.handle`). Every request it receives and every
response it produces (except injected faults, which are off-spec by design) is validated against the
service's OpenAPI description in `shared/specs/` with openapi-core. Violations are recorded in
`SPEC_LOG`; the test suite asserts that it stays free of them (tests/backends/test_spec_check.py).

Faults are injected on demand with `inject()` or at random rates with `chaos()`:
`latency` (seconds), `timeout_after_apply` (store, then raise ReadTimeout), `reset_after_apply`
(store, then raise RemoteProtocolError), `reset` (ConnectError before anything happens), `5xx`, `5xx_after_apply`
(store, then answer 504),
`429` (with Retry-After), `html` (a proxy's HTML page with 200 or a given status), `401`.
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import httpx

SPECS = Path(os.environ.get("SHAREDCTX_SPECS") or Path(__file__).resolve().parents[2] / ".." / "shared" / "specs")


def specs_available() -> bool:
    return (SPECS / "github.json").exists()


EXTRA_SPECS = Path(__file__).resolve().parent / "specs"


@cache
def load_spec(name: str) -> Any:
    """Load one OpenAPI description once per test session (they are big).

    Operations the setup checks read that the shared description does not cover are cut from the same official
    document (`specs/<name>.extra.json`, see specs/README.md) and merged in: paths and components are added,
    never replaced, so a double cannot loosen what the shared description already says."""
    from openapi_core import OpenAPI

    doc = json.loads((SPECS / f"{name}.json").read_text(encoding="utf-8"))
    extra_file = EXTRA_SPECS / f"{name}.extra.json"
    if extra_file.exists():
        extra = json.loads(extra_file.read_text(encoding="utf-8"))
        for path, item in extra["paths"].items():
            for method, op in item.items():
                doc["paths"].setdefault(path, {}).setdefault(method, op)
        for kind, objs in extra["components"].items():
            for key, obj in objs.items():
                doc.setdefault("components", {}).setdefault(kind, {}).setdefault(key, obj)
    return OpenAPI.from_dict(doc)


@dataclass
class Checked:
    service: str
    method: str
    path: str
    what: str  # "request" | "response"
    error: str | None


SPEC_LOG: list[Checked] = []
_LOG_LOCK = threading.Lock()


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Fault:
    kind: str
    times: int = 1
    method: str | None = None
    path: str | None = None  # regex searched in the URL path
    status: int | None = None
    retry_after: float | None = None
    seconds: float = 0.0

    def matches(self, request: httpx.Request) -> bool:
        return (self.method is None or request.method == self.method) and (
            self.path is None or re.search(self.path, request.url.path) is not None
        )


@dataclass
class Chaos:
    rng: random.Random
    timeout_after_apply: float = 0.0
    server_error: float = 0.0
    server_error_after_apply: float = 0.0  # share of 5xx answers sent after the write was applied (504-like)
    burst_429: float = 0.0
    burst_len: int = 3
    retry_after: float | tuple[float, ...] = 0.01  # a tuple: each 429 picks one of these values
    writes_only: bool = True
    counts: dict[str, int] = field(default_factory=dict)  # faults injected so far, by kind
    _burst_left: int = field(default=0, repr=False)

    def fault(self, kind: str) -> Fault:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if kind != "429":
            return Fault(kind)
        ra = self.retry_after
        return Fault(kind, retry_after=self.rng.choice(ra) if isinstance(ra, tuple) else ra)


class ServiceDouble:
    """Base for the four doubles. Subclasses implement `route(request) -> httpx.Response`."""

    service = "service"
    spec_name = "service"
    host_url = "https://example.invalid"

    def __init__(self, *, validate: bool = True) -> None:
        self.validate = validate and specs_available()
        self.lock = threading.RLock()
        self.faults: list[Fault] = []
        self.chaos_cfg: Chaos | None = None
        self.latency = 0.0
        self.requests: list[httpx.Request] = []
        self.auth_ok = True  # flip to False to answer every request with 401
        self.stalled = False  # answer nothing: raise ReadTimeout after `latency`
        self.unstall = threading.Event()  # set() ends every pending `latency` wait at once (test teardown)
        self._seq = 1000

    # ---- helpers for subclasses ----------------------------------------------------------------
    def next_id(self) -> int:
        with self.lock:
            self._seq += 1
            return self._seq

    @staticmethod
    def json_response(status: int, data: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.Response(status, content=json.dumps(data).encode(), headers={
            "content-type": "application/json; charset=utf-8", **(headers or {})})

    def error(self, status: int, message: str) -> httpx.Response:  # overridden per service shape
        return self.json_response(status, {"message": message})

    def authorized(self, request: httpx.Request) -> bool:
        raise NotImplementedError

    def route(self, request: httpx.Request) -> httpx.Response:
        raise NotImplementedError

    # ---- faults ------------------------------------------------------------------------------------
    def inject(self, kind: str, **kw: Any) -> Fault:
        fault = Fault(kind, **kw)
        with self.lock:
            self.faults.append(fault)
        return fault

    def chaos(self, **kw: Any) -> None:
        self.chaos_cfg = Chaos(**kw)

    def _take_fault(self, request: httpx.Request) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.times > 0 and f.matches(request):
                    f.times -= 1
                    return f
            c = self.chaos_cfg
            if c is None or (c.writes_only and request.method == "GET"):
                return None
            if c._burst_left > 0:
                c._burst_left -= 1
                return c.fault("429")
            r = c.rng.random()
            if r < c.timeout_after_apply:
                return c.fault("timeout_after_apply")
            if r < c.timeout_after_apply + c.server_error:
                after = c.server_error_after_apply and c.rng.random() < c.server_error_after_apply
                return c.fault("5xx_after_apply" if after else "5xx")
            if r < c.timeout_after_apply + c.server_error + c.burst_429:
                c._burst_left = c.burst_len - 1
                return c.fault("429")
        return None

    # ---- the transport handler ------------------------------------------------------------------
    def handle(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(request)
        if self.latency:
            self.unstall.wait(self.latency)
        if self.stalled:
            raise httpx.ReadTimeout("stalled double", request=request)
        fault = self._take_fault(request)
        if fault is not None:
            early = self._early_fault(fault, request)
            if early is not None:
                return early
        self.check_request(request)
        if not self.auth_ok or not self.authorized(request):
            resp = self.error(401, "Bad credentials")
        else:
            resp = self.route(request)
        self.check_response(request, resp)
        if fault is not None and fault.kind == "timeout_after_apply":
            raise httpx.ReadTimeout("timed out after the write was applied", request=request)
        if fault is not None and fault.kind == "5xx_after_apply":
            return self.error(504, "Gateway Timeout")
        if fault is not None and fault.kind == "reset_after_apply":
            raise httpx.RemoteProtocolError("connection reset after the write was applied", request=request)
        return resp

    def _early_fault(self, fault: Fault, request: httpx.Request) -> httpx.Response | None:
        if fault.kind == "latency":
            time.sleep(fault.seconds)
            return None
        if fault.kind == "reset":
            raise httpx.ConnectError("connection refused", request=request)
        if fault.kind in ("5xx", "status"):
            return self.error(fault.status or 502, "Server Error")
        if fault.kind == "429":
            headers = {} if fault.retry_after is None else {"retry-after": f"{fault.retry_after:g}"}
            resp = self.error(429, "Too Many Requests")
            resp.headers.update(headers)
            return resp
        if fault.kind == "html":
            return httpx.Response(fault.status or 200, content=b"<html><body><h1>Gateway</h1></body></html>",
                                  headers={"content-type": "text/html"})
        if fault.kind == "401":
            return self.error(401, "Bad credentials")
        return None  # applied-then-fail kinds happen after route()

    # ---- spec checking -----------------------------------------------------------------------------
    def _mock_request(self, request: httpx.Request) -> Any:
        from openapi_core.testing import MockRequest

        args: dict[str, Any] = {}
        for k, v in request.url.params.multi_items():
            args.setdefault(k, v)
        body = request.content or None
        return MockRequest(self.host_url, request.method.lower(), request.url.path, args=args,
                           headers=dict(request.headers), data=body,
                           content_type=request.headers.get("content-type", "application/json").split(";")[0])

    def _log(self, request: httpx.Request, what: str, error: str | None) -> None:
        with _LOG_LOCK:
            SPEC_LOG.append(Checked(self.service, request.method, request.url.path, what, error))

    # Regexes of schema errors that are defects of the published description itself (each one also
    # fails the description's own example); they are logged as notes, not violations. Keep this short.
    known_defects: tuple[str, ...] = ()

    def _failed(self, request: httpx.Request, what: str, exc: Exception) -> None:
        subs = _suberrors(exc)
        real = [e for e in subs if not any(re.search(d, e) for d in self.known_defects)]
        if subs and not real:
            self._log(request, what, None)
            return
        self._log(request, what, f"{type(exc).__name__}: {' | '.join(real) or _detail(exc)}")

    def check_request(self, request: httpx.Request) -> None:
        if not self.validate:
            return
        try:
            load_spec(self.spec_name).validate_request(self._mock_request(request))
            self._log(request, "request", None)
        except Exception as exc:  # openapi-core raises a family of errors; record them all
            self._failed(request, "request", exc)

    def check_response(self, request: httpx.Request, resp: httpx.Response) -> None:
        if not self.validate:
            return
        from openapi_core.testing import MockResponse

        mresp = MockResponse(resp.content, status_code=resp.status_code, headers=dict(resp.headers),
                             content_type=resp.headers.get("content-type", "application/json").split(";")[0])
        try:
            load_spec(self.spec_name).validate_response(self._mock_request(request), mresp)
            self._log(request, "response", None)
        except Exception as exc:
            if type(exc).__name__ == "ResponseNotFound" and resp.status_code >= 400:
                # An error status the description does not list for this operation (e.g. GitHub's 401 on
                # create-comment): real services send these; the body shape is still the service's own.
                self._log(request, "response", None)
                return
            self._failed(request, "response", exc)


def _suberrors(exc: BaseException) -> list[str]:
    out: list[str] = []
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        for sub in getattr(cur, "schema_errors", None) or []:
            where = "/".join(str(p) for p in getattr(sub, "absolute_path", []))
            out.append(f"{where}: {str(getattr(sub, 'message', sub))[:200]}")
        cur = cur.__cause__ or cur.__context__
    return out


def _detail(exc: BaseException) -> str:
    parts: list[str] = []
    for sub in getattr(exc, "schema_errors", None) or []:
        where = "/".join(str(p) for p in getattr(sub, "absolute_path", []))
        parts.append(f"{where}: {str(getattr(sub, 'message', sub))[:200]}")
    if not parts:
        parts.append(str(exc)[:300])
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc:
        parts.append(_detail(cause))
    return " | ".join(parts)[:1500]


def violations(service: str | None = None) -> list[Checked]:
    with _LOG_LOCK:
        return [c for c in SPEC_LOG if c.error and (service is None or c.service == service)]


Handler = Callable[[httpx.Request], httpx.Response]
