"""Backends: where entries are delivered for humans to read. One module per target, one shape.

Adding a target = one module + one line in `BACKEND_TYPES`. Modules are imported on first use so a
process that only needs `local` never imports the HTTP connectors.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..config import BackendSettings
from ..errors import ConfigError
from .base import Backend, Hit, HumanItem, ReadBack, ThreadRef

if TYPE_CHECKING:  # httpx costs a CLI command ~15% of its start-up; only the HTTP connectors import it
    import httpx

    from ..store.base import RateLimits

BACKEND_TYPES: dict[str, str] = {
    "local": "sharedctx.backends.local:LocalBackend",
    "github": "sharedctx.backends.github:GitHubBackend",
    "pagerduty": "sharedctx.backends.pagerduty:PagerDutyBackend",
    "servicenow": "sharedctx.backends.servicenow:ServiceNowBackend",
    "jira": "sharedctx.backends.jira:JiraBackend",
    "matrix": "sharedctx.backends.matrix:MatrixBackend",
    "redmine": "sharedctx.backends.redmine:RedmineBackend",
    "slack": "sharedctx.backends.slack:SlackBackend",
}

__all__ = ["BACKEND_TYPES", "Backend", "Hit", "HumanItem", "ReadBack", "ThreadRef", "backend_class", "make_backend"]


def backend_class(type_name: str) -> Any:
    try:
        module_name, _, cls_name = BACKEND_TYPES[type_name].partition(":")
    except KeyError:
        raise ConfigError(
            f"backends: unknown type {type_name!r}; known types are {', '.join(sorted(BACKEND_TYPES))}"
        ) from None
    return getattr(importlib.import_module(module_name), cls_name)


def _option_error(name: str, err: Any, options_cls: Any) -> str:
    """`backends.<name>.<key>: what is wrong`. A whole-model check names its key as "<key>: message"."""
    loc = [str(p) for p in err["loc"]]
    msg = "unknown option" if err["type"] == "extra_forbidden" else str(err["msg"])
    if not loc and err["type"] == "value_error":
        msg = msg.removeprefix("Value error, ")
        key, sep, rest = msg.partition(": ")
        if sep and key in getattr(options_cls, "model_fields", {}):
            loc, msg = [key], rest
    return f"backends.{'.'.join([name, *loc])}: {msg}"


def make_backend(
    settings: BackendSettings,
    *,
    client: httpx.Client | None = None,
    base_dir: Path | None = None,
    limits: RateLimits | None = None,
) -> Backend:
    """Build a backend from its `[[backends]]` table; option errors name `backends.<name>.<key>`.

    `limits` (the store, as `SharedContext` passes it) makes a rate-limited backend (`shares_budgets`)
    count its budgets there, shared by every process on that store; without it they are per process."""
    cls = backend_class(settings.type)
    options_cls = getattr(cls, "Options", None)
    if options_cls is None:
        raise ConfigError(f"backend type {settings.type!r} declares no Options model")
    try:
        options = options_cls.model_validate(settings.options)
    except ValidationError as exc:
        details = "; ".join(_option_error(settings.name, e, options_cls) for e in exc.errors())
        raise ConfigError(f"invalid options for backend {settings.name!r} (type {settings.type}): {details}") from None
    if settings.type == "local":
        backend: Backend = cls(settings.name, options, base_dir=base_dir)
    elif limits is not None and getattr(cls, "shares_budgets", False):
        backend = cls(settings.name, options, client=client, limits=limits)
    else:
        backend = cls(settings.name, options, client=client)
    return backend

