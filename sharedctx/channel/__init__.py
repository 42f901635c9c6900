"""The direct channel between a primary agent and its partner agents (MCP or plain HTTP).

Partner side: `Partner` turns typed functions into an MCP server (stdio, Streamable HTTP) and a
plain JSON API. Primary side: `PartnerClient` calls them and returns typed `Finding`s.
"""

from ..errors import UnknownCapability  # defined with the other errors; importable from here too
from .client import PartnerClient, ask_all
from .models import CallContext, CapabilityInfo, CapabilityInput, Finding
from .partner import Partner, Progress

__all__ = [
    "CallContext",
    "CapabilityInfo",
    "CapabilityInput",
    "Finding",
    "Partner",
    "PartnerClient",
    "Progress",
    "UnknownCapability",
    "ask_all",
]
