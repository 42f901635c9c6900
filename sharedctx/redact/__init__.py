"""Redaction: replace credentials with typed placeholders before text is stored, delivered, returned or logged.

Entries are immutable and hash-chained once recorded, so the only safe place to remove a secret is before
the store writes it. The store calls `Redactor.sanitize` on every model and value it persists (the one
choke point; see docs/redaction.md and docs/decisions.md), and the MCP server and the log filter use the
same `Redactor` on their way out.

    detectors/     where in one string a credential is, and its type (detect-secrets' formats + ours)
    decode.py      decoded views of a text (JSON-escaped, doubly escaped, percent-encoded, wrapped lines)
    redactor.py    `Redactor`: text, nested values and whole pydantic models
    logs.py        `RedactingFilter` and `install_log_redaction`
"""

from __future__ import annotations

from .detectors import PLACEHOLDER_PREFIX, Finding, classify_key, placeholder
from .logs import RedactingFilter, install_log_redaction
from .redactor import Redactor, default_redactor

__all__ = [
    "PLACEHOLDER_PREFIX",
    "Finding",
    "RedactingFilter",
    "Redactor",
    "classify_key",
    "default_redactor",
    "install_log_redaction",
    "placeholder",
]
