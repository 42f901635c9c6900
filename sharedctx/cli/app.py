"""The `sharedctx` Typer app: the global `--config` option, and the commands, registered lazily.

Each command lives in a module of this package (one per command group). `COMMANDS` says which; a module is
imported, and its click command built (parameters, pydantic TypeAdapters and all), only when that command
runs or its own help is asked for. `sharedctx --help` lists every command from the modules' Typer
registrations (name and docstring) without building any of them (issue 13, "Fast CLI").

Help is plain click text (`rich_markup_mode=None`): typer's rich help renderer imports rich.markdown,
rich.traceback and pygments, ~40 ms CPU that `--help` alone would pay for formatting.
"""

from __future__ import annotations

import importlib
import inspect
from difflib import get_close_matches
from typing import Any

import typer
from typer import _click
from typer.core import TyperCommand, TyperGroup

from ._common import ConfigOpt, _state

# name -> (module in this package, attribute): a Typer holding the command `name`, or the group `name` itself.
# The order is the order of `sharedctx --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("init", "commands"),
    "record": ("journal", "commands"),
    "timeline": ("journal", "commands"),
    "search": ("journal", "commands"),
    "similar": ("journal", "commands"),
    "verify": ("journal", "commands"),
    "drain": ("outbox", "commands"),
    "worker": ("worker", "commands"),
    "demo": ("serve", "commands"),
    "serve": ("serve", "commands"),
    "mcp": ("serve", "commands"),
    "case": ("case", "case_app"),
    "outbox": ("outbox", "outbox_app"),
    "index": ("index", "index_app"),
    "backends": ("backends", "backends_app"),
}


def _typer_for(name: str) -> typer.Typer:
    module, attr = COMMANDS[name]
    found: typer.Typer = getattr(importlib.import_module(f"{__package__}.{module}"), attr)
    return found


def _command_info(sub: typer.Typer, name: str) -> Any:
    """The registration of command `name` in `sub`, or None when `sub` is the group `name` itself."""
    for info in sub.registered_commands:
        if (info.name or typer.main.get_command_name(info.callback.__name__)) == name:  # type: ignore[union-attr]
            return info
    return None


def build_command(name: str, group: TyperGroup) -> _click.Command:
    """The real click command (or group) `name`, built as typer builds a registered one."""
    sub = _typer_for(name)
    info = _command_info(sub, name)
    if info is not None:
        return typer.main.get_command_from_info(info, pretty_exceptions_short=True,
                                                rich_markup_mode=group.rich_markup_mode)
    return typer.main.get_group_from_info(typer.models.TyperInfo(sub, name=name), pretty_exceptions_short=True,
                                          rich_markup_mode=group.rich_markup_mode,
                                          suggest_commands=group.suggest_commands)


def listing_stub(name: str) -> _click.Command:
    """A parameterless stand-in, never invoked, carrying what the command list shows (help, short help, hidden,
    deprecated), taken from the registration as typer takes it: the list reads as if the command were built."""
    sub = _typer_for(name)
    info = _command_info(sub, name)
    if info is not None:
        help_text = inspect.cleandoc(info.help) if info.help is not None else inspect.getdoc(info.callback)
        return TyperCommand(name, help=help_text, short_help=info.short_help, hidden=info.hidden,
                              deprecated=info.deprecated)
    solved = typer.main.solve_typer_info_defaults(typer.models.TyperInfo(sub, name=name))
    return TyperCommand(name, help=solved.help, short_help=solved.short_help, hidden=solved.hidden,
                          deprecated=solved.deprecated)


class LazyGroup(TyperGroup):
    """The top-level group: subcommands come from `COMMANDS`, built on first use and then kept."""

    def list_commands(self, ctx: _click.Context) -> list[str]:
        return [*COMMANDS, *(n for n in self.commands if n not in COMMANDS)]

    def get_command(self, ctx: _click.Context, cmd_name: str) -> _click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self.commands[cmd_name] = build_command(cmd_name, self)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        """The command list from stand-ins: listing must not build every command's parameters."""
        stubs = {n: self.commands.get(n) or listing_stub(n) for n in self.list_commands(ctx)}
        rows = [(n, c) for n, c in stubs.items() if not c.hidden]
        if rows:
            limit = formatter.width - 6 - max(len(n) for n, _ in rows)
            with formatter.section("Commands"):
                formatter.write_dl([(n, c.get_short_help_str(limit)) for n, c in rows])

    def resolve_command(
        self, ctx: _click.Context, args: list[str]
    ) -> tuple[str | None, _click.Command | None, list[str]]:
        """typer suggests close names from the commands built so far; a typo is matched against all of them."""
        try:
            return super().resolve_command(ctx, args)
        except _click.exceptions.UsageError as exc:
            matches = get_close_matches(args[0], list(COMMANDS)) if args and self.suggest_commands else []
            if matches and "Did you mean" not in exc.message:
                exc.message = f"{exc.message.rstrip('.')}. Did you mean {', '.join(repr(m) for m in matches)}?"
            raise


app = typer.Typer(
    name="sharedctx",
    cls=LazyGroup,
    help="Shared, durable, searchable context for AI agents that work incidents together.\n\n"
    "Every command works in the current directory: with no sharedctx.toml, the journal is "
    ".sharedctx/sharedctx.db and cases are also written as Markdown under .sharedctx/cases/.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


@app.callback()
def _main(config: ConfigOpt = None) -> None:
    _state["config"] = config
