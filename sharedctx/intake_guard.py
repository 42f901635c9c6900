"""What every alert request must pass before a byte of it is parsed: who sent it, what it is, how big.

The intake opens cases and starts agents, so it is the one door an outsider would push. The checks
run in a fixed order, each answering with its own 4xx and recording nothing:

1. **401** — the caller is not authenticated (`[server] intake_token` bearer token and/or
   `intake_basic_user`/`intake_basic_password`). Compared in constant time; nothing else is said to
   an unauthenticated caller. An open intake (loopback only) answers **403** to a request whose Host
   header is not a loopback name: DNS rebinding would otherwise make a web page same-origin with it.
2. **415** — the body is not declared JSON (`application/json` or `application/*+json`, UTF-8).
   A browser can post `text/plain`, `application/x-www-form-urlencoded` or `multipart/form-data`
   cross-origin without a CORS preflight; it cannot send `application/json` that way. Refusing
   everything else means no web page open on an engineer's machine can post alerts to a local
   `sharedctx serve`.
3. **413** — the body is over `[server] max_alert_bytes`, found while streaming it (a declared
   `Content-Length` is refused before reading anything; an undeclared one when the limit is crossed).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from dataclasses import dataclass

from starlette.requests import Request

from .config import Secret, ServerSettings
from .errors import ConfigError, IntakeError

__all__ = ["NO_AUTH", "IntakeAuth", "is_loopback", "read_limited", "require_json"]

REALM = "sharedctx-intake"


def _resolve(secret: Secret, key: str) -> bytes:
    value = secret.get()
    if not value:
        raise ConfigError(f"[server] {key}: {secret.ref} is set but empty; an empty credential would let anyone in")
    return value.encode("utf-8")


@dataclass(frozen=True)
class IntakeAuth:
    """The credentials an alert sender must present; neither set means the intake is open."""

    token: bytes | None = None
    basic_user: bytes | None = None
    basic_password: bytes | None = None
    # set by `serve` for an open intake (which only ever listens on loopback): the request's Host must be
    # a loopback name too. A web page that DNS-rebinds its own name to 127.0.0.1 is same-origin to the
    # browser and may post `application/json`; its requests still say `Host: evil.example`.
    loopback_host_only: bool = False

    @classmethod
    def from_settings(cls, server: ServerSettings) -> IntakeAuth:
        """Resolve the `env:` references now, so a missing variable stops `serve` at start, not mid-incident."""
        token = _resolve(server.intake_token, "intake_token") if server.intake_token else None
        user = password = None
        if server.intake_basic_user is not None and server.intake_basic_password is not None:
            user = server.intake_basic_user.encode("utf-8")
            password = _resolve(server.intake_basic_password, "intake_basic_password")
        return cls(token, user, password)

    @property
    def enabled(self) -> bool:
        return self.token is not None or self.basic_user is not None

    @property
    def schemes(self) -> list[str]:
        return (["Bearer"] if self.token is not None else []) + (["Basic"] if self.basic_user is not None else [])

    @property
    def challenge(self) -> str:
        """The `WWW-Authenticate` value: one challenge per configured scheme."""
        return ", ".join(f'{s} realm="{REALM}"' + (', charset="UTF-8"' if s == "Basic" else "") for s in self.schemes)

    def check(self, authorization: str | None, host: str | None = None) -> None:
        """Raise a 401 `IntakeError` unless `authorization` carries a configured credential (a 403 when an
        open intake is asked under a name that is not loopback: `host` is the request's Host header)."""
        if not self.enabled:
            if self.loopback_host_only and not is_loopback(_host_name(host or "")):
                raise IntakeError("this intake has no authentication and answers only requests addressed to "
                                  "localhost, 127.0.0.1 or [::1] (a page that rebinds its name to this machine "
                                  "must not open cases); configure [server] intake_token to accept others",
                                  status=403)  # fmt: skip
            return
        if not authorization:
            raise IntakeError("authentication required: send `Authorization: Bearer <token>` (or basic auth) as "
                              "configured in [server] of this sharedctx server", status=401)  # fmt: skip
        scheme, _, credentials = authorization.strip().partition(" ")
        scheme, credentials = scheme.lower(), credentials.strip()
        if scheme == "bearer" and self.token is not None:
            # ASGI servers decode header bytes as latin-1: encoding back gives exactly the bytes sent
            if hmac.compare_digest(credentials.encode("latin-1", "replace"), self.token):
                return
        elif scheme == "basic" and self.basic_user is not None and self.basic_password is not None:
            try:
                user, sep, password = base64.b64decode(credentials, validate=True).partition(b":")
            except (binascii.Error, ValueError):
                raise IntakeError("the basic-auth credentials are not valid base64", status=401) from None
            # both compared, always: how long this takes says nothing about which half was wrong
            user_ok = hmac.compare_digest(user, self.basic_user)
            password_ok = hmac.compare_digest(password, self.basic_password)
            if sep and user_ok & password_ok:
                return
        else:
            # the scheme is not echoed: a client that sends a bare token would see it in the answer (and logs)
            raise IntakeError(f"this authorization scheme is not accepted here; use {' or '.join(self.schemes)}",
                              status=401)  # fmt: skip
        raise IntakeError("the credentials are not valid for this sharedctx server", status=401)


NO_AUTH = IntakeAuth()


def _host_name(host: str) -> str:
    """The name in a Host header, without its port: `[::1]:80` → `::1`, `localhost:80` → `localhost`."""
    host = host.strip()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def is_loopback(host: str) -> bool:
    """Only this machine can reach `host`: `localhost`, 127.0.0.0/8, ::1. Anything else (0.0.0.0, a name) is not."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def require_json(content_type: str | None) -> None:
    """Raise a 415 `IntakeError` unless the declared type is JSON in UTF-8."""
    media, *params = (content_type or "").split(";")
    media = media.strip().lower()
    if not (media == "application/json" or (media.startswith("application/") and media.endswith("+json"))):
        shown = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
        raise IntakeError(f"the request has {shown}; alerts are accepted as application/json only "
                          "(Alertmanager sends it; with curl use -H 'Content-Type: application/json')",
                          status=415)  # fmt: skip
    for param in params:
        name, _, value = param.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
            raise IntakeError(f"charset {charset!r} is not accepted: JSON alerts are UTF-8", status=415)


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, refusing (413) as soon as it is over the limit rather than after buffering it all."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise IntakeError(f"the payload is {int(declared):,} bytes; the limit is {limit:,} bytes", status=413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise IntakeError(f"the payload is over the limit of {limit:,} bytes", status=413)
        chunks.append(chunk)
    return b"".join(chunks)
