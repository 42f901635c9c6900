"""Test helpers shipped with the library, so users can test their agents without any service.

`FakeBackend` has the Backend shape, keeps what it was sent in memory, and fails on demand —
so a test can say "the next two appends time out after landing" and watch the worker reconcile.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import ClassVar

from .backends.base import Hit, ReadBack, ThreadRef
from .model import CaseRecord, Entry, ExternalRef

Fault = Callable[[Entry], None]


class FakeBackend:
    """An in-memory backend. `faults` is a queue of callables run before each append (may raise)."""

    type: ClassVar[str] = "fake"

    def __init__(self, name: str = "fake", *, latency: float = 0.0) -> None:
        self.name = name
        self.latency = latency
        self.threads: dict[str, list[Entry]] = {}
        self.resolved: set[str] = set()
        self.faults: list[Fault] = []
        self.calls: list[tuple[str, str]] = []  # (method, entry or case id), in call order
        self.binds = 0
        self._lock = threading.Lock()

    def fail_next(self, *errors: BaseException, applied: bool = False) -> None:
        """Queue errors for the next appends; `applied=True` stores the entry first (ambiguous)."""
        for error in errors:

            def fault(entry: Entry, error: BaseException = error) -> None:
                if applied:
                    self._store(entry)
                raise error

            self.faults.append(fault)

    def _store(self, entry: Entry) -> None:
        with self._lock:
            thread = self.threads.setdefault(entry.case_id, [])
            if not any(e.id == entry.id for e in thread):
                thread.append(entry)

    def bind(self, case: CaseRecord) -> ThreadRef:
        with self._lock:
            self.binds += 1
            self.calls.append(("bind", case.id))
            self.threads.setdefault(case.id, [])
        return ThreadRef(backend=self.name, id=case.id)

    def append(self, thread: ThreadRef, entry: Entry) -> ExternalRef:
        self.calls.append(("append", entry.id))
        if self.latency:
            time.sleep(self.latency)
        if self.faults:
            self.faults.pop(0)(entry)
        with self._lock:
            existing = self.threads.setdefault(thread.id, [])
            existing.append(entry)  # deliberately no dedupe: a double delivery must show up in tests
        return ExternalRef(backend=self.name, id=f"{thread.id}/{entry.seq}")

    def lookup(self, thread: ThreadRef, entry_id: str) -> ExternalRef | None:
        self.calls.append(("lookup", entry_id))
        for e in self.threads.get(thread.id, []):
            if e.id == entry_id:
                return ExternalRef(backend=self.name, id=f"{thread.id}/{e.seq}")
        return None

    def read_back(self, thread: ThreadRef, since: str | None = None) -> ReadBack:
        after = int(since or 0)
        entries = [e for e in self.threads.get(thread.id, []) if e.seq > after]
        return ReadBack(entries=entries, cursor=str(entries[-1].seq) if entries else since)

    def search(self, text: str, limit: int = 20) -> list[Hit]:
        return []

    def resolve(self, thread: ThreadRef, summary: Entry) -> None:
        self.calls.append(("resolve", thread.id))
        self.resolved.add(thread.id)

    def close(self) -> None:
        pass

    def entries(self, case_id: str) -> list[Entry]:
        return list(self.threads.get(case_id, []))
