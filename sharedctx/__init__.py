"""sharedctx: shared, durable, searchable context for AI agents that work incidents together.

The public API is re-exported here; everything else is internal and may change.

The names resolve lazily (PEP 562 module `__getattr__`): `import sharedctx` — and with it every
`sharedctx` command, `--help` included — must not pay for pydantic, httpx, the store and the backends
before a command actually needs them (issue 13, "Fast CLI"). `_EXPORTS` is the one place that says where
each public name lives; `from sharedctx import Case` works exactly as before.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time these come from __getattr__
    from .config import Config, load_config
    from .context import Case, SharedContext
    from .errors import (
        Ambiguous,
        AuthFailed,
        BackendError,
        CaseNotFound,
        ChainBroken,
        ConfigError,
        EntryNotFound,
        InvalidEntry,
        PartnerBadOutput,
        PartnerError,
        PartnerTimeout,
        PartnerUnavailable,
        PermissionDenied,
        Rejected,
        Retryable,
        SharedCtxError,
        StoreError,
        UnknownCapability,
    )
    from .model import Author, CaseRecord, CaseStatus, Entry, EntryKind, Evidence
    from .store.base import SearchFilters

_ERRORS = (
    "Ambiguous", "AuthFailed", "BackendError", "CaseNotFound", "ChainBroken", "ConfigError", "EntryNotFound",
    "InvalidEntry", "PartnerBadOutput", "PartnerError", "PartnerTimeout", "PartnerUnavailable",
    "PermissionDenied", "Rejected", "Retryable", "SharedCtxError", "StoreError", "UnknownCapability",
)
_EXPORTS: dict[str, str] = {
    "Config": ".config",
    "load_config": ".config",
    "Case": ".context",
    "SharedContext": ".context",
    **{name: ".errors" for name in _ERRORS},
    **{name: ".model" for name in ("Author", "CaseRecord", "CaseStatus", "Entry", "EntryKind", "Evidence")},
    "SearchFilters": ".store.base",
}

__all__ = [
    "Ambiguous",
    "AuthFailed",
    "Author",
    "BackendError",
    "Case",
    "CaseNotFound",
    "CaseRecord",
    "CaseStatus",
    "ChainBroken",
    "Config",
    "ConfigError",
    "Entry",
    "EntryKind",
    "EntryNotFound",
    "Evidence",
    "InvalidEntry",
    "PartnerBadOutput",
    "PartnerError",
    "PartnerTimeout",
    "PartnerUnavailable",
    "PermissionDenied",
    "Rejected",
    "Retryable",
    "SearchFilters",
    "SharedContext",
    "SharedCtxError",
    "StoreError",
    "UnknownCapability",
    "load_config",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Import the submodule that defines `name` on first use, and cache the value in this module."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later look-ups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
