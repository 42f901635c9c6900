"""`sharedctx`: the command line, one verb per API call. Tables for people, `--json` for scripts.

Exit codes: 0 ok · 1 unexpected error · 2 usage error · 3 not found · 4 invalid input or config ·
5 `verify` found a broken chain · 6 store or backend failure · 7 not permitted (e.g. an agent deciding).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.console import Console
from rich.table import Table

from .errors import (
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
    from .config import McpHttpMode
    from .context import SharedContext
    from .model import Entry

# Copies of sharedctx.config.CONFIG_NAME / CONFIG_ENV and of the EntryKind values, which the option help and
# defaults need when the module loads; importing config or model for them would pull pydantic into `--help`.
# tests/unit/test_cli_startup.py keeps each copy equal to its source.
CONFIG_NAME = "sharedctx.toml"
CONFIG_ENV = "SHAREDCTX_CONFIG"
ENTRY_KINDS = ("alert", "triage", "finding", "action", "decision-request", "decision", "remediation",
               "verification", "resolution", "note", "handoff", "correction")

app = typer.Typer(
    name="sharedctx",
    help="Shared, durable, searchable context for AI agents that work incidents together.\n\n"
    "Every command works in the current directory: with no sharedctx.toml, the journal is "
    ".sharedctx/sharedctx.db and cases are also written as Markdown under .sharedctx/cases/.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)
case_app = typer.Typer(help="Open, list, show and resolve cases (incidents).", no_args_is_help=True)
outbox_app = typer.Typer(help="See and steer delivery to backends: status, dead letters, retries.")
app.add_typer(case_app, name="case")
app.add_typer(outbox_app, name="outbox")
index_app = typer.Typer(help="The full-text search index.", no_args_is_help=True)
app.add_typer(index_app, name="index")
backends_app = typer.Typer(help="The configured backends: list them, check their setup.", no_args_is_help=True)
app.add_typer(backends_app, name="backends")

out = Console()
err = Console(stderr=True)
EXIT = {CaseNotFound: 3, EntryNotFound: 3, InvalidEntry: 4, ConfigError: 4, StoreError: 6, BackendError: 6,
        PermissionDenied: 7}

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help=f"config file (default: $SHAREDCTX_CONFIG or ./{CONFIG_NAME})")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable JSON output")]
_state: dict[str, Any] = {"config": None}


@app.callback()
def _main(config: ConfigOpt = None) -> None:
    _state["config"] = config


@contextmanager
def context(*, worker: bool = False) -> Iterator[SharedContext]:
    """Open the context for one command, turning our errors into a message and an exit code."""
    from .context import SharedContext

    try:
        with SharedContext.open(_state["config"], worker=worker) as ctx:
            yield ctx
    except SharedCtxError as exc:
        code = next((c for cls, c in EXIT.items() if isinstance(exc, cls)), 1)
        err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
        raise typer.Exit(code) from None


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def parse_since(value: str | None) -> datetime | None:
    """`2h`, `30m`, `7d` ago, or an ISO-8601 time."""
    if not value:
        return None
    from .model import utcnow

    m = re.fullmatch(r"(\d+)\s*([smhdw])", value.strip())
    if m:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m.group(2)]
        return utcnow() - timedelta(**{unit: int(m.group(1))})
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{value!r}: use 30m, 2h, 7d, or an ISO time like 2026-11-25T10:00Z") from None
    return parsed


def entry_table(entries: list[Entry], title: str | None = None) -> Table:
    from .model import format_ts

    t = Table(title=title, show_lines=False, title_justify="left")
    for col in ("#", "time", "author", "kind", "title"):
        t.add_column(col, overflow="fold")
    for e in entries:
        t.add_row(str(e.seq), format_ts(e.ts)[11:19], f"{e.author.kind}:{e.author.name}", e.kind.value, e.title)
    return t


def _read_body(body: str | None, body_file: Path | None) -> str:
    if body_file is not None:
        raw = sys.stdin.buffer.read() if str(body_file) == "-" else body_file.read_bytes()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidEntry(f"--body-file is not valid UTF-8 (byte {exc.start}); nothing was recorded") from None
    return body or ""


# -- init --------------------------------------------------------------------------------------------
STARTER = """\
# sharedctx configuration. Every key is optional; these are the defaults.
# Secrets are never written here: use "env:VARIABLE" references.

