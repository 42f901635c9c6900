"""The shared context as an MCP server, for agents this project did not write.

    sharedctx mcp --as triage                       # stdio, identity from config
    POST /mcp  (Streamable HTTP on `sharedctx serve`, `Authorization: Bearer <token>`)

Every MCP import of the project lives in this package (and `sharedctx.channel`). Tools are thin:
they resolve the caller's identity, call the library (`SharedContext`, `Case`, `sharedctx.access.Access`,
`sharedctx.decisions`) off the event loop, and shape typed outputs. Three things hold for *every*
response, so no tool can forget them:

* **Identity** — resolved once per call by `identity_resolver(request)` (the HTTP request with the
  identity the bearer middleware put in its scope, or None over stdio/in-memory) and never taken
  from arguments: `record_entry` has no `author` parameter.
* **Redaction** — every tool result is built by one function, `SharedContextMCP.tool_result`: it
  redacts the *structured* result value by value, then renders the text content from that redacted
  value (never from the raw result). Resource contents are built the same way (`render`); error
  texts pass the `Redactor` too. All this after the store already redacted entries on the way in.
* **Errors** — library exceptions become tool errors whose text starts with an HTTP-like status:
  `400 Invalid input`, `401 Unauthorized`, `403 Forbidden`, `404 Not Found`, `413 Payload Too
  Large`, `429 Too Many Requests`. An unknown tool is a JSON-RPC error (-32602), as the MCP spec
  says; resource reads fail with JSON-RPC errors carrying the same texts. See docs/mcp.md.

Untrusted text (humans, partners, external alert payloads) is fenced in
`<untrusted-content source="…">…</untrusted-content>` and every entry says its `provenance`.

The package, along its seams:

    views.py       typed inputs and outputs, and the one conversion of cases/entries into them
    server.py      `SharedContextMCP`: identity per call, the error vocabulary, `tool_result`
    tools.py       `build_mcp_server`: the tools and the `case://` resource, thin over the Python API
    identities.py  who is calling: one fixed identity (stdio, in-memory) or a bearer token (HTTP)
    transports.py  stdio, the Streamable HTTP mount for `sharedctx serve`, a standalone app
"""

from __future__ import annotations

from .identities import IDENTITY_SCOPE_KEY, BearerAuth, IdentityResolver, fixed_identity, scope_identity
from .server import MAX_ARGUMENT_BYTES, SharedContextMCP, error_text
from .tools import build_mcp_server
from .transports import mcp_http_app, mcp_mount, run_stdio
from .views import (
    CaseOut,
    DecisionOut,
    EntryOut,
    HandoffOut,
    InviteOut,
    RecordOut,
    SearchHit,
    SearchOut,
    SimilarCase,
    SimilarOut,
    TimelineOut,
    case_out,
    entry_out,
)

__all__ = [
    "IDENTITY_SCOPE_KEY", "MAX_ARGUMENT_BYTES", "BearerAuth", "CaseOut", "DecisionOut", "EntryOut", "HandoffOut",
    "IdentityResolver", "InviteOut", "RecordOut", "SearchHit", "SearchOut", "SharedContextMCP", "SimilarCase",
    "SimilarOut", "TimelineOut", "build_mcp_server", "case_out", "entry_out", "error_text", "fixed_identity",
    "mcp_http_app", "mcp_mount", "run_stdio", "scope_identity",
]  # fmt: skip
