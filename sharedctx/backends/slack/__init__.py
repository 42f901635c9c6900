"""Slack connector: a case is a thread in a channel (see `backend.py`), Events API read-back (`events.py`)."""

from .backend import ERRORS, SlackBackend, SlackOptions

__all__ = ["ERRORS", "SlackBackend", "SlackOptions"]
