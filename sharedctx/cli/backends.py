"""`sharedctx backends list|check`: the configured backends and their live set-up checks."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import JsonOpt, context, emit_json, err, out

backends_app = typer.Typer(help="The configured backends: list them, check their setup.", no_args_is_help=True,
                           rich_markup_mode=None)


@backends_app.command("list")
def backends_list(as_json: JsonOpt = False) -> None:
    """The configured backends, by name and type."""
    with context() as ctx:
        rows = [{"name": n, "type": b.type} for n, b in ctx.backends.items()]
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        out.print(f"{r['name']:20} {r['type']}", highlight=False)


@backends_app.command("check")
def backends_check(
    name: Annotated[str | None, typer.Argument(help="one backend; default: every configured backend")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify each backend's credentials, permissions and target against the live service, in plain words.

    Writes nothing people would see. Exit 6 if any check fails, so a bad token or a wrong project fails
    at set-up time, not in the middle of an incident.
    """
    from rich.markup import escape

    from ..backends.base import Check, Checkable

    with context() as ctx:
        if name is not None and name not in ctx.backends:
            err.print(f"[bold red]error:[/] no backend named {escape(repr(name))}; configured: "
                      f"{escape(', '.join(ctx.backend_names))}", highlight=False)
            raise typer.Exit(3)
        results: dict[str, list[Check]] = {}
        for n, b in ctx.backends.items():
            if name is not None and n != name:
                continue
            if isinstance(b, Checkable):
                results[n] = b.check()
            else:
                results[n] = [Check(what="setup", ok=True, detail=f"no live checks for type {b.type}")]
    if as_json:
        emit_json({n: [c.model_dump() for c in cs] for n, cs in results.items()})
    else:
        for n, cs in results.items():
            for c in cs:
                mark = "[green]ok[/]  " if c.ok else "[red]FAIL[/]"
                out.print(f"{mark} {n}: {c.what}: {escape(c.detail)}", highlight=False)
    if not all(c.ok for cs in results.values() for c in cs):
        raise typer.Exit(6)
