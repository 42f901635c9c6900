"""Moved: the shared-context MCP server is the `sharedctx.mcp` package. This name keeps old imports working."""

from __future__ import annotations

from .mcp import *  # noqa: F403
from .mcp import __all__ as __all__
