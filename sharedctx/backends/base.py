"""The one small shape every backend has (local folder, GitHub, PagerDuty, ServiceNow, Jira).

Backends are synchronous and never sleep or retry: they do one thing and either return or raise a
classified `BackendError` (`Retryable`, `Ambiguous`, `AuthFailed`, `Rejected`). The delivery worker
owns retries, backoff, ordering and dead letters, so every backend behaves the same under failure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from ..model import Author, CaseRecord, Entry, ExternalRef


class ThreadRef(BaseModel):
    """The external thread a case is bound to: a GitHub issue, a PagerDuty incident, a file..."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="allow")
    backend: str
    id: str
    url: str | None = None

    def lives_in(self, part: str, valid: Callable[[str], object], configured: str) -> str:
        """Where this thread lives: the `part` (repo, channel, room) recorded when the case was bound, if
        `valid` accepts it, else `configured`. A backend's repo/channel/room may change in the config while
        older cases stay open, and a thread's number or ts names it only within its own place; a recorded value
        that `valid` refuses never becomes part of a URL."""
        value = (self.model_extra or {}).get(part)
        return value if isinstance(value, str) and valid(value) else configured


class HumanItem(BaseModel):
    """Something a person wrote or did in a thread (a comment, a note, a reaction, a status change)."""

    model_config = ConfigDict(defer_build=True, frozen=True)
    backend: str
    external_id: str
    author: Author
    at: str = Field(description="ISO-8601 time the service gives for the item")
    kind: str = "comment"  # comment | reaction | status
    text: str = ""
    url: str | None = None
    in_reply_to: str | None = Field(default=None, description="entry id the item answers, when known")
    raw: dict[str, Any] = Field(default_factory=dict)


class ReadBack(BaseModel):
    """What a thread holds: our entries rebuilt from their embedded copies, plus what humans wrote."""

    model_config = ConfigDict(defer_build=True)

    entries: list[Entry] = Field(default_factory=list)
    humans: list[HumanItem] = Field(default_factory=list)
    cursor: str | None = None


class Hit(BaseModel):
    """A search hit from a backend's own search."""

    model_config = ConfigDict(defer_build=True)

    backend: str
    case_id: str | None = None
    thread_id: str
    title: str = ""
    snippet: str = ""
    url: str | None = None


@runtime_checkable
class Backend(Protocol):
    """The shape of a backend. See `backends/local.py` for the smallest complete one."""

    type: ClassVar[str]
    name: str

    def bind(self, case: CaseRecord) -> ThreadRef:
        """Find or create the case's thread. Must be safe to call again after an ambiguous failure."""
        ...

    def append(self, thread: ThreadRef, entry: Entry) -> ExternalRef:
        """Write one entry (split into parts if needed). Raise `Ambiguous` if it may have landed."""
        ...

    def lookup(self, thread: ThreadRef, entry_id: str) -> ExternalRef | None:
        """Is this entry already in the thread? Called before re-sending after an ambiguous failure."""
        ...

    def read_back(self, thread: ThreadRef, since: str | None = None) -> ReadBack:
        """Everything in the thread after the cursor `since` (None: from the start)."""
        ...

    def search(self, text: str, limit: int = 20) -> list[Hit]:
        """The service's own search, where it has one; [] where it does not."""
        ...

    def resolve(self, thread: ThreadRef, summary: Entry) -> None:
        """Close/resolve the thread. Idempotent: resolving a resolved thread is not an error."""
        ...

    def close(self) -> None: ...


class Check(BaseModel):
    """One thing `sharedctx backends check` verified about a backend, said in plain words.

    Setup problems (a bad token, a missing scope, a PagerDuty `From` address that is not a user, a Jira
    transition that does not exist) must surface when someone wires the backend, not at 2 AM in the
    middle of an incident; each check names what it looked at and what to do if it failed.
    """

    model_config = ConfigDict(defer_build=True)

    what: str = Field(description="what was checked: credentials, scopes, target, transition, ...")
    ok: bool
    detail: str = Field(description="what was found, and on failure what to do about it")


@runtime_checkable
class Checkable(Protocol):
    """A backend that can verify its own setup against the live service (`sharedctx backends check`).

    `check()` never writes anything a person would see, and raises nothing: every failure, including
    an unreachable service, is a `Check(ok=False)` that says what went wrong.
    """

    def check(self) -> list[Check]: ...


@runtime_checkable
class Authorizes(Protocol):
    """A backend whose service knows who may decide (GitHub repository permission, Matrix power levels).

    `authorize(item)` says whether the person behind `item` may answer a decision request, and the rule
    that says so (recorded in the decision, e.g. `"github:permission>=write (admin)"`). None means the
    service has no opinion on this person and the `[humans.allow]` list decides alone.
    """

    def authorize(self, item: HumanItem) -> tuple[bool, str] | None: ...


@runtime_checkable
class ListsThreads(Protocol):
    """A backend that can list every case thread it holds (the local backend's folder).

    `sharedctx verify --against` uses it to find cases the backend holds and the journal no longer does:
    a case deleted from the journal together with its checkpoints leaves nothing locally to compare.
    """

    def threads(self) -> list[ThreadRef]: ...