# Where the journal lives: a SQLite file (default) or a PostgreSQL URL for several agents/workers.
store = ".sharedctx/sharedctx.db"
# store = "postgresql://sharedctx@db.internal:5432/sharedctx"

# Who this process writes as when an entry names no author.
[agent]
name = "operator"
kind = "human"          # primary | partner | human | system

# `sharedctx serve`, the alert intake (docs/intake.md). Listening beyond 127.0.0.1 needs credentials.
# [server]
# host = "0.0.0.0"
# port = 8765
# intake_token = "env:SHAREDCTX_INTAKE_TOKEN"   # Alertmanager: http_config.authorization.credentials_file
# investigation_lease = 15.0  # seconds; several `serve` replicas on one store: a survivor takes over after it
# drain_seconds = 10.0        # on SIGTERM, how long a step in flight may finish before another replica redoes it
# mcp_mode = "stream"     # /mcp: "stream" (SSE, progress) or "json" (stateless, one JSON answer per POST)

# Delivery to backends happens behind record(), in a background worker.
[worker]
enabled = true          # run the worker inside processes that open the context
max_attempts = 8        # then the delivery goes to dead letters (`sharedctx outbox list --dead`)
base_delay = 1.0        # seconds; doubles per attempt, with jitter; Retry-After wins when given
max_delay = 300.0
concurrency = 4         # deliveries in flight per backend
lease_seconds = 60.0    # how long a worker holds a claimed delivery (renewed while in flight);
                        # at least every backend's request `timeout`

# Where humans read cases. Add as many as you like; each gets every entry, in order.
[[backends]]
type = "local"          # Markdown files you can `cat`
path = ".sharedctx/cases"

# [[backends]]
# type = "github"
# repo = "acme/payments"
# token = "env:GITHUB_TOKEN"

# [[backends]]
# type = "redmine"                       # a case is an issue, entries are notes; polled (no webhooks in 5.x)
# url = "https://redmine.example.com"
# api_key = "env:REDMINE_API_KEY"        # its user needs: view/add issues, add notes, edit status
# project = "ops"                        # project identifier
# text_format = "textile"                # or "markdown": the server's Administration > Settings > Text formatting
# external_id_field = 1                  # optional: an issue custom field that holds the case id
# closed_status_id = 5                   # set on resolve (checked by `sharedctx backends check`)
# private_notes = false
# deciders = ["alice", "42"]             # Redmine logins or user ids whose /approve decides

# A thread per case in a Matrix (Element) room; people answer with /approve or a 👍 reaction.
# The bot must have joined the room; people with power level >= 50 (Moderator) may decide.
# [[backends]]
# type = "matrix"
# homeserver = "https://matrix.acme.org"
# room_id = "!incidents:acme.org"
# token = "env:MATRIX_BOT_TOKEN"
# decide_power_level = 50

