"""Delivery to backends: `sharedctx outbox status|list|retry` and `sharedctx drain`."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import JsonOpt, context, emit_json, err, out, row

outbox_app = typer.Typer(help="See and steer delivery to backends: status, dead letters, retries.",
                         rich_markup_mode=None)
commands = typer.Typer(rich_markup_mode=None)


@outbox_app.command("status")
def outbox_status(as_json: JsonOpt = False) -> None:
    """Per backend: pending, held for a human decision, delivered, dead, and whether it is stopped (and why)."""
    from rich.table import Table
    from rich.text import Text

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
        state = Text("stopped", style="red") if r["state"] == "stopped" else Text("running", style="green")
        row(t, r["backend"], state, *(r[k] for k in states), r["reason"] or "")
    out.print(t)


@commands.command()
def drain(
    timeout: Annotated[float, typer.Option(help="seconds to keep delivering before giving up")] = 60.0,
    as_json: JsonOpt = False,
) -> None:
    """Deliver everything due now, then say per backend what was delivered, held, dead or stopped.

    Exit 0 only when nothing deliverable is left; 6 when something is pending, dead or stopped."""
    from rich.table import Table
    from rich.text import Text

    with context(worker=False) as ctx:
        report = ctx.drain(timeout=timeout)
    if as_json:
        emit_json(report.model_dump(mode="json") | {"ok": bool(report)})
    else:
        t = Table()
        for col in ("backend", "state", "delivered", "pending", "held", "dead", "declined", "why"):
            t.add_column(col, overflow="fold")
        for b in report.backends:
            state = Text("stopped", style="red") if b.stopped else Text("running", style="green")
            row(t, b.backend, state, *(getattr(b, k) for k in ("delivered", "pending", "held", "dead", "declined")),
                b.reason or "")
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
    from rich.table import Table

    with context() as ctx:
        rows = ctx.store.list_deliveries(state="dead" if dead else "pending", backend=backend, limit=limit)
    if as_json:
        emit_json([d.model_dump(mode="json") for d in rows])
        return
    t = Table()
    for col in ("id", "backend", "case", "#", "attempts", "last error"):
        t.add_column(col, overflow="fold")
    for d in rows:
        row(t, d.id, d.backend, d.case_id, d.seq, d.attempts, d.last_error or "")
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
