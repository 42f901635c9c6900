"""`sharedctx demo`: one sample alert through the whole seven-step flow, on this machine, offline.

The pieces are the real ones: the alert goes through the intake app (`server.build_app`, over an
in-process ASGI transport), the primary agent runs the state machine, and the telemetry partner is
a separate process speaking MCP (stdio, or Streamable HTTP on a free 127.0.0.1 port), reading the
bundled sample incident and writing its own entries into the same journal. The demo then sends
the `resolved` notification Alertmanager would send once the rollback has taken effect, and the
primary verifies and closes the case.

It works in the current directory like every other command: afterwards `sharedctx case list`,
`sharedctx timeline <id>` and `sharedctx search payments` show what it wrote. Run it again and a
new case is opened (the previous one is resolved); an earlier run that was interrupted leaves an
open case, which the next run's alert finds and finishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
from rich.console import Console
from rich.table import Table

from ..channel.net import free_port, wait_for_port
from ..config import PartnerSettings
from ..context import SharedContext
from ..intake_guard import NO_AUTH
from ..model import CaseStatus, Entry, format_ts, utcnow
from ..server import Dispatcher, build_app
from .primary import PrimaryAgent

__all__ = ["DemoResult", "demo_payload", "matrix_demo_config", "run_demo"]

DEMO_FINGERPRINT = "5ac0ffee00c0ffee"
STEP_LABELS = {
    "alert": "1 alert", "triage": "2 triage", "consult": "3 call partner", "progress": "4 partner working",
    "finding": "4 partner finding", "partner-failed": "4 partner failed", "correlate": "5 correlate",
    "remediate": "5 remediate", "handoff": "6 record handoff", "verify": "7 verify", "close": "7 close",
    "awaiting-recovery": "· waiting", "closed": "· done", "monitoring": "· monitoring",
}  # fmt: skip


@dataclass
class DemoResult:
    case_id: str
    status: str
    entries: list[Entry]
    markdown: Path | None
    seconds: float
    steps: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        authors = {e.author.kind for e in self.entries}
        return self.status == CaseStatus.RESOLVED.value and {"primary", "partner"} <= authors


def demo_payload(status: Literal["firing", "resolved"], starts_at: str, ends_at: str | None = None) -> dict[str, Any]:
    """An Alertmanager v4 webhook body, as Prometheus + Alertmanager would send it for the sample incident."""
    labels = {"alertname": "CheckoutHighErrorRate", "service": "checkout", "severity": "critical", "team": "payments"}
    expr = 'sum(rate(http_requests_total{service="checkout",code=~"5.."}[1m])) / sum(rate(http_requests_total{service="checkout"}[1m])) > 0.05'  # noqa: E501
    alert = {
        "status": status,
        "labels": labels,
        "annotations": {
            "summary": "Checkout 5xx ratio above 5%",
            "description": "More than 5% of checkout requests have failed for 2 minutes.",
        },
        "startsAt": starts_at,
        "endsAt": ends_at or "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.demo:9090/graph?g0.expr=" + httpx.QueryParams({"x": expr})["x"],
        "fingerprint": DEMO_FINGERPRINT,
    }
    return {
        "version": "4", "groupKey": '{}:{alertname="CheckoutHighErrorRate"}', "truncatedAlerts": 0,
        "status": status, "receiver": "sharedctx", "groupLabels": {"alertname": "CheckoutHighErrorRate"},
        "commonLabels": labels, "commonAnnotations": alert["annotations"], "externalURL": "http://alertmanager.demo:9093",
        "alerts": [alert],
    }  # fmt: skip



def partner_command(transport: str, config: Path | None, extra: list[str] | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "sharedctx.agents.partner", "--transport", transport]
    if config is not None:
        cmd += ["--config", str(config.resolve())]
    return cmd + (extra or [])


@contextlib.asynccontextmanager
async def http_partner(config: Path | None, console: Console, timeout: float = 20) -> AsyncIterator[str]:
    """The partner's HTTP server as a subprocess on a free port; yields its MCP URL, stops it after."""
    port = free_port()
    proc = subprocess.Popen(partner_command("http", config, ["--port", str(port)]), stderr=subprocess.PIPE)
    try:
        await asyncio.to_thread(wait_for_port, port, proc, timeout=timeout, what="the partner's HTTP server")
        console.print(f"[dim]partner: pid {proc.pid}, MCP over Streamable HTTP at http://127.0.0.1:{port}/mcp[/]")
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        if proc.poll() is None:
            proc.terminate()  # uvicorn shuts down gracefully; the partner then flushes its entries
            try:
                await asyncio.to_thread(proc.wait, 10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if proc.stderr:
            proc.stderr.close()


def _markdown_path(ctx: SharedContext, case_id: str) -> Path | None:
    for b in ctx.backends.values():
        root = getattr(b, "root", None)
        if getattr(b, "type", "") == "local" and isinstance(root, Path):
            return root / f"{case_id}.md"
    return None


def timeline_table(entries: list[Entry], title: str, width: int = 120) -> Table:
    t = Table(title=title, title_justify="left", show_lines=False)
    for col, w in (("#", 2), ("time", 8), ("author", 19), ("kind", 12)):
        t.add_column(col, no_wrap=True, min_width=w)
    t.add_column("title", overflow="ellipsis", no_wrap=True, max_width=max(30, width - 62))
    colours = {"primary": "cyan", "partner": "magenta", "system": "yellow", "human": "green"}
    for e in entries:
        c = colours.get(e.author.kind, "white")
        t.add_row(str(e.seq), format_ts(e.ts)[11:19], f"[{c}]{e.author}[/]", e.kind.value, e.title)
    return t


async def run_demo(
    ctx: SharedContext,
    *,
    transport: Literal["stdio", "http", "a2a"] = "stdio",
    config_path: Path | None = None,
    console: Console | None = None,
    partner_timeout: float = 20.0,
) -> DemoResult:
    """Run the flow and print it; returns what happened (the CLI turns `ok` into the exit code)."""
    out = console or Console()
    t0 = time.monotonic()

    def show(step: str, message: str) -> None:
        label = STEP_LABELS.get(step, step)
        colour = "red" if "failed" in step else "magenta" if step in ("progress", "finding") else "cyan"
        out.print(f"[dim]{time.monotonic() - t0:5.1f}s[/] [{colour}]{label:<18}[/] {message}", highlight=False)

    async with contextlib.AsyncExitStack() as stack:
        if transport in ("http", "a2a"):
            url = await stack.enter_async_context(http_partner(config_path, out))
            if transport == "a2a":  # the same partner server; the client discovers it from its Agent Card
                url = url.removesuffix("/mcp")
                out.print(f"[dim]partner: A2A agent, Agent Card at {url}/.well-known/agent-card.json[/]")
            settings = PartnerSettings(name="telemetry", transport=transport, url=url, timeout=partner_timeout)
        else:
            settings = PartnerSettings(name="telemetry", transport="stdio", timeout=partner_timeout,
                                       command=partner_command("stdio", config_path), env=_child_env())  # fmt: skip
            out.print("[dim]partner: a subprocess speaking MCP over stdio[/]")
        agent = PrimaryAgent([settings], on_event=show)
        dispatcher = Dispatcher(ctx, agent)
        app = build_app(ctx, dispatcher=dispatcher, auth=NO_AUTH)  # in-process only: nothing listens
        http = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sharedctx.demo")
        )
        starts = utcnow()
        resp = await http.post("/alerts/alertmanager", json=demo_payload("firing", format_ts(starts)))
        resp.raise_for_status()
        outcome = resp.json()["alerts"][0]
        case_id = outcome["case_id"]
        show("alert", f"POST /alerts/alertmanager → {resp.status_code}: case {case_id} ({outcome['action']})")
        await dispatcher.idle(timeout=4 * partner_timeout)
        ends = utcnow() + timedelta(seconds=1)
        show("monitoring", "the rollback took effect in the sample incident: Alertmanager sends `resolved`")
        resp = await http.post("/alerts/alertmanager",
                               json=demo_payload("resolved", format_ts(starts), format_ts(ends)))  # fmt: skip
        resp.raise_for_status()
        await dispatcher.idle(timeout=4 * partner_timeout)
    # The partner has exited (its last entries are written); deliver everything to the backends.
    await asyncio.to_thread(ctx.drain, 10)
    case = ctx.case(case_id)
    entries = case.timeline()
    md = _markdown_path(ctx, case_id)
    result = DemoResult(case_id=case_id, status=case.status.value, entries=entries,
                        markdown=md, seconds=time.monotonic() - t0)  # fmt: skip
    out.print()
    out.print(timeline_table(entries, f"{case.title} ({case_id}) — {result.status}", out.width))
    if md is not None and md.exists():
        try:
            shown = md.resolve().relative_to(Path.cwd().resolve())
        except ValueError:
            shown = md
        out.print(f"\nThe human-readable record: [bold]{shown}[/]")
    for name, bound in ctx.store.get_case(case_id).bindings.items():
        if getattr(ctx.backends.get(name), "type", "") == "matrix" and bound.get("url"):
            out.print(f"Watch it in Element: [bold]{bound['url']}[/]")
    chain = case.verify()
    out.print(f"Hash chain: {'intact' if chain.ok else 'BROKEN'} ({chain.entries} entries) · "
              f"{result.seconds:.1f}s · transport {transport}")  # fmt: skip
    out.print(f"Explore: [bold]sharedctx case list[/] · [bold]sharedctx timeline {case_id}[/] · "
              "[bold]sharedctx search payments[/]")  # fmt: skip
    return result