# A thread per case in a Slack channel (use the channel ID); people answer with /approve or a 👍 reaction.
# Bot scopes: chat:write, channels:history (groups:history if private), reactions:read, users:read.
# Invite the bot to the channel. Events API (message.channels, reaction_added) -> POST /webhooks/slack
# on `sharedctx serve`, with [humans.webhooks.slack] secret = "env:SLACK_SIGNING_SECRET".
# [[backends]]
# type = "slack"
# channel = "C0123456789"
# token = "env:SLACK_BOT_TOKEN"
# deciders = ["U0123ABCD"]      # user IDs or user group IDs (S...) who may decide
# interactivity = false         # true: decision requests carry Approve/Reject buttons
# broadcast_resolution = false  # true: the resolution reply is also sent to the channel
"""


@app.command()
def init(
    path: Annotated[Path, typer.Option(help="where to write the config")] = Path(CONFIG_NAME),
    force: Annotated[bool, typer.Option(help="overwrite an existing file")] = False,
) -> None:
    """Write a commented starter **sharedctx.toml**."""
    if path.exists() and not force:
        err.print(f"[red]error:[/] {path} exists; use --force to overwrite it")
        raise typer.Exit(4)
    path.write_text(STARTER, encoding="utf-8")
    out.print(f"wrote {path}")


# -- cases -------------------------------------------------------------------------------------------
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
            out.print(f"{verb} [bold]{case.id}[/] {case.title}")


@case_app.command("list")
def case_list(
    status: Annotated[str | None, typer.Option(help="open | mitigated | resolved")] = None,
    service: Annotated[str | None, typer.Option()] = None,
    limit: int = 50,
    as_json: JsonOpt = False,
) -> None:
    """List cases, newest first."""
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
            t.add_row(c.id, c.status.value, c.severity, c.service, str(c.last_seq), c.title)
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
        out.print(f"[bold]{info.title}[/]  ({info.id})")
        out.print(f"status {info.status.value} · severity {info.severity} · service {info.service or '-'}")
        for name, thread in info.bindings.items():
            out.print(f"  {name}: {thread.get('url') or thread.get('id')}")
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
        out.print(f"resolved {case_id} (entry {entry.seq})")


# -- record / timeline / search / verify ---------------------------------------------------------------
@app.command()
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


@app.command()
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


@app.command()
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
    from rich.markup import escape

    from .store.base import SearchFilters

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


@app.command()
def similar(case_id: str, limit: int = 5, as_json: JsonOpt = False) -> None:
    """Earlier cases like this one: what was tried, what worked, what a human overrode, time to resolve."""
    from rich.markup import escape

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


@index_app.command("rebuild")
def index_rebuild() -> None:
    """Rebuild the full-text index from the journal (after it was lost or corrupted), and the case vectors
    of the semantic layer when `sharedctx[semantic]` is installed."""
    from .search import semantic

    with context() as ctx:
        t0 = time.perf_counter()
        n = ctx.store.rebuild_index()
        out.print(f"rebuilt the search index over {n:,} entries in {time.perf_counter() - t0:.1f}s")
        if not semantic.enabled():
            return
        t1 = time.perf_counter()
        last = [t1]

        def progress(done: int, total: int) -> None:  # a line every few seconds: embedding 100k cases takes long
            now = time.perf_counter()
            if now - last[0] >= 5 or done >= total:
                last[0] = now
                rate = done / max(now - t1, 1e-9)
                left = (total - done) / max(rate, 1e-9)
                err.print(f"embedding cases: {done:,}/{total:,} ({rate:.0f}/s, ~{left:.0f}s left)")

        m = semantic.rebuild(ctx.store, progress)  # a missing model: SemanticUnavailable, said by context()
        out.print(f"rebuilt the semantic vectors of {m:,} cases ({semantic.MODEL_NAME}) in "
                  f"{time.perf_counter() - t1:.1f}s")


@app.command()
def verify(case_id: Annotated[str | None, typer.Argument(help="a case; default: every case")] = None,
           against: Annotated[str | None, typer.Option("--against", help="compare with the copies this backend "
                                                       "holds (by name) instead of the local checks")] = None,
           as_json: JsonOpt = False) -> None:
    """Check the hash chains, each case's recorded head and the checkpoints: name the entry or case that breaks
    them (an edit, a reorder, a deleted entry, a truncated tail, a deleted case). Exit 5 if any does."""
    from .verify import CHECKPOINTS

    with context() as ctx:
        reports = ctx.verify(ctx.find_case(case_id).id if case_id else None, against=against)
    if as_json:
        emit_json([r.model_dump(mode="json") for r in reports])
    else:
        where = f" against {against}" if against else ""
        for r in reports:
            if r.ok and r.case_id == CHECKPOINTS:
                out.print(f"[green]ok[/]   {r.entries} checkpoints of case heads agree with the journal",
                          highlight=False)
            elif r.ok:
                out.print(f"[green]ok[/]   {r.case_id}: {r.entries} entries, chain intact{where}", highlight=False)
            for issue in r.issues:
                at = f" entry #{issue.seq}" if issue.seq is not None else ""
                at += f" ({issue.entry_id})" if issue.entry_id else ""
                out.print(f"[red]FAIL[/] {r.case_id}{at}: {issue.problem}", highlight=False)
    if not all(r.ok for r in reports):
        raise typer.Exit(5)


# -- outbox / worker ----------------------------------------------------------------------------------
@outbox_app.command("status")
def outbox_status(as_json: JsonOpt = False) -> None:
    """Per backend: pending, held for a human decision, delivered, dead, and whether it is stopped (and why)."""
    states = ("pending", "held", "delivered", "dead")
    with context() as ctx:
        counts = ctx.store.outbox_counts()
        rows = []
        for name in ctx.backend_names:
            st = ctx.store.get_backend_state(name)
            c = counts.get(name, {})
            rows.append({"backend": name, **{k: c.get(k, 0) for k in states}, "state": st.state, "reason": st.reason})
    if as_json:
        emit_json(rows)
        return
    t = Table()
    for col in ("backend", "state", *states, "why"):
        t.add_column(col, overflow="fold")
    for r in rows:
        state = "[red]stopped[/]" if r["state"] == "stopped" else "[green]running[/]"
        t.add_row(str(r["backend"]), state, *(str(r[k]) for k in states), str(r["reason"] or ""))
    out.print(t)


@app.command()
def drain(
    timeout: Annotated[float, typer.Option(help="seconds to keep delivering before giving up")] = 60.0,
    as_json: JsonOpt = False,
) -> None:
    """Deliver everything due now, then say per backend what was delivered, held, dead or stopped.

    Exit 0 only when nothing deliverable is left; 6 when something is pending, dead or stopped."""
    with context(worker=False) as ctx:
        report = ctx.drain(timeout=timeout)
    if as_json:
        emit_json(report.model_dump(mode="json") | {"ok": bool(report)})
    else:
        t = Table()
        for col in ("backend", "state", "delivered", "pending", "held", "dead", "declined", "why"):
            t.add_column(col, overflow="fold")
        for b in report.backends:
            state = "[red]stopped[/]" if b.stopped else "[green]running[/]"
            t.add_row(b.backend, state, *(str(getattr(b, k)) for k in ("delivered", "pending", "held", "dead",
                                                                       "declined")), b.reason or "")
        out.print(t)
        if report.timed_out:
            err.print(f"[yellow]note:[/] gave up after {timeout:g}s with deliveries still due")
    if not report:
        raise typer.Exit(6)


@outbox_app.command("list")
def outbox_list(
    dead: Annotated[bool, typer.Option("--dead", help="only dead letters")] = False,
    backend: Annotated[str | None, typer.Option()] = None,
    limit: int = 100,
    as_json: JsonOpt = False,
) -> None:
    """List deliveries (pending by default; --dead for dead letters with their reasons)."""
    with context() as ctx:
        rows = ctx.store.list_deliveries(state="dead" if dead else "pending", backend=backend, limit=limit)
    if as_json:
        emit_json([d.model_dump(mode="json") for d in rows])
        return
    t = Table()
    for col in ("id", "backend", "case", "#", "attempts", "last error"):
        t.add_column(col, overflow="fold")
    for d in rows:
        t.add_row(str(d.id), d.backend, d.case_id, str(d.seq), str(d.attempts), d.last_error or "")
    out.print(t)


@outbox_app.command("retry")
def outbox_retry(
    backend: Annotated[str | None, typer.Option(help="only this backend (also restarts it if stopped)")] = None,
    delivery_id: Annotated[list[int] | None, typer.Option("--id", help="only these deliveries")] = None,
) -> None:
    """Requeue dead letters, and restart backends stopped by an auth failure."""
    with context() as ctx:
        n = ctx.store.requeue_dead(backend=backend, ids=delivery_id)
        restarted = []
        for name in [backend] if backend else ctx.backend_names:
            if ctx.store.get_backend_state(name).state == "stopped":
                ctx.store.set_backend_state(name, "running", None)
                restarted.append(name)
    out.print(f"requeued {n} dead deliveries" + (f"; restarted {', '.join(restarted)}" if restarted else ""))


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

    from .backends.base import Check, Checkable

    with context() as ctx:
        if name is not None and name not in ctx.backends:
            err.print(f"[bold red]error:[/] no backend named {name!r}; configured: {', '.join(ctx.backend_names)}")
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


@app.command()
def worker(
    once: Annotated[bool, typer.Option("--once", help="deliver what is due now, then exit")] = False,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="serve Prometheus /metrics on this port (no auth)")
    ] = None,
    metrics_host: Annotated[str, typer.Option("--metrics-host", help="address for --metrics-port")] = "127.0.0.1",
    drain_timeout: Annotated[
        float, typer.Option("--drain-timeout", help="on SIGTERM/Ctrl-C, seconds to let deliveries in flight finish")
    ] = 30.0,
) -> None:
    """Run the delivery worker in the foreground.

    SIGTERM or Ctrl-C drains: nothing new is claimed, deliveries in flight finish (up to --drain-timeout),
    every lease is given back, and the process exits 0. A second signal exits at once (what is still in
    flight is then reconciled by the next worker, as after a crash)."""
    with context(worker=False) as ctx:
        if once:
            n = ctx.worker.run_once()
            out.print(f"handled {n} deliveries")
            return
        from .observability import serve_metrics, setup_otlp

        if setup_otlp():
            err.print("exporting spans over OTLP (OTEL_EXPORTER_OTLP_ENDPOINT)")
        if metrics_port is not None:
            srv = serve_metrics(ctx.store, ctx.backend_names, metrics_host, metrics_port)
            err.print(f"metrics at http://{metrics_host}:{srv.server_port}/metrics")
        ctx.worker.on_event = lambda what, d, detail: err.print(  # plain: error texts are not rich markup
            f"{what:9} {d.backend} {d.case_id}#{d.seq} {detail}", markup=False, highlight=False)
        ctx.worker.start()
        from .humans import Poller, human_settings

        poller = Poller(ctx).start() if human_settings(ctx.config).poll else None  # human answers, read back
        if poller is not None:
            for b in ctx.backends.values():
                if hasattr(b, "wait_for_activity"):  # chat (Matrix): a person's answer wakes the poller at once
                    _wake_on_activity(b, poller)
        stopping = _drain_on_signals()
        err.print(f"delivering to {', '.join(ctx.backend_names)}; Ctrl-C or SIGTERM to stop")
        while not stopping.wait(1.0):
            pass
        err.print(f"stopping: letting deliveries in flight finish (up to {drain_timeout:g} s); "
                  "a second signal exits at once")
        if poller is not None:
            poller.stop()
        left = ctx.worker.stop(timeout=drain_timeout)
        if left:
            err.print(f"{left} deliveries still in flight after {drain_timeout:g} s: their leases run out on their "
                      "own and the next worker checks whether they landed before sending")
            raise typer.Exit(1)
        err.print(f"stopped: no delivery in flight, no lease held ({ctx.worker.delivered} deliveries, "
                  f"{ctx.worker.empty_claims} empty claims)")


def _drain_on_signals() -> threading.Event:
    """SIGTERM and SIGINT set the returned event (the worker drains); a second one exits the process at once.

    The exit is `os._exit`: no cleanup that could hang on a stuck request. Nothing is lost by it: a delivery
    cut off keeps `sent_possibly`, and the next claim looks for its copy before sending (`Worker._send`)."""
    import signal

    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if stopping.is_set():
            os.write(2, b"second signal: exiting now\n")
            os._exit(128 + signum)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stopping


def _wake_on_activity(backend: Any, poller: Any) -> None:
    """A daemon thread: long-poll the backend for people's activity and read every live case back when there
    is some. A failure waits and tries again; the poller's own interval still runs underneath."""
    from .errors import BackendError

    def loop() -> None:
        while True:
            try:
                if backend.wait_for_activity():
                    poller.poll_once()
            except BackendError as exc:
                err.print(f"{backend.name}: waiting for activity failed ({exc}); the poller's interval still runs")
                time.sleep(10)

    threading.Thread(target=loop, name=f"sharedctx-{backend.name}-sync", daemon=True).start()


