"""`[[backends]] type = "matrix"` tables: what builds, and errors that name the key (no server needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sharedctx.backends import make_backend
from sharedctx.backends.matrix import MatrixBackend
from sharedctx.config import load_config, parse_config
from sharedctx.errors import ConfigError

GOOD = {"homeserver": "https://matrix.acme.org", "room_id": "!incidents:acme.org", "token": "env:MATRIX_BOT_TOKEN"}


def build(**options: Any) -> Any:
    return make_backend(parse_config({"backends": [{"type": "matrix", **options}]}).backends[0])


def test_the_documented_table_builds_with_its_defaults() -> None:
    b = build(**GOOD)
    assert isinstance(b, MatrixBackend)
    assert b.options.decide_power_level == 50 and b.options.max_event_bytes == 60_000
    b.close()
    v12 = build(**{**GOOD, "room_id": "!Hk3pS9mWdRt0yXcVbN2qLfGjZ8aE4uIoP7sK1vB6nM5"})  # room v12 ids have no server
    v12.close()


@pytest.mark.parametrize("key", list(GOOD))
def test_a_missing_option_names_backends_matrix_key(key: str) -> None:
    with pytest.raises(ConfigError, match=rf"backends\.matrix\.{key}: "):
        build(**{k: v for k, v in GOOD.items() if k != key})


@pytest.mark.parametrize(("key", "value", "says"), [
    ("room_id", "#incidents:acme.org", "an alias"),
    ("max_event_bytes", 70_000, "less than or equal"),
    ("msgtype", "m.emote", "m.notice"),
])
def test_a_bad_value_names_its_key_and_what_is_expected(key: str, value: Any, says: str) -> None:
    with pytest.raises(ConfigError, match=rf"backends\.matrix\.{key}: .*{says}"):
        build(**{**GOOD, key: value})


def test_a_literal_token_is_refused_without_echoing_it(tmp_path: Path) -> None:
    (tmp_path / "sharedctx.toml").write_text('[[backends]]\ntype = "matrix"\nhomeserver = "https://m.acme.org"\n'
                                             'room_id = "!r:acme.org"\ntoken = "syt_Ym90_secretsecret_0ABCD"\n')
    with pytest.raises(ConfigError, match=r"backends\[0\]\.token: a literal secret is not allowed") as err:
        load_config(tmp_path / "sharedctx.toml")
    assert "syt_Ym90" not in str(err.value)
