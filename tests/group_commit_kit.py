"""Helpers shared by the SQLite group-commit attack tests (`tests/unit/test_group_commit_attack*.py`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sharedctx.model import Author, Entry, EntryDraft, EntryKind
from sharedctx.store.sqlite import SQLiteStore

PRIMARY = Author(kind="primary", name="attacker")
WAIT = 10.0  # seconds a caller may take (its work takes milliseconds) before it counts as left waiting forever


def _draft(case_id: str, title: str) -> EntryDraft:
    return EntryDraft(case_id=case_id, kind=EntryKind.FINDING, title=title, body="body", author=PRIMARY)


def _case(store: SQLiteStore, title: str = "case") -> str:
    case, _ = store.open_case(title=title, service="svc", severity="warning", fingerprint=None, labels={})
    return case.id


def _until(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


class _Call:
    """One append on its own daemon thread; `outcome` is its Entry or exception, `done` whether it returned."""

    def __init__(self, fn: Callable[[], Entry]) -> None:
        self.outcome: Entry | BaseException | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Entry]) -> None:
        try:
            self.outcome = fn()
        except BaseException as exc:
            self.outcome = exc
        finally:
            self.done.set()
