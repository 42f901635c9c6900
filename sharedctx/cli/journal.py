"""The journal verbs at the top level: `record`, `timeline`, `search`, `similar`, `verify`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..errors import InvalidEntry
from ._common import (
    ENTRY_KINDS,
    JsonOpt,
    _read_body,
    context,
    emit_json,
    entry_table,
    err,
    escape,
    out,
    parse_since,
)

commands = typer.Typer(rich_markup_mode=None)


@commands.command()
def record(
    case_id: str,
    kind: Annotated[str, typer.Argument(help=", ".join(ENTRY_KINDS))],
    title: str,
    body: Annotated[str | None, typer.Argument(help="Markdown body")] = None,
    body_file: Annotated[Path | None, typer.Option(help="read the body from a file, or - for stdin")] = None,
    evidence: Annotated[
        list[str] | None, typer.Option(help='JSON, repeatable: {"type":"metric","source":"prometheus",...}')
    ] = None,
    author: Annotated[str | None, typer.Option(help="kind:name, e.g. primary:triage-bot")] = None,
    ref: Annotated[str | None, typer.Option(help="id of an earlier entry this one answers or corrects")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Append an entry to a case's journal. Durable when the command returns."""
    with context() as ctx:
        try:
            ev = [json.loads(e) for e in evidence or []]
        except json.JSONDecodeError as exc:
            raise InvalidEntry(f"--evidence is not valid JSON: {exc}") from None
        entry = ctx.find_case(case_id).record(
            kind, title, _read_body(body, body_file), evidence=ev, author=author, ref=ref
        )
        if as_json:
            emit_json(entry.model_dump(mode="json"))
        else:
            out.print(f"recorded #{entry.seq} {entry.kind.value} in {entry.case_id} ({entry.id})")


@commands.command()
def timeline(
    case_id: str,
    since: Annotated[int, typer.Option(help="only entries after this sequence number")] = 0,
    kind: Annotated[list[str] | None, typer.Option(help="only these kinds (repeatable)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print a case's entries in order."""
    with context() as ctx:
        case = ctx.find_case(case_id)
        entries = case.timeline(since=since, kinds=kind)
        if as_json:
            emit_json([e.model_dump(mode="json") for e in entries])
        else:
            out.print(entry_table(entries, title=f"{case.info.title} ({case.id})"))


@commands.command()
def search(
    text: Annotated[str, typer.Argument(help='words, "exact phrases" and filters: service:x kind:y author:human '
                                        "outcome:overridden|rejected|resolved|verified since:7d until:2026-01-31")]
    = "",
    service: Annotated[str | None, typer.Option()] = None,
    kind: Annotated[list[str] | None, typer.Option(help="entry kinds (repeatable)")] = None,
    author: Annotated[str | None, typer.Option(help="author kind: primary | partner | human | system")] = None,
    since: Annotated[str | None, typer.Option(help="30m, 2h, 7d, or an ISO time")] = None,
    limit: int = 20,
    as_json: JsonOpt = False,
) -> None:
    """Search every case's history: ranked, grouped by case, with highlights and why each matched."""

    from ..store.base import SearchFilters

    filters = SearchFilters(service=service, kinds=kind, author_kind=author, since=parse_since(since))
    with context() as ctx:
        result = ctx.search(text, filters, limit=limit)
        if as_json:
            emit_json(result.model_dump(mode="json"))
            return
        if result.notice:
            err.print(f"[yellow]note:[/] {escape(result.notice)}", highlight=False)
        for c in result.cases:
            out.print(f"[bold]{c.case_id}[/] {escape(c.service)} · {escape(c.title)} [dim]({c.status}, "
                      f"score {c.score:.2f})[/]", highlight=False)
            out.print(f"   [dim]why: {escape(c.why)}[/]", highlight=False)
            for h in c.hits:
                shown, pos = [], 0
                for a, b in h.spans:
                    shown.append(escape(h.text[pos:a]) + "[bold yellow]" + escape(h.text[a:b]) + "[/]")
                    pos = b
                shown.append(escape(h.text[pos:]))
                out.print(f"   #{h.seq} [cyan]{h.kind}[/] " + "".join(shown), highlight=False)
            if c.outcome and (c.outcome.worked or c.outcome.overridden or c.outcome.rejected):
                o = c.outcome
                for label, items in (("worked", o.worked[:1]), ("tried", o.tried[:2]),
                                     ("human overrode", o.overridden[:1]), ("human rejected", o.rejected[:1])):
                    for item in items:
                        out.print(f"   [green]{label}:[/] {escape(item)}", highlight=False)
        if not result.cases:
            out.print("no matches")


@commands.command()
def similar(case_id: str, limit: int = 5, as_json: JsonOpt = False) -> None:
    """Earlier cases like this one: what was tried, what worked, what a human overrode, time to resolve."""

    with context() as ctx:
        found = ctx.similar_cases(ctx.find_case(case_id).id, limit=limit)
        if as_json:
            emit_json([c.model_dump(mode="json") for c in found])
            return
        for c in found:
            out.print(f"[bold]{c.case_id}[/] {escape(c.summary)}", highlight=False)
            out.print(f"   [dim]why: {escape(c.why)}[/]", highlight=False)
        if not found:
            out.print("no similar earlier cases")



@commands.command()
def verify(case_id: Annotated[str | None, typer.Argument(help="a case; default: every case")] = None,
           against: Annotated[str | None, typer.Option("--against", help="compare with the copies this backend "
                                                       "holds (by name) instead of the local checks")] = None,
           as_json: JsonOpt = False) -> None:
    """Check the hash chains, each case's recorded head and the checkpoints: name the entry or case that breaks
    them (an edit, a reorder, a deleted entry, a truncated tail, a deleted case). Exit 5 if any does."""
    from ..verify import CHECKPOINTS

    with context() as ctx:
        reports = ctx.verify(ctx.find_case(case_id).id if case_id else None, against=against)
    if as_json:
        emit_json([r.model_dump(mode="json") for r in reports])
    else:
        where = f" against {escape(against)}" if against else ""
        for r in reports:
            if r.ok and r.case_id == CHECKPOINTS:
                out.print(f"[green]ok[/]   {r.entries} checkpoints of case heads agree with the journal",
                          highlight=False)
            elif r.ok:
                out.print(f"[green]ok[/]   {r.case_id}: {r.entries} entries, chain intact{where}", highlight=False)
            for issue in r.issues:
                at = f" entry #{issue.seq}" if issue.seq is not None else ""
                at += f" ({issue.entry_id})" if issue.entry_id else ""
                out.print(f"[red]FAIL[/] {r.case_id}{escape(at)}: {escape(issue.problem)}", highlight=False)
    if not all(r.ok for r in reports):
        raise typer.Exit(5)
