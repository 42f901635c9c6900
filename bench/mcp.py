"""`record_entry` and `get_timeline` round trips over MCP stdio and Streamable HTTP, beside the Python API.

    .venv/bin/python bench/mcp.py            # ~2 minutes
    .venv/bin/python bench/mcp.py --quick    # ~40 s
    .venv/bin/python bench/mcp.py --http-only --concurrency 1 8 32   # only the HTTP modes table

One journal (SQLite in a temp dir, one local backend, delivery worker off so only the call path is
measured), one case, one primary identity. Table 1, sequential calls from one client, p50/p99 per cell:

* python  `case.record(...)` / `case.timeline(since=…, limit=50)` in this process
* stdio   the official `mcp` client -> `sharedctx mcp --as bench` (a child process)
* http    the official `mcp` client -> uvicorn serving `mcp_http_app` in its own process, with a
          bearer token (so auth, redaction of the response and provenance are all in the path)

Table 2, the HTTP modes side by side at each concurrency (one client, c calls in flight), one server process
serving all three on one journal:

* plain   POST /plain/<tool> with a JSON body: the same tool functions, the same bearer auth and the same
          result builder (`SharedContextMCP.tool_result`, redaction included), with no MCP around them - a
          bench-only floor, since `sharedctx serve` has no REST API for these tools
* stream  /mcp in the default mode (sessions, SSE answers)
* json    /mcp-json in JSON mode (`[server] mcp_mode = "json"`: stateless, one JSON answer per POST)
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# this file is called mcp.py: run as a script, its folder would shadow the `mcp` package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

import anyio  # noqa: E402
from mcp import ClientSession, StdioServerParameters, types  # noqa: E402
from mcp.client.stdio import get_default_environment, stdio_client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.shared._httpx_utils import create_mcp_http_client  # noqa: E402

from bench._stats import Latency, fmt_ms, print_table  # noqa: E402
from sharedctx.channel.net import free_port, wait_for_port  # noqa: E402

TOKEN_ENV = "SCX_BENCH_TOKEN"
TOKEN = "scx-bench-0d9c8b7a6f5e4d3c"
BODY = "p99 latency up 8x on checkout since deploy 4411; error rate 12% (5xx from orders-db pool)"


def write_config(folder: Path) -> Path:
    path = folder / "sharedctx.toml"
    path.write_text(
        f'store = "{folder / "journal.db"}"\n\n[worker]\nenabled = false\n\n[[backends]]\ntype = "local"\n'
        f'path = "{folder / "cases"}"\n\n[[agents]]\nname = "bench"\nrole = "primary"\ntoken = "env:{TOKEN_ENV}"\n',
        encoding="utf-8",
    )
    return path


def plain_routes(ctx: Any) -> list[Any]:
    """POST /plain/{tool}: the MCP server's own tools and result builder over plain JSON (the bench's floor)."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from sharedctx.access import Access
    from sharedctx.errors import SharedCtxError
    from sharedctx.mcp.identities import scope_identity
    from sharedctx.mcp.server import _caller, error_text
    from sharedctx.mcp_server import build_mcp_server

    acc = Access(ctx.config, ctx.store)
    server = build_mcp_server(ctx, scope_identity, access=acc)

    async def endpoint(request: Request) -> JSONResponse:
        try:
            ident = acc.authenticate(request.headers.get("authorization"))
        except SharedCtxError as exc:
            return JSONResponse({"error": str(exc)}, status_code=401)
        token = _caller.set(ident)
        try:
            result = await server._tool_manager.call_tool(request.path_params["tool"], await request.json(),
                                                          context=server.get_context(), convert_result=False)
        except Exception as exc:
            return JSONResponse({"error": error_text(exc)}, status_code=400)
        finally:
            _caller.reset(token)
        return JSONResponse(server.tool_result(result).structuredContent)

    return [Route("/plain/{tool}", endpoint, methods=["POST"])]


def serve(config: str, port: int) -> None:
    """Child process: /mcp (stream), /mcp-json (JSON mode) and /plain/<tool>, on 127.0.0.1:port."""
    import contextlib
    import logging

    import uvicorn
    from starlette.applications import Starlette

    from sharedctx.context import SharedContext
    from sharedctx.mcp import mcp_mount
    from sharedctx.redact import install_log_redaction

    logging.basicConfig(level=logging.WARNING)
    install_log_redaction()
    with SharedContext.open(config, worker=False) as ctx:
        stream, stream_life = mcp_mount(ctx, "/mcp", mode="stream")
        json_mode, json_life = mcp_mount(ctx, "/mcp-json", mode="json")

        @contextlib.asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[None]:
            async with stream_life(app), json_life(app):
                yield

        app = Starlette(routes=[*stream, *json_mode, *plain_routes(ctx)], lifespan=lifespan)
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


async def timed(n: int, fn: Callable[[int], Awaitable[Any]]) -> Latency:
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        await fn(i)
        samples.append(time.perf_counter() - t0)
    return Latency.of(samples)


