"""Redmine 5.x: a case is an issue, entries are notes (journals); polled, since Redmine 5 has no webhooks.
See `backend.py` for the mapping and the quirks it meets."""

from .backend import RedmineBackend, RedmineOptions

__all__ = ["RedmineBackend", "RedmineOptions"]
