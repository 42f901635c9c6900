"""The embedded default store (one SQLite file): the store and its queries (`store.py`), the write path for
`record()` (`appends.py`), and the rules about the journal file itself (`files.py`)."""

from .store import SQLiteStore

__all__ = ["SQLiteStore"]
