"""`[humans]` in sharedctx.toml, typed: mirroring, polling, the timeout policy's defaults, who may decide.

The models live in `config.py` with every other section (typed when the config loads, so a typo fails the
load naming the key); they are re-exported here for the code and callers that import them from humans.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from ..config import Config, HumanSettings, WebhookSettings
from ..errors import ConfigError, format_validation_error

__all__ = ["HumanSettings", "WebhookSettings", "human_settings"]


def human_settings(config: Config | Mapping[str, Any] | None) -> HumanSettings:
    """`[humans]` of a loaded config (already checked), or a plain mapping validated with the same errors."""
    if isinstance(config, Config):
        return config.humans
    try:
        return HumanSettings.model_validate(dict(config or {}))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "invalid [humans] configuration:", prefix="humans")) from None
