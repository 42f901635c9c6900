"""`sharedctx case ...`: open, list, show and resolve cases."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import JsonOpt, context, emit_json, entry_table, escape, out, row

case_app = typer.Typer(help="Open, list, show and resolve cases (incidents).", no_args_is_help=True,
                       rich_markup_mode=None)


@case_app.command("open")
def case_open(
    title: str,
    service: Annotated[str, typer.Option(help="the affected service")] = "",
    severity: Annotated[str, typer.Option(help="critical | warning | info")] = "warning",
    fingerprint: Annotated[str | None, typer.Option(help="dedupe key: an open case with it is reused")] = None,
    label: Annotated[list[str] | None, typer.Option(help="key=value, repeatable (e.g. github.issue=42)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Open a case (or find the open case with the same fingerprint)."""
    labels = dict(item.split("=", 1) for item in (label or []) if "=" in item)
    with context() as ctx:
        case = ctx.open_case(title, service=service, severity=severity, fingerprint=fingerprint, labels=labels)
        if as_json:
            emit_json({**case.info.model_dump(mode="json"), "created": case.created})
        else:
            verb = "opened" if case.created else "found open case"
            out.print(f"{verb} [bold]{case.id}[/] {escape(case.title)}", highlight=False)


@case_app.command("list")
def case_list(
    status: Annotated[str | None, typer.Option(help="open | mitigated | resolved")] = None,
    service: Annotated[str | None, typer.Option()] = None,
    limit: int = 50,
    as_json: JsonOpt = False,
) -> None:
    """List cases, newest first."""
    from rich.table import Table

    with context() as ctx:
        cases = ctx.cases(status=status, service=service, limit=limit)
        if as_json:
            emit_json([c.model_dump(mode="json") for c in cases])
            return
        t = Table()
        t.add_column("id", no_wrap=True)
        for col in ("status", "severity", "service", "entries", "title"):
            t.add_column(col, overflow="fold")
        for c in cases:
            row(t, c.id, c.status.value, c.severity, c.service, c.last_seq, c.title)
        out.print(t)


@case_app.command("show")
def case_show(case_id: str, as_json: JsonOpt = False) -> None:
    """Show a case: status, where it lives in each backend, and its timeline."""
    with context() as ctx:
        case = ctx.find_case(case_id)
        info, entries = case.info, case.timeline()
        if as_json:
            emit_json({"case": info.model_dump(mode="json"), "entries": [e.model_dump(mode="json") for e in entries]})
            return
        out.print(f"[bold]{escape(info.title)}[/]  ({info.id})", highlight=False)
        out.print(f"status {info.status.value} · severity {escape(info.severity)} · "
                  f"service {escape(info.service or '-')}", highlight=False)
        for name, thread in info.bindings.items():
            out.print(f"  {escape(name)}: {escape(str(thread.get('url') or thread.get('id')))}", highlight=False)
        out.print(entry_table(entries))


@case_app.command("resolve")
def case_resolve(
    case_id: str,
    summary: str,
    author: Annotated[str | None, typer.Option(help="kind:name, e.g. human:alice")] = None,
) -> None:
    """Record the resolution of a case; backends close their threads."""
    with context() as ctx:
        entry = ctx.find_case(case_id).resolve(summary, author=author)
        out.print(f"resolved {escape(case_id)} (entry {entry.seq})", highlight=False)
