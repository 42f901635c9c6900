"""Config refuses what would quietly break delivery or the journal: a lease shorter than a request, a store
URL this library cannot open."""

from __future__ import annotations

from pathlib import Path

import pytest

from sharedctx.config import parse_config
from sharedctx.errors import ConfigError

GITHUB = {"type": "github", "repo": "acme/payments", "token": "env:GITHUB_TOKEN"}


def test_a_lease_shorter_than_a_backends_request_timeout_is_refused_naming_both(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"worker": {"lease_seconds": 10}, "backends": [{**GITHUB, "timeout": 20}]}, base_dir=tmp_path)
    assert "worker.lease_seconds = 10" in str(err.value) and "backends.github.timeout = 20" in str(err.value)


def test_the_backends_default_timeout_counts_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"backends\.github\.timeout = 30"):
        parse_config({"worker": {"lease_seconds": 5}, "backends": [GITHUB]}, base_dir=tmp_path)


def test_a_lease_covering_every_request_is_fine_and_local_has_no_timeout(tmp_path: Path) -> None:
    cfg = parse_config({"worker": {"lease_seconds": 20},
                        "backends": [{**GITHUB, "timeout": 20}, {"type": "local"}]}, base_dir=tmp_path)
    assert cfg.worker.lease_seconds == 20
    parse_config({"worker": {"lease_seconds": 0.1}, "backends": [{"type": "local"}]}, base_dir=tmp_path)


@pytest.mark.parametrize("store", ["journal.db", "sqlite:///x/journal.db", ":memory:",
                                   "postgresql://u@h:5432/d", "postgres://u@h/d"])
def test_supported_store_forms_load(store: str, tmp_path: Path) -> None:
    assert parse_config({"store": store}, base_dir=tmp_path).store == store
