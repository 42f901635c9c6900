"""Storage faults are loud: a journal deleted or replaced under a running process, a journal that vanished
between runs, a read-only filesystem and a full disk each give a `StoreError` (exit code 6 in the CLI) that
says what happened, never a traceback, never an acknowledged write that is lost, never a new empty journal.

The read-only and full-disk cases need a small tmpfs of their own, so they run only where the test may
mount one (root in a container that allows it); elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sharedctx.config import parse_config
from sharedctx.context import SharedContext
from sharedctx.errors import ConfigError, StoreError

ROOT = Path(__file__).resolve().parents[2]


def _ctx(folder: Path) -> SharedContext:
    cfg = parse_config({"store": "journal.db", "worker": {"enabled": False},
                        "backends": [{"type": "local", "path": "cases"}]}, base_dir=folder)
    return SharedContext.open(cfg, worker=False)


def _cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (folder / "sharedctx.toml").write_text(
        'store = "journal.db"\n[worker]\nenabled = false\n[[backends]]\ntype = "local"\npath = "cases"\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "1000"}
    return subprocess.run([sys.executable, "-m", "sharedctx.cli", "--config", str(folder / "sharedctx.toml"), *args],
                          cwd=folder, capture_output=True, text=True, timeout=60, env=env)


def test_a_journal_deleted_under_a_running_process_stops_acknowledging_writes(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    try:
        case = ctx.open_case("c")
        kept = [case.record("note", f"before {i}") for i in range(3)]
        (tmp_path / "journal.db").unlink()
        with pytest.raises(StoreError, match="was deleted while this process had it open"):
            case.record("note", "after the delete")
        with pytest.raises(StoreError, match="deleted"):
            ctx.open_case("another")
    finally:
        ctx.close()
    assert len(kept) == 3
    # The next process must not quietly start an empty journal where the old one was.
    ran = _cli(tmp_path, "case", "list")
    assert ran.returncode == 6, ran.stdout + ran.stderr
    assert "is missing" in ran.stderr and "journal.db.id" in ran.stderr and "Traceback" not in ran.stderr
    assert not (tmp_path / "journal.db").exists()


def test_a_journal_replaced_under_a_running_process_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    _ctx(other).close()
    ctx = _ctx(tmp_path)
    try:
        case = ctx.open_case("c")
        case.record("note", "before")
        os.replace(other / "journal.db", tmp_path / "journal.db")
        with pytest.raises(StoreError, match="was replaced by another file"):
            case.record("note", "after")
    finally:
        ctx.close()


def test_a_different_journal_copied_over_the_marked_one_is_refused_at_open(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    _ctx(other).close()
    _ctx(tmp_path).close()
    shutil.copy(other / "journal.db", tmp_path / "journal.db")
    ran = _cli(tmp_path, "case", "list")
    assert ran.returncode == 6 and "replaced by another journal" in ran.stderr, ran.stderr


def test_a_fresh_folder_still_just_works_and_an_intentional_fresh_start_is_possible(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    ctx.open_case("c").record("note", "n")
    ctx.close()
    assert (tmp_path / "journal.db.id").exists()
    (tmp_path / "journal.db").unlink()
    with pytest.raises(StoreError, match=r"delete .*journal\.db\.id to start a new journal on purpose"):
        _ctx(tmp_path)
    (tmp_path / "journal.db.id").unlink()
    ctx = _ctx(tmp_path)
    assert ctx.cases() == []
    ctx.close()


@pytest.mark.parametrize("url", ["mysql://u@db/x", "postgresql+psycopg://u@db/x", "redis://x", "file://x"])
def test_unsupported_store_urls_fail_at_config_load(url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unsupported URL scheme.*postgresql://"):
        parse_config({"store": url}, base_dir=tmp_path)
    assert not list(tmp_path.iterdir())  # nothing was created at a path named like the URL


# -- faults that need a filesystem of their own ----------------------------------------------------------------
@contextlib.contextmanager
def _tmpfs(size: str) -> Iterator[Path]:
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs (read-only and full-disk faults)")
    where = Path(f"/tmp/sctx-fault-{uuid.uuid4().hex[:8]}")
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        where.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
        with contextlib.suppress(OSError):
            where.rmdir()


def test_a_read_only_filesystem_gives_a_clear_store_error_and_exit_6(tmp_path: Path) -> None:
    with _tmpfs("4m") as fs:
        made = _cli(fs, "case", "open", "before the remount", "--json")
        assert made.returncode == 0, made.stderr
        subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True)
        ran = _cli_readonly(fs, tmp_path, "case", "open", "after the remount")
        assert ran.returncode == 6, ran.stdout + ran.stderr
        assert "read-only" in ran.stderr and "Traceback" not in ran.stderr, ran.stderr
        listed = _cli_readonly(fs, tmp_path, "case", "list", "--json")
        assert "before the remount" in listed.stdout or listed.returncode == 6, listed.stderr


def _cli_readonly(fs: Path, scratch: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI against the journal on `fs`, with its config outside (the filesystem is read-only now)."""
    cfg = scratch / "ro.toml"
    cfg.write_text(f'store = "{fs}/journal.db"\n[worker]\nenabled = false\n[[backends]]\ntype = "local"\n'
                   f'path = "{fs}/cases"\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "1000"}
    return subprocess.run([sys.executable, "-m", "sharedctx.cli", "--config", str(cfg), *args],
                          cwd=scratch, capture_output=True, text=True, timeout=60, env=env)


def test_a_full_disk_refuses_the_write_and_loses_nothing_already_recorded(tmp_path: Path) -> None:
    with _tmpfs("2m") as fs:
        ctx = _ctx(fs)
        try:
            case = ctx.open_case("c")
            kept = [case.record("note", f"kept {i}", "x" * 2000) for i in range(20)]
            filler = fs / "filler"
            with open(filler, "wb") as f, contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            with pytest.raises(StoreError, match="disk is full"):
                for i in range(2000):  # the WAL may still have room for a few
                    case.record("note", f"overflow {i}", "y" * 20_000)
            filler.unlink()
            assert [e.id for e in case.timeline()][: len(kept)] == [e.id for e in kept]
            assert case.verify().ok
            case.record("note", "space again")  # the store recovers once there is room
        finally:
            ctx.close()
