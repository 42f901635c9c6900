"""`sharedctx`: the command line, one verb per API call. Tables for people, `--json` for scripts.

Exit codes: 0 ok · 1 unexpected error · 2 usage error · 3 not found · 4 invalid input or config ·
5 `verify` found a broken chain · 6 store or backend failure · 7 not permitted (e.g. an agent deciding).

Layout: `app` (the Typer app, commands registered lazily), `_common` (consoles, options, opening the
context), one module per command group (`case`, `journal`, `outbox`, `backends`, `index`, `worker`,
`serve`, `init`) and `logs` (log redaction). Importing this package loads typer and nothing of ours that
needs pydantic; a command's own imports happen when it runs (issue 13, "Fast CLI").
"""

from __future__ import annotations

import logging
from typing import Any

from ._common import CONFIG_ENV, CONFIG_NAME, ENTRY_KINDS
from .app import app
from .logs import _RedactOnFirstRecord, install_lazy_log_redaction

__all__ = ["CONFIG_ENV", "CONFIG_NAME", "ENTRY_KINDS", "STARTER", "_RedactOnFirstRecord", "app",
           "install_lazy_log_redaction", "main"]


def __getattr__(name: str) -> Any:
    """`STARTER` (the starter config `init` writes) lives with `init`; it is loaded when asked for."""
    if name == "STARTER":
        from .init import STARTER

        return STARTER
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    install_lazy_log_redaction()  # nothing this process logs may carry a credential
    app()
