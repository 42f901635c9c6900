"""One exception tree for the whole library.

    SharedCtxError
    ├── ConfigError              bad or missing configuration (names the key)
    ├── CaseNotFound             no case with that id / fingerprint / reference
    │   └── AmbiguousCase        ...or several, and nothing says which one was meant
    ├── EntryNotFound
    ├── InvalidEntry             an entry the journal refuses (kind, size, encoding)
    │   └── PayloadTooLarge      an MCP tool call over the size limit (413)
    ├── StoreError               the local store failed (disk, schema, connection)
    ├── ChainBroken              `verify` found an edited, missing or reordered entry
    ├── IntakeError              an alert request refused at the HTTP intake (carries its 4xx status)

    ├── LeaseLost                a worker's claim on a delivery was taken over (fencing)
    ├── Unauthenticated          no valid credentials (HTTP 401)
    ├── PermissionDenied         an identity acting outside its scope or policy (403)
    │   └── RateLimited          ...beyond its hourly write budget (429)
    ├── PartnerError             the direct channel to a partner agent failed
    │   ├── PartnerTimeout
    │   ├── PartnerUnavailable
    │   ├── PartnerBadOutput
    │   └── UnknownCapability
    └── BackendError             a delivery to an external system failed; the worker
        ├── Retryable            decides what to do from the *type* (never from a bool):
        ├── Ambiguous            retry later / reconcile (look for the marker) first /
        ├── AuthFailed           stop this backend and tell the operator /
        └── Rejected             dead-letter with the reason, retrying cannot help.

Each class's docstring is its default message, so `raise CaseNotFound()` still
says something useful; pass a message to say something specific.
"""

from __future__ import annotations

from typing import Any


class SharedCtxError(Exception):
    """Something went wrong in sharedctx."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or self.__class__.__name__).strip().splitlines()[0])

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigError(SharedCtxError):
    """The configuration is invalid."""


class CaseNotFound(SharedCtxError):
    """No such case. List cases with `sharedctx case list`."""


class AmbiguousCase(CaseNotFound):
    """That reference names several cases; use the case id."""


class EntryNotFound(SharedCtxError):
    """No such entry."""


class InvalidEntry(SharedCtxError):
    """The entry was refused; nothing was recorded."""


class PayloadTooLarge(InvalidEntry):
    """The tool call is larger than the server accepts."""


class StoreError(SharedCtxError):
    """The local store failed."""


class ChainBroken(SharedCtxError):
    """The hash chain does not verify: an entry was edited, removed or reordered."""


class IntakeError(SharedCtxError):
    """The alert request was refused; nothing was recorded.

    `status` is the HTTP answer (400 unreadable, 401 unauthenticated, 413 too large, 415 not JSON,
    422 invalid); `detail` lists each problem as `where: what is wrong` (`validation_problems`).
    """

    def __init__(self, message: str, *, status: int = 422, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.errors = errors or []

    def to_json(self) -> dict[str, Any]:
        """The 4xx body: `{"error": message, "type": ..., "detail": ["where: what is wrong", ...]}`."""
        return {"error": self.message, "type": self.kind, "detail": self.errors}

    @property
    def kind(self) -> str:
        """A stable name for the status, for clients that branch on it."""
        return {400: "invalid_json", 401: "unauthorized", 413: "too_large", 415: "unsupported_media_type",
                422: "invalid_alert"}.get(self.status, "invalid_request")  # fmt: skip

class LeaseLost(SharedCtxError):
    """This worker's lease on the delivery was taken over by another claim; its result is dropped.

    Raised (and handled) inside the delivery worker: a worker that lost its lease must neither send
    nor change the row's state, because the new holder owns both now.
    """


class PermissionDenied(SharedCtxError):
    """This identity may not do that."""


class Unauthenticated(SharedCtxError):
    """No valid credentials: send `Authorization: Bearer <token>` with the token configured for your agent."""


class RateLimited(PermissionDenied):
    """This identity has written as many entries this hour as its write policy allows."""


class PartnerError(SharedCtxError):
    """The call to the partner agent failed."""


class PartnerTimeout(PartnerError):
    """The partner agent did not answer in time."""


class PartnerUnavailable(PartnerError):
    """The partner agent could not be reached or died mid-call."""


class PartnerBadOutput(PartnerError):
    """The partner agent answered with output that does not match its schema."""


class UnknownCapability(PartnerError):
    """The partner agent has no capability by that name."""

    def __init__(self, name: str, known: list[str], *, partner: str | None = None) -> None:
        offers = ", ".join(known) or "(none)"
        if partner is None:
            super().__init__(f"no capability {name!r}; this partner offers: {offers}")
        else:
            super().__init__(f"partner {partner!r} has no capability {name!r} (it offers: {offers})")
        self.name = name
        self.known = known
        self.partner = partner


class BackendError(SharedCtxError):
    """A delivery to an external backend failed."""


class Retryable(BackendError):
    """The backend failed in a way that a later attempt may fix (5xx, 429, refused connection)."""

    def __init__(self, message: str | None = None, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Paced(Retryable):
    """Our own pacer says the next slot is later: nothing was sent, so it is not an attempt.

    The worker gives the delivery back uncounted; otherwise a saturated budget would walk deliveries
    through `max_attempts` into dead letters without a single failed request.
    """


class Ambiguous(Retryable):
    """The request may or may not have been applied (timeout or reset after sending).

    The worker must look for the entry's marker in the thread before sending again.
    """


class AuthFailed(BackendError):
    """The backend refused our credentials (401/403); it is stopped until an operator fixes them."""


class Rejected(BackendError):
    """The backend will never accept this request as it is (4xx); it goes to dead letters."""


def _where(prefix: str, loc: tuple[int | str, ...] | list[int | str]) -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def validation_problems(exc: Any, *, prefix: str = "", unknown: str = "unknown key") -> list[str]:
    """`where: what is wrong` for each problem of a pydantic `ValidationError`.

    The one formatter for validation errors (config, entries, cases, intake, MCP). It never echoes the
    input value: the value may be the very secret the caller should not have sent, and these messages end
    up in HTTP answers, MCP results and logs.
    """
    lines: list[str] = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = tuple(err.get("loc", ()))
        if err.get("type") == "extra_forbidden":
            msg = unknown
        else:
            msg = str(err.get("msg", "")).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        field = str(loc[-1]) if loc else ""
        if field and msg.startswith(field) and msg[len(field) : len(field) + 1] in ("[", ".", " ", ":"):
            parent = _where(prefix, loc[:-1])  # the message names its own field: `evidence[3].data is …`
            lines.append(f"{parent}.{msg}" if parent else msg)
            continue
        where = _where(prefix, loc)
        lines.append(f"{where}: {msg}" if where else msg)
    return lines


def format_validation_error(exc: Any, heading: str, *, prefix: str = "", unknown: str = "unknown key",
                            limit: int | None = None, joiner: str = "\n  ") -> str:
    """`heading` and then every problem (or the first `limit`), each naming its key; see `validation_problems`."""
    lines = validation_problems(exc, prefix=prefix, unknown=unknown)
    more = len(lines) - limit if limit is not None and len(lines) > limit else 0
    lines = lines[:limit] if limit is not None else lines
    if more:
        lines.append(f"… and {more} more")
    return heading + joiner + joiner.join(lines) if heading else joiner.join(lines).strip()


class MessageTooLong(Rejected):
    """The service refused a message as too long (Slack `msg_too_long`); the connector renders smaller parts."""