async def mcp_cells(session: ClientSession, n: int) -> tuple[Latency, Latency]:
    opened = await session.call_tool("open_case", {"title": "bench", "service": "checkout"})
    case_id = opened.structuredContent["id"]  # type: ignore[index]
    for i in range(10):  # warm up
        await session.call_tool("record_entry", {"case_id": case_id, "kind": "finding", "title": f"w{i}"})

    async def record(i: int) -> None:
        r = await session.call_tool("record_entry", {"case_id": case_id, "kind": "finding", "title": f"f{i}",
                                                     "body": BODY})  # fmt: skip
        assert not r.isError, r.content

    async def timeline(i: int) -> None:
        r = await session.call_tool("get_timeline", {"case_id": case_id, "since": i, "limit": 50})
        assert not r.isError and r.structuredContent["entries"], r.content  # type: ignore[index]

    return await timed(n, record), await timed(n, timeline)


async def python_cells(config: Path, n: int) -> tuple[Latency, Latency]:
    from sharedctx.context import SharedContext

    with SharedContext.open(config, worker=False) as ctx:
        case = ctx.open_case("bench python", service="checkout")
        for i in range(10):
            case.record("finding", f"w{i}", author="primary:bench")

        async def record(i: int) -> None:
            case.record("finding", f"f{i}", BODY, author="primary:bench")

        async def timeline(i: int) -> None:
            assert case.timeline(since=i, limit=50)

        return await timed(n, record), await timed(n, timeline)


@asynccontextmanager
async def stdio_session(config: Path) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "sharedctx.cli", "--config", str(config), "mcp", "--as", "bench"],
        env={**get_default_environment(), "PYTHONPATH": str(ROOT), TOKEN_ENV: TOKEN}, cwd=ROOT,
    )  # fmt: skip
    async with stdio_client(params) as (read, write), ClientSession(read, write) as s:
        await s.initialize()
        yield s


SERVER_PID = [0]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@asynccontextmanager
async def http_server(config: Path) -> AsyncIterator[str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), TOKEN_ENV: TOKEN}
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(config), "--port", str(port)], env=env)
    try:
        wait_for_port(port, proc, timeout=30, what="the MCP HTTP server")
        SERVER_PID[0] = proc.pid
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@asynccontextmanager
async def mcp_session(url: str) -> AsyncIterator[ClientSession]:
    client = create_mcp_http_client(headers={"Authorization": f"Bearer {TOKEN}"})
    async with (
        client,
        streamable_http_client(url, http_client=client) as (read, write, _),
        ClientSession(read, write) as s,
    ):
        await s.initialize()
        yield s


@asynccontextmanager
async def http_session(config: Path) -> AsyncIterator[ClientSession]:
    async with http_server(config) as base, mcp_session(f"{base}/mcp") as s:
        yield s


# -- table 2: plain HTTP vs MCP stream vs MCP JSON mode, at several concurrencies ---------------------------

Tool = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


@asynccontextmanager
async def http_tool(base: str, mode: str) -> AsyncIterator[Tool]:
    """`call(tool, args) -> structured result` over one of the three HTTP paths."""
    if mode == "plain":
        import httpx

        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"},
                                     limits=httpx.Limits(max_connections=64), timeout=60) as http:  # fmt: skip

            async def plain(tool: str, args: dict[str, Any]) -> dict[str, Any]:
                resp = await http.post(f"/plain/{tool}", json=args)
                assert resp.status_code == 200, resp.text
                data: dict[str, Any] = resp.json()
                return data

            yield plain
        return
    async with mcp_session(f"{base}/mcp" if mode == "stream" else f"{base}/mcp-json") as s:

        async def over_mcp(tool: str, args: dict[str, Any]) -> dict[str, Any]:
            # `send_request`, not `call_tool`: the latter re-checks every result with `jsonschema.validate`
            # (schema meta-check included: 25-40 ms of client CPU per call for these outputs), the same in
            # both modes and nothing to do with the transport; PartnerClient skips it the same way.
            request = types.ClientRequest(types.CallToolRequest(
                params=types.CallToolRequestParams(name=tool, arguments=args)))
            r = await s.send_request(request, types.CallToolResult)
            assert not r.isError and r.structuredContent is not None, r.content
            return r.structuredContent

        yield over_mcp


async def concurrent(n: int, conc: int, fn: Callable[[int], Awaitable[Any]]) -> Latency:
    """n calls, `conc` in flight at a time: the latency of each call."""
    samples: list[float] = []
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            t0 = time.perf_counter()
            await fn(i)
            samples.append(time.perf_counter() - t0)

    async with anyio.create_task_group() as tg:
        for _ in range(conc):
            tg.start_soon(worker)
    return Latency.of(samples)


HTTP_MODES = ["plain", "stream", "json"]


