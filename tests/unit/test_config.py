"""Configuration: errors name the key and say what to do; secrets only by reference."""

from __future__ import annotations

from pathlib import Path

import pytest

from sharedctx.backends import make_backend
from sharedctx.config import Secret, load_config, parse_config
from sharedctx.errors import ConfigError


def test_a_literal_token_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match=r'backends\[0\].token: a literal secret .* token = "env:VARIABLE_NAME"'):
        parse_config({"backends": [{"type": "github", "repo": "o/r", "token": "ghp_abc"}]})


def test_unknown_keys_are_named() -> None:
    with pytest.raises(ConfigError, match=r"worker.max_attemps: unknown key"):
        parse_config({"worker": {"max_attemps": 3}})


def test_wrong_types_are_named_with_what_was_expected() -> None:
    with pytest.raises(ConfigError, match=r"worker.concurrency: Input should be a valid integer"):
        parse_config({"worker": {"concurrency": "many"}})


def test_a_file_that_does_not_parse_says_where(tmp_path: Path) -> None:
    p = tmp_path / "sharedctx.toml"
    p.write_text('store = "x\n[worker\n')
    with pytest.raises(ConfigError, match=r"is not valid TOML: .*line 1"):
        load_config(p)


def test_a_missing_file_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sharedctx init"):
        load_config(tmp_path / "nope.toml")


def test_unknown_backend_type_lists_the_known_ones() -> None:
    cfg = parse_config({"backends": [{"type": "myspace"}]})
    with pytest.raises(ConfigError, match=r"unknown type 'myspace'; known types are .*github.*local"):
        make_backend(cfg.backends[0])


def test_backend_options_are_checked_by_the_backend() -> None:
    cfg = parse_config({"backends": [{"type": "local", "colour": "blue"}]})
    with pytest.raises(ConfigError, match=r"backends.local.colour: unknown option"):
        make_backend(cfg.backends[0])


def test_duplicate_backend_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="two backends are named 'local'"):
        parse_config({"backends": [{"type": "local"}, {"type": "local", "path": "b"}]})


def test_secrets_resolve_from_the_environment_and_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Secret("env:SC_TEST_TOKEN")
    with pytest.raises(ConfigError, match="SC_TEST_TOKEN is not set"):
        s.get()
    monkeypatch.setenv("SC_TEST_TOKEN", "hunter2")
    assert s.get() == "hunter2"
    assert "hunter2" not in repr(s) and "hunter2" not in str(s)


def test_relative_store_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "sharedctx.toml").write_text('store = "data/j.db"\n')
    cfg = load_config(tmp_path / "sharedctx.toml")
    assert cfg.store_url == str(tmp_path / "data" / "j.db")
    assert parse_config({"store": "postgresql://u@h/db"}).store_url == "postgresql://u@h/db"
