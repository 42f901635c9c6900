"""Fixtures for the leak hunts: a scratch folder in memory where the OS offers one.

The hunts write a few thousand entries and deliveries; the local backend and SQLite fsync them, which on a
shared disk costs minutes and tests nothing about leaks. On tmpfs an fsync is free, and the bytes written are
the same.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    shm = Path("/dev/shm")
    if not (shm.is_dir() and shm.stat().st_mode & 0o002):
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="sctx-redaction-", dir=shm))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