# -- demo / serve (the agents and the alert intake: sharedctx/agents, sharedctx/server.py) -------------
@app.command()
def demo(
    transport: Annotated[str, typer.Option(help="how the primary reaches the partner: stdio | http | a2a")] = "stdio",
) -> None:
    """Send a sample alert through the whole seven-step flow, with a real partner agent process.

    Works offline, in the current directory: afterwards `sharedctx case list` shows the case.
    """
    import asyncio

    from .agents.demo import run_demo

    if transport not in ("stdio", "http", "a2a"):
        raise typer.BadParameter("use stdio, http or a2a", param_hint="--transport")
    config_path = _state["config"] or (Path(CONFIG_NAME) if Path(CONFIG_NAME).exists() else None)
    if config_path is None and not os.environ.get(CONFIG_ENV):
        from .agents.demo import matrix_demo_config

        config_path = matrix_demo_config(Path.cwd())  # MATRIX_* set: post to that room too
        if config_path is not None:
            _state["config"] = config_path
            out.print(f"[dim]MATRIX_* is set: posting to room {os.environ['MATRIX_ROOM_ID']} ({config_path})[/]")
    with context(worker=True) as ctx:
        result = asyncio.run(run_demo(ctx, transport=transport, config_path=config_path, console=out))  # type: ignore[arg-type]
    if not result.ok:
        err.print(f"[red]the demo did not complete:[/] case {result.case_id} is {result.status}")
        raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="default: [server] host, 127.0.0.1")] = None,
    port: Annotated[int | None, typer.Option(help="default: [server] port, 8765")] = None,
    act: Annotated[bool, typer.Option("--act", help="let runbooks act for real (default: dry run)")] = False,
    mcp_mode: Annotated[str | None, typer.Option(
        "--mcp-mode", help="/mcp answers: 'stream' (SSE, progress) or 'json' (stateless, no progress); "
        "default: [server] mcp_mode, stream")] = None,
) -> None:
    """Accept alerts (Alertmanager webhook, generic JSON) and run the primary agent on them.

    POST /alerts/alertmanager · POST /alerts · GET /healthz. Partners come from `[[partners]]`.
    Beyond loopback the intake needs `[server] intake_token` (or basic auth); see docs/intake.md.
    """
    from .server import serve as run_server

    if mcp_mode not in (None, "stream", "json"):
        err.print(f"[bold red]error:[/] --mcp-mode must be 'stream' or 'json', not {mcp_mode!r}")
        raise typer.Exit(2)
    with context(worker=True) as ctx:
        run_server(ctx, host=host, port=port, act=act, mcp_mode=cast("McpHttpMode | None", mcp_mode),
                   say=lambda line: err.print(line, highlight=False, markup=False))


