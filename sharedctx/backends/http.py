"""The HTTP seam shared by the connectors: one place that turns transport failures and status codes into
the classified `BackendError`s the delivery worker acts on, plus Retry-After parsing and write pacing.

Why one place: the worker decides what to do from the exception *type*, so every connector must classify
the same situation the same way (a 429 is `Retryable` everywhere, a timeout on a POST is `Ambiguous`
everywhere). Connectors only add the words that help an operator ("check GITHUB_TOKEN's scopes").

Garbage bodies (HTML from a proxy or captive portal, truncated JSON) are classified as:
- on a 2xx answer to a write: `Ambiguous` - the service (or something in front of it) may have applied it;
- on a 2xx answer to a read, or on a 5xx: `Retryable` - typically a transient proxy/maintenance page (a 5xx
  to a write is `Ambiguous`, whatever its body: the write may have been applied before the error);
- on a 4xx: `Rejected` with the status, because retrying the same request cannot help.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from ..errors import Ambiguous, AuthFailed, ConfigError, Paced, Rejected, Retryable, StoreError

if TYPE_CHECKING:
    from ..store.base import RateLimits

log = logging.getLogger(__name__)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_RETRY_AFTER_429 = 30.0
MAX_ERROR_TEXT = 300


class UnreadableResponse(Ambiguous):
    """The service answered with a body that is not the JSON it documents (HTML, truncated text)."""


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """`Retry-After` is either delta-seconds or an HTTP-date (RFC 9110 10.2.3); None when absent/unparsable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_text(resp: httpx.Response) -> str:
    """The service's own error message, from whichever JSON shape it uses, kept short for `outbox status`."""
    try:
        data = resp.json()
    except (ValueError, UnicodeDecodeError):
        return _snippet(resp.text)
    parts: list[str] = []
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):  # ServiceNow {"error": {"message","detail"}} / PagerDuty {"error": {...}}
            parts += [str(err.get("message") or ""), str(err.get("detail") or "")]
            parts += [str(e) for e in err.get("errors") or []]
        elif isinstance(err, str):
            if data.get("errcode"):  # Matrix {"errcode": "M_FORBIDDEN", "error": "..."}
                parts.append(str(data["errcode"]))
            parts.append(err)
        if data.get("message"):  # GitHub basic-error / validation-error
            parts.append(str(data["message"]))
        for e in data.get("errors") or []:
            parts.append(str(e.get("message") or e.get("code") or e) if isinstance(e, dict) else str(e))
        parts += [str(m) for m in data.get("errorMessages") or []]  # Jira
        if isinstance(data.get("errors"), dict):
            parts += [f"{k}: {v}" for k, v in data["errors"].items()]
    text = "; ".join(p for p in parts if p and p != "None")
    return _snippet(text or resp.text)


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_TEXT else text[: MAX_ERROR_TEXT - 1] + "…"


def send(client: httpx.Client, method: str, url: str, *, service: str, **kwargs: Any) -> httpx.Response:
    """Send one request; map transport failures. A failure after a write was sent is `Ambiguous`."""
    is_write = method.upper() in WRITE_METHODS
    try:
        return client.request(method, url, **kwargs)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        # Nothing reached the service: safe to simply try again later.
        raise Retryable(f"{service}: could not connect ({type(exc).__name__}: {exc})") from exc
    except (httpx.ReadTimeout, httpx.WriteTimeout, httpx.RemoteProtocolError, httpx.ReadError) as exc:
        msg = f"{service}: {method} {url} failed after sending ({type(exc).__name__})"
        if is_write:
            raise Ambiguous(msg + "; it may have been applied - reconcile before re-sending") from exc
        raise Retryable(msg) from exc
    except httpx.TransportError as exc:
        raise Retryable(f"{service}: transport error ({type(exc).__name__}: {exc})") from exc


def check(
    resp: httpx.Response,
    *,
    service: str,
    auth_hint: str,
    not_found: str | None = None,
    is_rate_limited: Callable[[httpx.Response], float | None] | None = None,
) -> httpx.Response:
    """Raise the classified error for a non-2xx answer; return the response otherwise.

    `is_rate_limited` lets a service say that a 403 is really a rate limit (GitHub) and for how long.
    `not_found` is the sentence to use for a 404 (e.g. "the bound issue #42 was deleted or moved").
    """
    status = resp.status_code
    if 200 <= status < 300:
        return resp
    what = f"{service}: {resp.request.method} {resp.request.url.path} -> {status}"
    if is_rate_limited is not None:
        wait = is_rate_limited(resp)
        if wait is not None:
            raise Retryable(f"{what} rate limited: {error_text(resp)}", retry_after=wait)
    if status == 429:
        wait = parse_retry_after(resp.headers.get("retry-after"))
        # `Retry-After: 0` means "now"; only a missing/unparsable header gets the conservative default.
        raise Retryable(f"{what} rate limited: {error_text(resp)}",
                        retry_after=DEFAULT_RETRY_AFTER_429 if wait is None else wait)
    if status in (401, 403):
        kind = "refused our credentials" if status == 401 else "denied permission"
        raise AuthFailed(f"{service} {kind} ({status}: {error_text(resp)}). {auth_hint}")
    if status >= 500 or status == 408:
        # A 5xx to a write may come after the service applied it (a 502/504 from a proxy that gave up waiting):
        # `Ambiguous`, so the worker looks for the entry's marker before sending it again.
        cls = Ambiguous if resp.request.method.upper() in WRITE_METHODS else Retryable
        raise cls(f"{what}: {error_text(resp)}", retry_after=parse_retry_after(resp.headers.get("retry-after")))
    if status == 404 and not_found:
        raise Rejected(f"{service}: {not_found} (404: {error_text(resp)})")
    raise Rejected(f"{what}, the service will not accept this request: {error_text(resp)}")