async def http_modes(config: Path, n: int, concurrencies: list[int]) -> None:
    cells: dict[tuple[str, str, int], Latency] = {}
    cpu: dict[tuple[str, str], tuple[float, float]] = {}  # (tool, mode) -> (server, client) CPU s per call
    async with http_server(config) as base:
        for mode in HTTP_MODES:
            async with http_tool(base, mode) as call:
                case_id = (await call("open_case", {"title": f"bench {mode}", "service": "checkout"}))["id"]
                for i in range(60):  # warm up, and give get_timeline pages to read
                    await call("record_entry", {"case_id": case_id, "kind": "finding", "title": f"w{i}", "body": BODY})

                async def record(i: int, call: Tool = call, case_id: str = case_id) -> None:
                    await call("record_entry", {"case_id": case_id, "kind": "finding", "title": f"f{i}",
                                                "body": BODY})  # fmt: skip

                async def timeline(i: int, call: Tool = call, case_id: str = case_id) -> None:
                    assert (await call("get_timeline", {"case_id": case_id, "since": i % 10, "limit": 50}))["entries"]

                for conc in concurrencies:
                    cells["record", mode, conc] = await concurrent(n, conc, record)
                    cells["timeline", mode, conc] = await concurrent(n, conc, timeline)
                for what, fn in (("record", record), ("timeline", timeline)):  # CPU per call at c=1: load-robust
                    s0, c0 = cpu_seconds(SERVER_PID[0]), time.process_time()
                    await concurrent(n, 1, fn)
                    cpu[what, mode] = ((cpu_seconds(SERVER_PID[0]) - s0) / n, (time.process_time() - c0) / n)
    rows = []
    for what in ("record", "timeline"):
        for conc in concurrencies:
            plain = cells[what, "plain", conc]
            row: list[Any] = [f"{what} c={conc}", fmt_ms(plain.p50), fmt_ms(plain.p99)]
            for mode in ("stream", "json"):
                c = cells[what, mode, conc]
                row += [fmt_ms(c.p50), fmt_ms(c.p99), f"{c.p50 / plain.p50:.2f}×", f"{c.p99 / plain.p99:.2f}×"]
            rows.append(row)
    print_table(
        f"sharedctx MCP over HTTP: plain JSON vs MCP stream vs MCP JSON mode ({n} calls per cell, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} at the end)",
        ["tool, concurrency", "plain p50", "plain p99", "stream p50", "stream p99", "p50/plain", "p99/plain",
         "json p50", "json p99", "p50/plain", "p99/plain"],
        rows,
        caption="plain = the same tools, auth and result builder over POST /plain/<tool> (bench-only floor). "
        "One server process, one client, c calls in flight. MCP calls use the official ClientSession's "
        "send_request (no per-call jsonschema check of the result on the client).",
    )
    cpu_rows = []
    for what in ("record", "timeline"):
        plain_total = sum(cpu[what, "plain"])
        cpu_rows.append([what] + [f"{cpu[what, m][0] * 1e3:.2f} + {cpu[what, m][1] * 1e3:.2f} = "
                                  f"{sum(cpu[what, m]) * 1e3:.2f} ({sum(cpu[what, m]) / plain_total:.2f}×)"
                                  for m in HTTP_MODES])
    print_table(f"CPU ms per call at c=1, server + client = total (ratio to plain); {n} calls per cell",
                ["tool", "plain", "MCP stream", "MCP JSON mode"], cpu_rows,
                caption="CPU time hardly depends on the other load on the machine, unlike latency.")


async def run(n: int, concurrencies: list[int], http_only: bool) -> None:
    os.environ[TOKEN_ENV] = TOKEN
    with tempfile.TemporaryDirectory(prefix="sharedctx-bench-mcp-") as tmp:
        config = write_config(Path(tmp))
        await http_modes(config, n, concurrencies)
        if http_only:
            return
        results = {"python (direct API)": await python_cells(config, n)}
        async with stdio_session(config) as s:
            results["MCP stdio"] = await mcp_cells(s, n)
        async with http_session(config) as s:
            results["MCP Streamable HTTP"] = await mcp_cells(s, n)
    base_rec, base_tl = results["python (direct API)"]
    rows = [
        [name, fmt_ms(rec.p50), fmt_ms(rec.p99), f"{rec.p50 / base_rec.p50:.0f}×",
         fmt_ms(tl.p50), fmt_ms(tl.p99), f"{tl.p50 / base_tl.p50:.0f}×"]
        for name, (rec, tl) in results.items()
    ]  # fmt: skip
    print_table(
        f"record_entry / get_timeline round trips ({n} sequential calls each, one client)",
        ["path", "record p50", "record p99", "vs API", "timeline p50", "timeline p99", "vs API"],
        rows,
        caption="timeline = 50 entries per page. Delivery worker off: only the call path is measured.",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="50 calls per cell instead of 300")
    parser.add_argument("--calls", type=int, default=None)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32], help="for the HTTP modes table")
    parser.add_argument("--http-only", action="store_true", help="only the HTTP modes table")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    logging.disable(logging.ERROR)  # session teardown noise from the SDK, not results
    anyio.run(run, args.calls or (50 if args.quick else 300), args.concurrency, args.http_only)


if __name__ == "__main__":
    main()
