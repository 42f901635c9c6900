"""`drain()` says what it left behind, and is truthy only when nothing deliverable is left undelivered."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from sharedctx.cli import app
from sharedctx.context import SharedContext
from sharedctx.errors import AuthFailed, Rejected
from sharedctx.testing import FakeBackend


def test_everything_delivered_is_truthy_and_counted(ctx: SharedContext, fake: FakeBackend) -> None:
    case = ctx.open_case("c")
    for i in range(3):
        case.record("note", f"n{i}")
    report = ctx.drain(5)
    assert report and not report.timed_out
    [b] = report.backends
    assert (b.backend, b.delivered, b.pending, b.dead, b.stopped) == ("fake", 3, 0, 0, False)


def test_a_dead_letter_makes_the_report_falsy(ctx: SharedContext, fake: FakeBackend) -> None:
    case = ctx.open_case("c")
    fake.fail_next(Rejected("422 body too long"))
    case.record("note", "refused")
    case.record("note", "fine")
    report = ctx.drain(5)
    assert not report
    assert (report.backends[0].delivered, report.backends[0].dead) == (1, 1)
    assert "1 dead" in report.summary()


def test_a_stopped_backend_makes_the_report_falsy(ctx: SharedContext, fake: FakeBackend) -> None:
    case = ctx.open_case("c")
    fake.fail_next(AuthFailed("401 bad token"))
    case.record("note", "n")
    report = ctx.drain(2)
    assert not report
    [b] = report.backends
    assert b.stopped and b.pending == 1 and "401" in (b.reason or "")


def test_held_entries_wait_for_a_person_and_do_not_make_it_falsy(ctx: SharedContext, fake: FakeBackend) -> None:
    case = ctx.open_case("c")
    case.record("remediation", "restart pods", attrs={"held_for_decision": True}, author="partner:p")
    report = ctx.drain(5)
    assert report and report.backends[0].held == 1 and report.backends[0].delivered == 0


def test_cli_drain_prints_the_report_and_exits_6_when_something_is_dead(tmp_path: Path) -> None:
    cfg = tmp_path / "sharedctx.toml"
    cfg.write_text('store = "j.db"\n[worker]\nenabled = false\n[[backends]]\ntype = "local"\npath = "out"\n')
    runner = CliRunner()
    opened = runner.invoke(app, ["--config", str(cfg), "case", "open", "x", "--json"])
    case_id = json.loads(opened.stdout)["id"]
    runner.invoke(app, ["--config", str(cfg), "record", case_id, "note", "hello"])
    ok = runner.invoke(app, ["--config", str(cfg), "drain", "--json"])
    assert ok.exit_code == 0, ok.output
    data = json.loads(ok.stdout)
    assert data["ok"] and data["backends"][0]["delivered"] == 1
    with SharedContext.open(cfg, worker=False) as ctx:
        [d] = ctx.store.list_deliveries(state="delivered")
        ctx.store._update("UPDATE outbox SET state='dead' WHERE id=?", (d.id,))  # type: ignore[attr-defined]
    bad = runner.invoke(app, ["--config", str(cfg), "drain"])
    assert bad.exit_code == 6 and "local" in bad.stdout
