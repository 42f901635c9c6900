"""`[[backends]] type = "redmine"` tables: what builds, and what is refused with the key named (no server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sharedctx.backends import make_backend
from sharedctx.backends.redmine import RedmineBackend
from sharedctx.config import load_config, parse_config
from sharedctx.errors import ConfigError

GOOD: dict[str, Any] = {"url": "https://redmine.acme.internal", "api_key": "env:REDMINE_API_KEY", "project": "ops"}


def build(**options: Any) -> Any:
    return make_backend(parse_config({"backends": [{"type": "redmine", **options}]}).backends[0])


def test_the_minimal_table_builds_with_redmines_defaults() -> None:
    b = build(**GOOD)
    assert isinstance(b, RedmineBackend) and b.name == "redmine"
    assert (b.options.text_format, b.options.closed_status_id, b.options.private_notes) == ("textile", 5, False)
    b.close()


@pytest.mark.parametrize("key", ["url", "api_key", "project"])
def test_a_missing_required_option_names_its_key(key: str) -> None:
    with pytest.raises(ConfigError, match=rf"backends\.redmine\.{key}: "):
        build(**{k: v for k, v in GOOD.items() if k != key})


@pytest.mark.parametrize(("key", "value"), [("url", "redmine.acme"), ("text_format", "rst"),
                                            ("max_note_chars", 10), ("colour", "blue")])
def test_a_bad_or_unknown_option_names_its_key(key: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=rf"backends\.redmine\.{key}: "):
        build(**{**GOOD, key: value})


def test_a_literal_api_key_is_refused_and_not_echoed(tmp_path: Path) -> None:
    (tmp_path / "sharedctx.toml").write_text('[[backends]]\ntype = "redmine"\nurl = "https://r.example"\n'
                                             'project = "ops"\napi_key = "0123456789abcdef0123"\n')
    with pytest.raises(ConfigError, match=r"backends\[0\]\.api_key: a literal secret is not allowed") as err:
        load_config(tmp_path / "sharedctx.toml")
    assert "0123456789abcdef0123" not in str(err.value)