def _child_env() -> dict[str, str]:
    """What the stdio partner inherits beyond the MCP SDK's safe default set: where to find the journal."""
    keep = ("SHAREDCTX_CONFIG", "PYTHONPATH", "SHAREDCTX_SQLITE_SYNC", "VIRTUAL_ENV")
    return {k: os.environ[k] for k in keep if k in os.environ}


MATRIX_ENV = ("MATRIX_URL", "MATRIX_BOT_TOKEN", "MATRIX_ROOM_ID")


def matrix_demo_config(cwd: Path, env: dict[str, str] | None = None) -> Path | None:
    """With `MATRIX_URL`, `MATRIX_BOT_TOKEN` and `MATRIX_ROOM_ID` set (and no config file in use), write
    `.sharedctx/demo-matrix.toml`: the default journal and cases folder plus a `matrix` backend, so a person
    can watch the case unfold in Element. A file, not an in-memory tweak, because the partner is another
    process recording into the same journal and must deliver to the same backends. None without the env."""
    env = dict(os.environ if env is None else env)
    if not all(env.get(k) for k in MATRIX_ENV):
        return None
    import json

    folder = cwd / ".sharedctx"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "demo-matrix.toml"
    path.write_text(
        "# written by `sharedctx demo` because MATRIX_URL, MATRIX_BOT_TOKEN and MATRIX_ROOM_ID are set\n"
        f"store = {json.dumps(str(folder / 'sharedctx.db'))}\n\n"
        f"[[backends]]\ntype = \"local\"\npath = {json.dumps(str(folder / 'cases'))}\n\n"
        f"[[backends]]\ntype = \"matrix\"\nhomeserver = {json.dumps(env['MATRIX_URL'])}\n"
        f"room_id = {json.dumps(env['MATRIX_ROOM_ID'])}\ntoken = \"env:MATRIX_BOT_TOKEN\"\n",
        encoding="utf-8")
    return path
