"""The journal file itself: where it is, whether it is still the one we opened, and what to tell an operator.

A journal that vanished must not silently come back empty, and a failure must say what to do about it (a
read-only mount, a full disk, a missing folder). These rules do not depend on SQL, so they live apart from
the store's queries; so does the thread that copies the WAL back into the file (`checkpoints`).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import urllib.parse
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import StoreError
from ...model import format_ts, utcnow

if TYPE_CHECKING:
    from .store import SQLiteStore


def append_error(path: str, exc: BaseException) -> BaseException:
    """What the caller of a failed append sees: a database failure named as a `StoreError`."""
    if isinstance(exc, sqlite3.Error):
        err = StoreError(explain(path, "could not record the entry", exc))
        err.__cause__ = exc
        return err
    return exc


def copy_error(exc: BaseException) -> BaseException:
    """The same failure as a separate exception object, so that threads raising it do not share one traceback."""
    try:
        copy = type(exc)(*exc.args)
    except Exception:
        copy = StoreError(str(exc))
    copy.__cause__ = exc.__cause__
    return copy


def uri(path: str, mode: str) -> str:
    return f"file:{urllib.parse.quote(os.path.abspath(path))}?mode={mode}"


def read_only(path: str) -> bool:
    """Is the journal (or the folder it would be created in) on a read-only mount or not writable?"""
    if path == ":memory:":
        return False
    p = Path(path)
    where = p if p.exists() else p.parent
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        if os.statvfs(where).f_flag & os.ST_RDONLY:
            return True
    except OSError:
        return False
    return not os.access(where, os.W_OK) or (p.exists() and not os.access(p.parent, os.W_OK))


def explain(path: str, what: str, exc: BaseException) -> str:
    """A store failure in words an operator can act on (read-only, full disk, missing folder)."""
    text = str(exc)
    low = text.lower()
    if "readonly" in low or "read-only" in low or isinstance(exc, PermissionError) or read_only(path):
        hint = "the journal or its folder is read-only: check the permissions and the mount of"
    elif "disk is full" in low or "no space" in low:
        hint = "the disk is full: free space on the filesystem of"
    elif "unable to open" in low:
        hint = "the file cannot be opened: check that the folder exists and is writable for"
    else:
        hint = "at"
    return f"{what}: {text} ({hint} {path}); nothing was recorded"


# -- the journal marker ---------------------------------------------------------------------------
# A journal that vanished must not silently come back empty. The first open of a journal writes a small
# marker beside it (`<file>.id`: the id minted inside the file); an open that finds the marker but not the
# journal refuses, and says how to start afresh on purpose. A fresh clone has neither, so `make demo` just
# works; `rm -rf .sharedctx` removes both, which is an explicit fresh start.
def journal_marker(path: str) -> Path:
    return Path(path + ".id")


def refuse_missing_journal(path: str, marker: Path) -> None:
    if not marker.exists():
        return
    try:
        known = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    raise StoreError(
        f"the journal {path} is missing, but {marker} says journal {known.get('journal_id', '?')} was created "
        f"there ({known.get('created_at', 'unknown time')}). Refusing to start a new, empty journal in its place: "
        f"restore the file from a backup, or delete {marker} to start a new journal on purpose"
    )


def claim_marker(path: str, journal_id: str) -> None:
    """Write the marker for a journal that has none; refuse a journal file that is not the one marked."""
    marker = journal_marker(path)
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        try:
            known = json.loads(marker.read_text(encoding="utf-8")).get("journal_id")
        except (OSError, ValueError, AttributeError):
            return  # an unreadable marker protects nothing; the journal itself is fine
        if known and known != journal_id:
            raise StoreError(
                f"{path} is journal {journal_id}, but {marker} says journal {known} lives there: the file was "
                f"replaced by another journal. Restore the right file, or delete {marker} to adopt this one"
            ) from None
        return
    except OSError:
        return  # a read-only folder: writes will say so with their own error
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"journal_id": journal_id, "created_at": format_ts(utcnow()),
                   "note": "sharedctx: marks that a journal lives beside this file; see docs/decisions.md"}, f)


def identity(path: str, ident: tuple[int, int] | None) -> str:
    """"ours" when the file at `path` is the one we opened (`ident`: device and inode; None: nothing to
    compare, an in-memory store or a WAL not yet made), "gone" when there is none, "other" when another file
    took its place. The one look every identity check of the journal and its WAL shares. OSError: cannot tell."""
    if ident is None:
        return "ours"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "gone"
    return "ours" if (st.st_dev, st.st_ino) == ident else "other"


def checkpoints(ref: weakref.ref[SQLiteStore], url: str, closed: threading.Event) -> None:
    """The checkpoint thread: each round, the index's merging (`SQLiteStore._merge_index`), then a checkpoint.
    It holds its store only through `ref`, between rounds: a store dropped without close() is collected, and the
    thread then ends and closes its connection."""
    try:
        # A short busy timeout: a checkpoint that would have to wait simply tries again next round,
        # instead of holding the write lock while other connections wait behind it.
        # mode=rw: never create a file. After the journal was deleted, a checkpointer that re-created
        # it would leave an empty journal for the next process to trust.
        conn = sqlite3.connect(uri(url, "rw"), uri=True, isolation_level=None, check_same_thread=False,
                               timeout=0.05)
    except sqlite3.Error:
        return
    with contextlib.closing(conn):
        while True:
            store = ref()
            if store is None:
                return
            every, restart = store.CHECKPOINT_EVERY, store.WAL_RESTART_PAGES
            del store
            if closed.wait(every):
                return
            store = ref()
            if store is None:
                return
            with contextlib.suppress(Exception):  # whatever it was, the checkpoints below must go on
                store._merge_index()  # the index's merging, kept out of the writes (migration 0020)
            del store
            try:
                _, log, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if log > restart:  # constant writing never lets a passive one finish
                    conn.execute("PRAGMA wal_checkpoint(RESTART)")
            except sqlite3.Error:
                continue  # busy or closing; the next round tries again
