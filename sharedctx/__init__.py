"""sharedctx: shared, durable, searchable context for AI agents that work incidents together.

The public API is re-exported here; everything else is internal and may change.
"""

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