def json_of(resp: httpx.Response, *, service: str) -> Any:
    """The JSON body of a 2xx answer, or a classified error when it is not JSON (see module docstring)."""
    ctype = resp.headers.get("content-type", "")
    try:
        if "json" not in ctype:
            raise ValueError(f"content-type {ctype or 'missing'}")
        return resp.json()
    except (ValueError, UnicodeDecodeError) as exc:
        what = (
            f"{service}: {resp.request.method} {resp.request.url.path} answered {resp.status_code} with "
            f"{ctype or 'no content-type'} instead of JSON ({exc}; starts {_snippet(resp.text[:80])!r}) - "
            "a proxy, captive portal or maintenance page in front of the service?"
        )
        if resp.request.method.upper() in WRITE_METHODS:
            raise UnreadableResponse(what + " The write may have been applied.") from None
        raise Retryable(what) from None


def call(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    service: str,
    auth_hint: str,
    not_found: str | None = None,
    is_rate_limited: Callable[[httpx.Response], float | None] | None = None,
    **kwargs: Any,
) -> Any:
    """send + check + json_of: the one call most connector methods need. Returns None for 204."""
    resp = send(client, method, url, service=service, **kwargs)
    check(resp, service=service, auth_hint=auth_hint, not_found=not_found, is_rate_limited=is_rate_limited)
    if resp.status_code == 204 or not resp.content:
        return None
    return json_of(resp, service=service)


