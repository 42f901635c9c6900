"""The agents and the alert intake: `sharedctx demo`, `serve` and `mcp` (sharedctx/agents, sharedctx/server/)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from ..errors import SharedCtxError
from ._common import CONFIG_ENV, CONFIG_NAME, _state, context, err, escape, out

if TYPE_CHECKING:
    from ..config import McpHttpMode

commands = typer.Typer(rich_markup_mode=None)


@commands.command()
def demo(
    transport: Annotated[str, typer.Option(help="how the primary reaches the partner: stdio | http | a2a")] = "stdio",
) -> None:
    """Send a sample alert through the whole seven-step flow, with a real partner agent process.

    Works offline, in the current directory: afterwards `sharedctx case list` shows the case.
    """
    import asyncio

    from ..agents.demo import run_demo

    if transport not in ("stdio", "http", "a2a"):
        raise typer.BadParameter("use stdio, http or a2a", param_hint="--transport")
    config_path = _state["config"] or (Path(CONFIG_NAME) if Path(CONFIG_NAME).exists() else None)
    if config_path is None and not os.environ.get(CONFIG_ENV):
        from ..agents.demo import matrix_demo_config

        config_path = matrix_demo_config(Path.cwd())  # MATRIX_* set: post to that room too
        if config_path is not None:
            _state["config"] = config_path
            out.print(f"[dim]MATRIX_* is set: posting to room {os.environ['MATRIX_ROOM_ID']} ({config_path})[/]")
    with context(worker=True) as ctx:
        result = asyncio.run(run_demo(ctx, transport=transport, config_path=config_path, console=out))  # type: ignore[arg-type]
    if not result.ok:
        err.print(f"[red]the demo did not complete:[/] case {result.case_id} is {result.status}")
        raise typer.Exit(1)


@commands.command()
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
    from ..server import serve as run_server

    if mcp_mode not in (None, "stream", "json"):
        err.print(f"[bold red]error:[/] --mcp-mode must be 'stream' or 'json', not {escape(repr(mcp_mode))}",
                  highlight=False)
        raise typer.Exit(2)
    with context(worker=True) as ctx:
        run_server(ctx, host=host, port=port, act=act, mcp_mode=cast("McpHttpMode | None", mcp_mode),
                   say=lambda line: err.print(line, highlight=False, markup=False))


@commands.command("mcp")
def mcp_command(
    as_: Annotated[str | None, typer.Option("--as", help="the [[agents]] identity to act as (stdio)")] = None,
) -> None:
    """Serve the shared context as an MCP server over stdio, for an MCP host (Claude Desktop, Inspector).

    The identity comes from config: `--as NAME` picks one of `[[agents]]`; with none configured, the
    local operator acts as a primary agent. See docs/mcp.md.
    """
    from ..mcp_server import run_stdio

    with context(worker=False) as ctx:
        if ctx.config.worker.enabled:
            ctx.worker.start()
        try:
            run_stdio(ctx, as_)
        except SharedCtxError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(4) from None
