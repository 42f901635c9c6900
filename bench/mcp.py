"""`record_entry` and `get_timeline` round trips over MCP stdio and Streamable HTTP, beside the Python API.

    .venv/bin/python bench/mcp.py            # ~1 minute
    .venv/bin/python bench/mcp.py --quick    # ~20 s

One journal (SQLite in a temp dir, one local backend, delivery worker off so only the call path is
measured), one case, one primary identity. Sequential calls from one client, p50/p99 per cell:

* python  `case.record(...)` / `case.timeline(since=…, limit=50)` in this process
* stdio   the official `mcp` client -> `sharedctx mcp --as bench` (a child process)
* http    the official `mcp` client -> uvicorn serving `mcp_http_app` in its own process, with a
          bearer token (so auth, redaction of the response and provenance are all in the path)
"""

from __future__ import annotations

import argparse
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
from mcp import ClientSession, StdioServerParameters  # noqa: E402
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


def serve(config: str, port: int) -> None:
    """Child process: the MCP endpoint alone, on 127.0.0.1:port."""
    import logging

    import uvicorn

    from sharedctx.context import SharedContext
    from sharedctx.mcp_server import mcp_http_app
    from sharedctx.redact import install_log_redaction

    logging.basicConfig(level=logging.WARNING)
    install_log_redaction()
    with SharedContext.open(config, worker=False) as ctx:
        uvicorn.run(mcp_http_app(ctx), host="127.0.0.1", port=port, log_level="warning")


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


@asynccontextmanager
async def http_session(config: Path) -> AsyncIterator[ClientSession]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), TOKEN_ENV: TOKEN}
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(config), "--port", str(port)], env=env)
    try:
        wait_for_port(port, proc, timeout=30, what="the MCP HTTP server")
        client = create_mcp_http_client(headers={"Authorization": f"Bearer {TOKEN}"})
        async with (
            client,
            streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=client) as (read, write, _),
            ClientSession(read, write) as s,
        ):
            await s.initialize()
            yield s
    finally:
        proc.terminate()
        proc.wait(10)


async def run(n: int) -> None:
    os.environ[TOKEN_ENV] = TOKEN
    with tempfile.TemporaryDirectory(prefix="sharedctx-bench-mcp-") as tmp:
        config = write_config(Path(tmp))
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
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    anyio.run(run, args.calls or (50 if args.quick else 300))


if __name__ == "__main__":
    main()
