"""Strict config: a typo in any section fails the load naming the key; a literal credential anywhere in the
file is refused naming the key and never repeating the value; references (`env:NAME`) keep working."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sharedctx.config import HumanSettings, WebhookSettings, parse_config
from sharedctx.errors import ConfigError
from sharedctx.humans import HumanSettings as HumansFromOldPlace
from sharedctx.humans import WebhookSettings as WebhooksFromOldPlace

PW = "Zq8vK2mPx9LwT4"
GHP = "ghp_" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5"


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"redact": {"paterns": ["x=y"]}}, "redact.paterns: unknown key"),
        ({"search": {"limit": 5}}, "search.limit: unknown key"),
        ({"humans": {"pol": False}}, "humans.pol: unknown key"),
        ({"humans": {"webhooks": {"github": {"secret": "env:X", "max_agee": 5}}}},
         "humans.webhooks.github.max_agee: unknown key"),
        ({"worker": {"lease_second": 5}}, "worker.lease_second: unknown key"),
        ({"partners": [{"name": "p", "command": ["x"], "timout": 3}]}, "partners[0].timout: unknown key"),
        ({"server": {"prot": 1}}, "server.prot: unknown key"),
        ({"agent": {"nam": "x"}}, "agent.nam: unknown key"),
    ],
)
def test_a_typo_in_any_section_fails_the_load_naming_the_key(data: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert key in str(err.value)


def test_a_bad_redact_pattern_fails_at_load() -> None:
    with pytest.raises(ConfigError, match=r"not a valid regular expression"):
        parse_config({"redact": {"patterns": ["acme=ACME-[0-9"]}})


def _http_partner(**kw: Any) -> dict[str, Any]:
    return {"partners": [{"name": "apm", "transport": "http", "url": "https://apm.example/mcp", **kw}]}


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (_http_partner(headers={"Authorization": f"Bearer {PW}"}), "partners[0].headers.Authorization"),
        (_http_partner(headers={"X-Api-Key": PW}), "partners[0].headers.X-Api-Key"),
        (_http_partner(headers={"X-Org": "acme"}), "partners[0].headers"),  # every header is a reference
        ({"partners": [{"name": "p", "command": ["run", "--token", PW]}]}, "partners[0].command"),
        ({"partners": [{"name": "p", "command": ["run"], "env": {"DB_PASSWORD": PW}}]}, "partners[0].env.DB_PASSWORD"),
        ({"partners": [{"name": "p", "command": ["run"], "env": {"DSN": f"postgres://u:{PW}@db/x"}}]},
         "partners[0].env.DSN"),
        ({"partners": [{"name": "p", "command": ["run"], "env": {"GH": GHP}}]}, "partners[0].env.GH"),
        ({"store": f"postgresql://app:{PW}@db.internal/sharedctx"}, "store: a password in the store URL"),
        ({"backends": [{"type": "github", "repo": "a/b", "token": "env:T", "base_url": f"https://x:{PW}@h"}]},
         "backends[0].base_url"),
        ({"backends": [{"type": "jira", "site": "s", "note": f"api_key={PW}"}]}, "backends[0].note"),
        ({"humans": {"webhooks": {"github": {"secret": PW}}}}, "humans.webhooks.github.secret"),
        ({"agents": [{"name": "a", "role": "primary", "token": GHP}]}, "agents[0].token"),
    ],
)
def test_a_literal_secret_anywhere_is_refused_without_repeating_it(data: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert where in str(err.value)
    assert PW not in str(err.value) and GHP not in str(err.value)
    assert "env:" in str(err.value) or "PGPASSWORD" in str(err.value)


def test_references_and_ordinary_values_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCX_STORE", str(tmp_path / "from-env.db"))
    monkeypatch.setenv("APM_AUTH", "Bearer x")
    monkeypatch.setenv("DB_PW", PW)
    cfg = parse_config({
        "store": "env:SCX_STORE",
        "redact": {"patterns": ["acme-key=ACME-[0-9a-f]{32}"]},
        "partners": [
            {"name": "apm", "transport": "http", "url": "https://apm.example/mcp",
             "headers": {"Authorization": "env:APM_AUTH"}},
            {"name": "tel", "command": ["python", "-m", "tel", "--verbose"], "env": {"DB_PASSWORD": "env:DB_PW",
                                                                                     "LOG_LEVEL": "debug"}},
        ],
        "backends": [{"type": "github", "repo": "acme/payments", "token": "env:GITHUB_TOKEN"}],
        "humans": {"poll": False, "webhooks": {"github": {"secret": "env:HOOK"}}},
    }, base_dir=tmp_path)  # fmt: skip
    assert cfg.store_url == str(tmp_path / "from-env.db")
    assert cfg.partners[1].resolved_env() == {"DB_PASSWORD": PW, "LOG_LEVEL": "debug"}
    assert cfg.redact.patterns == ["acme-key=ACME-[0-9a-f]{32}"]
    assert cfg.humans.poll is False and isinstance(cfg.humans, HumanSettings)
    assert HumansFromOldPlace is HumanSettings and WebhooksFromOldPlace is WebhookSettings


def test_a_postgresql_url_without_password_is_fine() -> None:
    cfg = parse_config({"store": "postgresql://app@db.internal:5432/sharedctx"})
    assert cfg.store_url == "postgresql://app@db.internal:5432/sharedctx"
