"""Tamper evidence: `sharedctx verify` fails, naming the case, after each way history can be quietly changed
in the database: an edited entry, two entries swapped, an entry deleted in the middle, the last entry or the
last three deleted (with and without rewinding the case's recorded head), and a whole case deleted.

The tampering is done the way a person with the database file would do it: drop the append-only triggers,
then UPDATE/DELETE rows directly (SQLite here, PostgreSQL in the second half). `verify --against local`
catches a truncation that also rewrote the local heads and checkpoints, from the copies the backend holds.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from sharedctx.cli import app
from sharedctx.config import parse_config
from sharedctx.context import SharedContext

Tamper = Callable[[Callable[..., None], str, str], None]  # (run sql, victim case id, other case id)


def _edit(sql: Callable[..., None], case_id: str, _: str) -> None:
    sql("UPDATE entries SET body = body || ' (quietly edited)' WHERE case_id = ? AND seq = 3", case_id)


def _reorder(sql: Callable[..., None], case_id: str, _: str) -> None:
    sql("UPDATE entries SET seq = -1 WHERE case_id = ? AND seq = 2", case_id)
    sql("UPDATE entries SET seq = 2 WHERE case_id = ? AND seq = 3", case_id)
    sql("UPDATE entries SET seq = 3 WHERE case_id = ? AND seq = -1", case_id)


def _delete_middle(sql: Callable[..., None], case_id: str, _: str) -> None:
    _delete_entries(sql, case_id, "seq = 3")


def _delete_last(sql: Callable[..., None], case_id: str, _: str) -> None:
    _delete_entries(sql, case_id, "seq = 6")


def _delete_last_three(sql: Callable[..., None], case_id: str, _: str) -> None:
    _delete_entries(sql, case_id, "seq >= 4")


def _delete_last_three_and_rewind_head(sql: Callable[..., None], case_id: str, _: str) -> None:
    """A careful tamperer also moves the case row's head back to the new last entry."""
    _delete_entries(sql, case_id, "seq >= 4")
    sql("UPDATE cases SET last_seq = 3, last_hash = (SELECT hash FROM entries WHERE case_id = ? AND seq = 3) "
        "WHERE id = ?", case_id, case_id)


def _delete_case(sql: Callable[..., None], case_id: str, _: str) -> None:
    _delete_entries(sql, case_id, "1 = 1")
    sql("DELETE FROM cases WHERE id = ?", case_id)


def _delete_entries(sql: Callable[..., None], case_id: str, where: str) -> None:
    sql(f"DELETE FROM outbox WHERE entry_id IN (SELECT id FROM entries WHERE case_id = ? AND {where})", case_id)
    sql(f"DELETE FROM entries WHERE case_id = ? AND {where}", case_id)


SCENARIOS: dict[str, Tamper] = {
    "edit": _edit,
    "reorder": _reorder,
    "delete-middle": _delete_middle,
    "delete-last": _delete_last,
    "delete-last-3": _delete_last_three,
    "delete-last-3-and-rewind-head": _delete_last_three_and_rewind_head,
    "delete-case": _delete_case,
}


def _journal(folder: Path, store: str) -> tuple[Path, str, str]:
    """Two cases of six entries, delivered to the local backend, checkpointed by a clean verify."""
    cfg = folder / "sharedctx.toml"
    cfg.write_text(f'store = "{store}"\n[worker]\nenabled = false\n[[backends]]\ntype = "local"\npath = "cases"\n')
    conf = parse_config({"store": store, "worker": {"enabled": False},
                         "backends": [{"type": "local", "path": "cases"}]}, base_dir=folder)
    with SharedContext.open(conf, worker=False) as ctx:
        ids = []
        for name in ("victim", "bystander"):
            case = ctx.open_case(name)
            for i in range(6):
                case.record("finding", f"{name} finding {i}", f"body {i}")
            ids.append(case.id)
        assert ctx.drain(10)
    ran = CliRunner().invoke(app, ["--config", str(cfg), "verify"])
    assert ran.exit_code == 0, ran.output
    return cfg, ids[0], ids[1]


def _verify(cfg: Path, *extra: str) -> tuple[int, list[dict]]:
    ran = CliRunner().invoke(app, ["--config", str(cfg), "verify", "--json", *extra])
    return ran.exit_code, json.loads(ran.stdout)


def _assert_named(cfg: Path, victim: str, bystander: str) -> None:
    code, reports = _verify(cfg)
    assert code == 5, reports
    failed = {r["case_id"] for r in reports if not r["ok"]}
    assert victim in failed, reports
    assert bystander not in failed, "an untouched case was blamed"
    plain = CliRunner().invoke(app, ["--config", str(cfg), "verify"])
    assert plain.exit_code == 5 and f"FAIL {victim}" in plain.stdout, plain.stdout


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_sqlite_tampering_is_named(scenario: str, tmp_path: Path) -> None:
    cfg, victim, bystander = _journal(tmp_path, "journal.db")
    db = sqlite3.connect(tmp_path / "journal.db", isolation_level=None)
    db.execute("DROP TRIGGER entries_append_only_update")
    db.execute("DROP TRIGGER entries_append_only_delete")
    SCENARIOS[scenario](lambda q, *a: db.execute(q, a), victim, bystander)
    db.close()
    _assert_named(cfg, victim, bystander)


@pytest.mark.parametrize("scenario", ["delete-last", "delete-last-3-and-rewind-head", "delete-case"])
def test_postgresql_tampering_is_named(scenario: str, tmp_path: Path, acceptance_pg_url: str) -> None:
    with psycopg.connect(acceptance_pg_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")  # a fresh journal per scenario
        conn.execute("CREATE SCHEMA public")
    cfg, victim, bystander = _journal(tmp_path, acceptance_pg_url)
    with psycopg.connect(acceptance_pg_url, autocommit=True) as conn:
        conn.execute("DROP TRIGGER entries_append_only ON entries")
        SCENARIOS[scenario](lambda q, *a: conn.execute(q.replace("?", "%s"), a), victim, bystander)
    _assert_named(cfg, victim, bystander)


def test_a_truncation_that_rewrote_every_local_record_is_caught_against_the_backend(tmp_path: Path) -> None:
    """Tail deleted, head rewound, and the checkpoints dropped too: only the backend's copies remember."""
    cfg, victim, bystander = _journal(tmp_path, "journal.db")
    db = sqlite3.connect(tmp_path / "journal.db", isolation_level=None)
    db.execute("DROP TRIGGER entries_append_only_delete")
    _delete_last_three_and_rewind_head(lambda q, *a: db.execute(q, a), victim, bystander)
    db.execute("DELETE FROM checkpoints")
    db.execute("DELETE FROM checkpoint_heads")
    db.close()
    code, _ = _verify(cfg)
    assert code == 0  # locally consistent: this is what the backend check is for
    code, reports = _verify(cfg, "--against", "local")
    assert code == 5
    [bad] = [r for r in reports if not r["ok"]]
    assert bad["case_id"] == victim and "lacks" in bad["issues"][0]["problem"]
