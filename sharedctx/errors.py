"""One exception tree for the whole library.

    SharedCtxError
    ├── ConfigError              bad or missing configuration (names the key)
    ├── CaseNotFound             no case with that id / fingerprint / reference
    ├── EntryNotFound
    ├── InvalidEntry             an entry the journal refuses (kind, size, encoding)
    ├── StoreError               the local store failed (disk, schema, connection)
    ├── ChainBroken              `verify` found an edited, missing or reordered entry
    ├── PermissionDenied         an identity acting outside its scope or policy
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


class EntryNotFound(SharedCtxError):
    """No such entry."""


class InvalidEntry(SharedCtxError):
    """The entry was refused; nothing was recorded."""


class StoreError(SharedCtxError):
    """The local store failed."""


class ChainBroken(SharedCtxError):
    """The hash chain does not verify: an entry was edited, removed or reordered."""


class PermissionDenied(SharedCtxError):
    """This identity may not do that."""


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


class Ambiguous(Retryable):
    """The request may or may not have been applied (timeout or reset after sending).

    The worker must look for the entry's marker in the thread before sending again.
    """


class AuthFailed(BackendError):
    """The backend refused our credentials (401/403); it is stopped until an operator fixes them."""


class Rejected(BackendError):
    """The backend will never accept this request as it is (4xx); it goes to dead letters."""


class MessageTooLong(Rejected):
    """The service refused a message as too long (Slack `msg_too_long`); the connector renders smaller parts."""
