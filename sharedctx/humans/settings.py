"""`[humans]` in sharedctx.toml, typed: mirroring, polling, the timeout policy's defaults, who may decide.

Validated when first used, with errors that name the key (`humans.allow.pagerduty: ...`) like the rest of
the config, so a typo switches nothing off silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..config import Config, Secret
from ..errors import ConfigError


# ---- settings --------------------------------------------------------------------------------------
class WebhookSettings(BaseModel):
    """`[humans.webhooks.<backend name>]`: how to check that a webhook really comes from the service."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    secret: Secret = Field(description='"env:NAME" reference to the shared secret set in the service')
    max_age: float = Field(300.0, gt=0, description="seconds a signed timestamp may be old (replays)")

    @field_validator("secret", mode="before")
    @classmethod
    def _secret(cls, v: Any) -> Any:
        return Secret(v) if isinstance(v, str) else v


class HumanSettings(BaseModel):
    """`[humans]` in sharedctx.toml (free-form in `Config.humans`, typed and validated here)."""

    model_config = ConfigDict(extra="forbid")
    mirror: bool = Field(True, description="copy human comments to the case's other backends")
    attribution: bool = Field(True, description="mirrored comments end with who wrote them, where, and a link")
    poll: bool = Field(True, description="read threads back periodically (the fallback when webhooks can't reach us)")
    poll_interval: float = Field(30.0, gt=0, description="seconds between read-backs of one case's threads")
    poll_resolved_for: float = Field(3600.0, ge=0, description="keep reading a resolved case back this long")
    decision_timeout: float = Field(3600.0, gt=0, description="default seconds a decision request waits")
    on_timeout: Literal["default", "escalate"] = "default"
    default: str = Field("reject", description="the choice taken on timeout with policy `default`")
    wait_interval: float = Field(0.5, gt=0, description="how often a waiting agent re-reads the journal")
    allow: dict[str, list[str]] = Field(default_factory=dict, description="backend name -> users who may decide")
    webhooks: dict[str, WebhookSettings] = Field(default_factory=dict, description="backend name -> webhook secret")


def human_settings(config: Config | Mapping[str, Any] | None) -> HumanSettings:
    """Validate `[humans]`; errors name the key (`humans.allow.pagerduty: ...`) like the rest of the config."""
    data = config.humans if isinstance(config, Config) else dict(config or {})
    try:
        return HumanSettings.model_validate(data)
    except ValidationError as exc:
        lines = ["invalid [humans] configuration:"]
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            lines.append(f"  humans.{loc}: " + ("unknown key" if err["type"] == "extra_forbidden" else err["msg"]))
        raise ConfigError("\n".join(lines)) from None
