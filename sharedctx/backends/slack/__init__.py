"""Slack connector: a case is a thread in a channel (`backend.py`); the Web API, its error table and pacing
(`api.py`); Block Kit rendering and the metadata copy (`render.py`); Events API read-back (`events.py`)."""

from .api import ERRORS, SlackOptions
from .backend import SlackBackend

__all__ = ["ERRORS", "SlackBackend", "SlackOptions"]
