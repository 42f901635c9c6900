"""The CLI, as a user drives it: tables by default, --json for scripts, meaningful exit codes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sharedctx.cli import app

runner = CliRunner()


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SHAREDCTX_CONFIG", raising=False)
    runner.invoke(app, ["init"])
    (tmp_path / "sharedctx.toml").write_text(
        (tmp_path / "sharedctx.toml").read_text().replace("enabled = true", "enabled = false")
    )
    return tmp_path


def sc(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def open_case(*extra: str) -> str:
    code, out = sc("case", "open", "Checkout 5xx spike", "--service", "checkout", "--json", *extra)
    assert code == 0, out
    return json.loads(out)["id"]


def test_init_refuses_to_overwrite(cwd: Path) -> None:
    code, out = sc("init")
    assert code == 4 and "exists; use --force" in out


def test_the_whole_journal_round_trip(cwd: Path) -> None:
    case_id = open_case("--fingerprint", "am:1")
    assert open_case("--fingerprint", "am:1") == case_id
    code, out = sc("record", case_id, "finding", "p99 up 8x", "since deploy 4411", "--author", "primary:bot",
                   "--evidence", '{"type":"metric","source":"prometheus","summary":"p99"}')
    assert code == 0 and "recorded #1 finding" in out
    code, out = sc("timeline", case_id, "--json")
    [entry] = json.loads(out)
    assert entry["author"] == {"kind": "primary", "name": "bot"} and entry["evidence"][0]["source"] == "prometheus"
    code, out = sc("case", "list")
    assert case_id in out and "checkout" in out
    code, out = sc("search", "deploy", "--json")
    [found] = json.loads(out)["cases"]
    assert found["case_id"] == case_id and found["hits"][0]["entry_id"] == entry["id"]
    code, out = sc("case", "resolve", case_id, "rolled back")
    assert code == 0
    code, out = sc("case", "show", case_id, "--json")
    assert json.loads(out)["case"]["status"] == "resolved"
    code, out = sc("outbox", "status", "--json")
    assert json.loads(out)[0]["pending"] == 2
    code, out = sc("worker", "--once")
    assert "handled 2" in out
    assert (cwd / ".sharedctx" / "cases" / f"{case_id}.md").exists()


def test_exit_codes_say_what_went_wrong(cwd: Path) -> None:
    code, out = sc("timeline", "01NOSUCHCASE")
    assert code == 3 and "no case matches '01NOSUCHCASE'" in out
    case_id = open_case()
    code, out = sc("record", case_id, "guess", "t")
    assert code == 4 and "unknown entry kind 'guess'" in out
    code, out = sc("record", case_id, "note", "t", "--evidence", "{not json")
    assert code == 4 and "--evidence is not valid JSON" in out


def test_a_body_from_stdin_must_be_utf8(cwd: Path) -> None:
    case_id = open_case()
    result = runner.invoke(app, ["record", case_id, "note", "t", "--body-file", "-"], input=b"\xff\xfe")
    assert result.exit_code == 4 and "not valid UTF-8" in result.output


def test_verify_names_the_tampered_entry(cwd: Path) -> None:
    case_id = open_case()
    for i in range(3):
        sc("record", case_id, "note", f"n{i}")
    assert sc("verify", case_id)[0] == 0
    db = sqlite3.connect(cwd / ".sharedctx" / "sharedctx.db")
    db.execute("DROP TRIGGER entries_append_only_update")
    seq2 = db.execute("SELECT id FROM entries WHERE seq = 2").fetchone()[0]
    db.execute("UPDATE entries SET body = 'edited' WHERE seq = 2")
    db.commit()
    code, out = sc("verify", case_id)
    assert code == 5 and f"entry #2 ({seq2})" in out and "edited after it was recorded" in out


def test_dead_letters_are_listed_and_retried(cwd: Path) -> None:
    case_id = open_case()
    sc("record", case_id, "note", "n")
    db = sqlite3.connect(cwd / ".sharedctx" / "sharedctx.db")
    db.execute("UPDATE outbox SET state='dead', last_error='422: refused'")
    db.commit()
    code, out = sc("outbox", "list", "--dead")
    assert "422: refused" in out
    code, out = sc("outbox", "retry")
    assert code == 0 and "requeued 1" in out


def test_bad_config_is_reported_with_the_key(cwd: Path) -> None:
    (cwd / "sharedctx.toml").write_text('[[backends]]\ntype = "github"\ntoken = "ghp_literal"\n')
    code, out = sc("case", "list")
    assert code == 4 and "backends[0].token: a literal secret is not allowed" in out


def test_every_command_has_help() -> None:
    for args in (["--help"], ["case", "--help"], ["outbox", "--help"], ["record", "--help"], ["search", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and "Usage" in result.output


def test_titles_are_shown_as_written_never_read_as_markup(cwd: Path) -> None:
    """A title is a person's or an agent's text: `[/x]` once crashed `case list` (a closing tag with nothing
    open) and `[red]` was styled away. Every command that prints one must show it literally."""
    title = "[/x] [red]db[/red]"
    code, out = sc("case", "open", title, "--service", "pay")
    assert code == 0 and title in out, out
    case_id = out.split()[1]
    sc("record", case_id, "finding", "[/]oops", "body", "--author", "primary:bot")
    for args in (("case", "list"), ("case", "show", case_id), ("timeline", case_id)):
        code, out = sc(*args)
        assert code == 0, (args, out)
        assert "[red]db[/red]" in out.replace("\n", "").replace(" ", "").replace("│", ""), (args, out)
    code, out = sc("timeline", case_id)
    assert "[/]oops" in out, out
    code, out = sc("case", "show", "[/x]")  # an error that echoes what was typed
    assert code != 0 and "no case matches '[/x]'" in out.replace("\n", ""), out