@app.command("mcp")
def mcp_command(
    as_: Annotated[str | None, typer.Option("--as", help="the [[agents]] identity to act as (stdio)")] = None,
) -> None:
    """Serve the shared context as an MCP server over stdio, for an MCP host (Claude Desktop, Inspector).

    The identity comes from config: `--as NAME` picks one of `[[agents]]`; with none configured, the
    local operator acts as a primary agent. See docs/mcp.md.
    """
    from .mcp_server import run_stdio

    with context(worker=False) as ctx:
        if ctx.config.worker.enabled:
            ctx.worker.start()
        try:
            run_stdio(ctx, as_)
        except SharedCtxError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
            raise typer.Exit(4) from None


class _RedactOnFirstRecord(logging.Filter):
    """Log redaction that builds its redactor when the first record arrives, not at start-up.

    The redactor compiles detect-secrets' patterns (importing `requests` on the way): ~0.12 s that `--help`
    and `init`, which log nothing, must not pay (issue 13). Every record still passes the real
    `RedactingFilter` before any handler writes it, so the promise is unchanged.
    """

    def __init__(self) -> None:
        super().__init__()
        self._real: logging.Filter | None = None
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if self._real is None:
            with self._lock:
                if self._real is None:
                    from .redact import RedactingFilter

                    self._real = RedactingFilter()
        return bool(self._real.filter(record))


def install_lazy_log_redaction() -> None:
    """What `redact.install_log_redaction()` does (a filter on every root handler and on `lastResort`),
    with the redactor built on first use."""
    flt = _RedactOnFirstRecord()
    handlers = [*logging.getLogger().handlers, *([logging.lastResort] if logging.lastResort else [])]
    for h in handlers:
        h.addFilter(flt)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    install_lazy_log_redaction()  # nothing this process logs may carry a credential
    app()


if __name__ == "__main__":
    main()
