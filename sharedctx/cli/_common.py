"""What every command module shares: the consoles, the `--config`/`--json` options, opening the context.

Kept light on purpose (issue 13, "Fast CLI"): typer and the standard library only. rich loads when a command
first prints, and the context, store and models inside the command that uses them.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from ..errors import (
    BackendError,
    CaseNotFound,
    ConfigError,
    EntryNotFound,
    InvalidEntry,
    PermissionDenied,
    SharedCtxError,
    StoreError,
)

if TYPE_CHECKING:  # start-up is a promise (issue 13): the heavy modules load inside the commands that use them
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from ..context import SharedContext
    from ..model import Entry

# Copies of sharedctx.config.CONFIG_NAME / CONFIG_ENV and of the EntryKind values, which the option help and
# defaults need when the module loads; importing config or model for them would pull pydantic into `--help`.
# tests/unit/test_cli_startup.py keeps each copy equal to its source.
CONFIG_NAME = "sharedctx.toml"
CONFIG_ENV = "SHAREDCTX_CONFIG"
ENTRY_KINDS = ("alert", "triage", "finding", "action", "decision-request", "decision", "remediation",
               "verification", "resolution", "note", "handoff", "correction")


class _LazyConsole:
    """A rich Console made on first use: importing rich.console costs ~20 ms that `--help` never needs.

    The real Console writes to whatever sys.stdout/sys.stderr is at print time (it keeps no file of its own),
    so making it late changes nothing for CliRunner or redirected output."""

    def __init__(self, *, stderr: bool) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=self._stderr)
        return getattr(self._console, name)


out = cast("Console", _LazyConsole(stderr=False))
err = cast("Console", _LazyConsole(stderr=True))
EXIT = {CaseNotFound: 3, EntryNotFound: 3, InvalidEntry: 4, ConfigError: 4, StoreError: 6, BackendError: 6,
        PermissionDenied: 7}

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help=f"config file (default: $SHAREDCTX_CONFIG or ./{CONFIG_NAME})")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable JSON output")]
_state: dict[str, Any] = {"config": None}


@contextmanager
def context(*, worker: bool = False) -> Iterator[SharedContext]:
    """Open the context for one command, turning our errors into a message and an exit code."""
    from ..context import SharedContext

    try:
        with SharedContext.open(_state["config"], worker=worker) as ctx:
            yield ctx
    except SharedCtxError as exc:
        code = next((c for cls, c in EXIT.items() if isinstance(exc, cls)), 1)
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(code) from None


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def parse_since(value: str | None) -> datetime | None:
    """`2h`, `30m`, `7d` ago, or an ISO-8601 time."""
    if not value:
        return None
    from ..model import utcnow

    m = re.fullmatch(r"(\d+)\s*([smhdw])", value.strip())
    if m:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m.group(2)]
        return utcnow() - timedelta(**{unit: int(m.group(1))})
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{value!r}: use 30m, 2h, 7d, or an ISO time like 2026-11-25T10:00Z") from None
    return parsed


def text(value: object) -> Text:
    """A table cell or title shown as written: rich reads a plain str as markup, so a case title such as
    `disk full [/var]` would crash the command (closing tag with nothing open) and `[red]` would be styled.
    Everything a table shows from the journal, a backend or a person goes through here."""
    from rich.text import Text

    return Text(str(value))


def escape(value: str) -> str:
    """Text from the journal, a backend or a person inside a markup string (`rich.markup.escape`, loaded late)."""
    from rich.markup import escape as rich_escape

    return rich_escape(value)


def row(table: Table, *values: object) -> None:
    """A table row whose cells are all shown as written, except those the command styled itself (`Text`)."""
    from rich.text import Text

    table.add_row(*(v if isinstance(v, Text) else text(v) for v in values))


def entry_table(entries: list[Entry], title: str | None = None) -> Table:
    from rich.table import Table

    from ..model import format_ts

    t = Table(title=text(title) if title is not None else None, show_lines=False, title_justify="left")
    for col in ("#", "time", "author", "kind", "title"):
        t.add_column(col, overflow="fold")
    for e in entries:
        row(t, e.seq, format_ts(e.ts)[11:19], f"{e.author.kind}:{e.author.name}", e.kind.value, e.title)
    return t


def _read_body(body: str | None, body_file: Path | None) -> str:
    if body_file is not None:
        raw = sys.stdin.buffer.read() if str(body_file) == "-" else body_file.read_bytes()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidEntry(f"--body-file is not valid UTF-8 (byte {exc.start}); nothing was recorded") from None
    return body or ""