def dumps(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode("utf-8")


class Pacing(Protocol):
    """What a connector paces its requests through; it does not care where the budget is counted.

    `acquire()` returns when the request may go (after a short block at most) or raises
    `Paced(retry_after=...)` so the worker reschedules (uncounted) instead of parking a thread; `hold(seconds)`
    records a server-side "slow down" so everyone sharing the budget backs off together.
    """

    def acquire(self) -> None: ...
    def hold(self, seconds: float, reason: str | None = None) -> None: ...


class Pacer:
    """Thread-safe pacing in this process's memory (GitHub guidance: <= 80/min and <= 500/h).

    A sliding-window log per limit, not a token bucket: a bucket of 80 refilling at 80/min admits up to
    160 requests in some 60 s window, which is exactly what trips a secondary limit. `acquire()` blocks
    briefly when the next slot is close; when the wait would be long it raises `Paced(retry_after)`
    so the worker reschedules instead of parking a thread. `hold(seconds)` records a server-side "slow
    down" (secondary limit, exhausted primary budget) so every thread using this pacer backs off together.

    Counted per process: N processes send N times the limit. Where a store is shared, `make_pacer` gives
    a `SharedPacer` instead; this one stays for connectors built without a store (tests, embedders).
    """

    def __init__(
        self,
        limits: list[tuple[int, float]],
        *,
        max_block: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        scale: float = 1.0,
    ) -> None:
        self._limits = [(cap, period, deque[float]()) for cap, period in limits]
        self._lock = threading.Lock()
        self._clock, self._sleep, self._scale = clock, sleep, scale
        self._held_until = 0.0
        self.max_block = max_block

    def _wait(self, now: float) -> float:
        wait = self._held_until - now
        for cap, period, log in self._limits:
            while log and now - log[0] >= period:
                log.popleft()
            if len(log) >= cap:
                wait = max(wait, log[len(log) - cap] + period - now)
        return max(0.0, wait)

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = self._clock()
                wait = self._wait(now)
                if wait <= 0:
                    for _, _, log in self._limits:
                        log.append(now)
                    return
            _block_or_reschedule(wait, self.max_block, self._scale, self._sleep)

    def hold(self, seconds: float, reason: str | None = None) -> None:
        with self._lock:
            self._held_until = max(self._held_until, self._clock() + seconds)


class SharedPacer:
    """The same pacing as `Pacer`, counted in the store: every process on it shares one budget per `key`.

    Each `acquire()` is one short transaction (`RateLimits.take_slot`) that either takes a slot or says
    how long until one frees; the wait happens here, outside the transaction. `key` is called at use
    time, because it is derived from the credential, which is resolved at use time (see `budget_key`).
    A store that cannot be read fails closed: `Retryable`, nothing is sent unpaced.
    """

    def __init__(
        self,
        store: RateLimits,
        key: Callable[[], str],
        limits: Sequence[tuple[int, float]],
        *,
        max_block: float = 2.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        scale: float = 1.0,
    ) -> None:
        self.store, self.key = store, key
        self.limits = [(int(cap), float(period)) for cap, period in limits]
        self.max_block = max_block
        self._clock, self._sleep, self._scale = clock, sleep, scale

    def acquire(self) -> None:
        while True:
            try:
                wait = self.store.take_slot(self.key(), self.limits, self._clock)
            except StoreError as exc:
                raise Retryable(f"pacing: the shared rate budget could not be read ({exc})") from exc
            if wait <= 0:
                return
            _block_or_reschedule(wait, self.max_block, self._scale, self._sleep)

    def hold(self, seconds: float, reason: str | None = None) -> None:
        try:
            self.store.hold_budget(self.key(), self._clock() + seconds, reason)
        except StoreError as exc:  # the Retryable that follows still pauses this process's lane
            log.warning("could not share a rate-limit pause of %.0fs: %s", seconds, exc)


def _block_or_reschedule(wait: float, max_block: float, scale: float, sleep: Callable[[float], None]) -> None:
    """Sleep a short wait; turn a long one into `Paced` (in real seconds: the worker reschedules, uncounted)."""
    if wait / scale > max_block:
        raise Paced(f"pacing: next slot in {wait / scale:.1f}s", retry_after=wait / scale)
    sleep(wait)


RATE_SCALE_ENV = "SHAREDCTX_RATE_SCALE"


def rate_scale() -> float:
    """`SHAREDCTX_RATE_SCALE` (default 1): benches and tests run rate limits on a clock that many times
    faster, so an hour's budget plays out in minutes. Every period, hold and margin a pacer counts is
    then 1/scale of a real one; the bench's GitHub double scales its windows the same way."""
    raw = os.environ.get(RATE_SCALE_ENV, "").strip()
    try:
        scale = float(raw) if raw else 1.0
    except ValueError:
        scale = 0.0
    if not scale > 0:
        raise ConfigError(f"{RATE_SCALE_ENV}={raw!r}: expected a positive number (1 = real time)")
    return scale


def scaled_clock(scale: float) -> tuple[Callable[[], float], Callable[[float], None]]:
    """Epoch seconds running `scale` times faster, and the matching sleep (the same in every process)."""
    if scale == 1.0:
        return time.time, time.sleep
    return (lambda: time.time() * scale), (lambda seconds: time.sleep(seconds / scale))


def budget_key(service: str, what: str, *identity: str) -> str:
    """The name a shared budget is counted under: `github:content:<hash>`. The hash covers the target
    and the credential (`identity`), so two backends using one token share a budget and different tokens
    do not, while no secret is ever stored: only a SHA-256 prefix of it, which cannot be reversed."""
    digest = hashlib.sha256("\0".join(("sharedctx-rate-budget", *identity)).encode()).hexdigest()[:24]
    return f"{service}:{what}:{digest}"


def make_pacer(
    limits: Sequence[tuple[int, float]],
    *,
    store: RateLimits | None,
    key: Callable[[], str],
    max_block: float,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], None] | None = None,
) -> Pacing:
    """The pacer a connector uses: shared through `store` when it has one, else in this process.

    An injected `clock`/`sleep` (a bench's virtual time) is used as is; otherwise both follow
    `SHAREDCTX_RATE_SCALE`."""
    scale = 1.0 if clock is not None else rate_scale()
    default_clock, default_sleep = scaled_clock(scale)
    clock, sleep = clock or default_clock, sleep or default_sleep
    if store is not None:
        return SharedPacer(store, key, limits, max_block=max_block, clock=clock, sleep=sleep, scale=scale)
    return Pacer(list(limits), max_block=max_block, clock=clock, sleep=sleep, scale=scale)


def secret(ref: str, *, service: str) -> str:
    """Resolve an `env:NAME` secret at use time. A missing variable stops the backend (`AuthFailed`)
    with the variable's name, instead of a retry storm of requests without credentials."""
    from ..config import Secret
    from ..errors import ConfigError

    try:
        return Secret(ref).get()
    except ConfigError as exc:
        raise AuthFailed(f"{service}: no credentials - {exc.message}") from None


def new_client(timeout: float) -> httpx.Client:
    """The client a connector builds when none is injected (tests inject one with a MockTransport)."""
    return httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=False,
                        headers={"User-Agent": "sharedctx/0.1 (+https://github.com/sharedctx)"})
