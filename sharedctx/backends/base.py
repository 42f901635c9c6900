"""The one small shape every backend has (local folder, GitHub, PagerDuty, ServiceNow, Jira).

Backends are synchronous and never sleep or retry: they do one thing and either return or raise a
classified `BackendError` (`Retryable`, `Ambiguous`, `AuthFailed`, `Rejected`). The delivery worker
owns retries, backoff, ordering and dead letters, so every backend behaves the same under failure.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from ..model import Author, CaseRecord, Entry, ExternalRef


class ThreadRef(BaseModel):
    """The external thread a case is bound to: a GitHub issue, a PagerDuty incident, a file..."""

    model_config = ConfigDict(frozen=True, extra="allow")
    backend: str
    id: str
    url: str | None = None


class HumanItem(BaseModel):
    """Something a person wrote or did in a thread (a comment, a note, a reaction, a status change)."""

    model_config = ConfigDict(frozen=True)
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

    entries: list[Entry] = Field(default_factory=list)
    humans: list[HumanItem] = Field(default_factory=list)
    cursor: str | None = None


class Hit(BaseModel):
    """A search hit from a backend's own search."""

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
