"""Round-trip latency of one partner call: our SDK beside the bare `mcp` SDK, per transport.

    .venv/bin/python bench/channel.py            # ~1-2 minutes
    .venv/bin/python bench/channel.py --quick    # fewer calls, ~30 s

Transports: in-process (direct function vs `Partner.call`), MCP in-memory, MCP stdio, MCP
Streamable HTTP, the plain HTTP API (ours vs a bare Starlette JSON endpoint), and A2A JSON-RPC
with streaming (ours vs an agent and client made only of the official `a2a-sdk` classes). The tool is the
same function everywhere; "bare" is FastMCP / Starlette and a raw `ClientSession` / httpx with
nothing of ours around them; "ours" is `Partner` served and `PartnerClient` calling. HTTP servers
run in their own processes so the client and server do not share a GIL.

    .venv/bin/python bench/channel.py --transports "MCP HTTP" "MCP HTTP json" "plain API"   # the HTTP modes

"MCP HTTP json" is the same server in JSON mode (`http_app(mcp_mode="json")`; bare: FastMCP with
`json_response=True, stateless_http=True`): stateless, one JSON answer per POST, no progress notifications.

Targets: ours <= 1.10x bare at p50 per transport; MCP HTTP <= 1.5x plain API at p50.
The bare SDK checks each structured result with `jsonschema.validate` twice (server, and client in
`ClientSession.call_tool`), re-checking the schema itself each time; ours validates with the pydantic
model instead, so on the MCP transports ours is far below bare, not just within 10% of it.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# bench/ holds an mcp.py: run as a script, this file's folder would shadow the `mcp` package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

import anyio  # noqa: E402
import httpx  # noqa: E402
from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import get_default_environment, stdio_client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.server.fastmcp import FastMCP  # noqa: E402
from mcp.shared.memory import create_connected_server_and_client_session  # noqa: E402

from sharedctx.channel import CapabilityInput, Finding, Partner, PartnerClient  # noqa: E402
from sharedctx.channel.net import free_port, wait_for_port  # noqa: E402
from sharedctx.config import PartnerSettings  # noqa: E402
from sharedctx.model import Evidence  # noqa: E402

ASK = CapabilityInput(case_id="01J0CASE", service="checkout", question="why are requests failing?")
ARGS = ASK.model_dump(mode="json", exclude_defaults=True)
ANSWER = Finding(
    summary="12 timeouts calling payments",
    confidence=0.8,
    evidence=[Evidence(type="log", source="loki", summary="upstream timeout", query='{app="checkout"}')],
    next_steps=["check the payments deploy"],
)


# -- the tool, and the two ways of serving it --------------------------------------------------------


async def analyse(inp: CapabilityInput) -> Finding:
    """The same work for every variant: build the finding."""
    return ANSWER.model_copy()


def ours() -> Partner:
    partner = Partner("telemetry")

    @partner.capability
    async def search_logs(inp: CapabilityInput) -> Finding:
        """Search the logs."""
        return await analyse(inp)

    return partner


def bare() -> FastMCP:
    server = FastMCP("telemetry", log_level="WARNING")

    @server.tool()
    async def search_logs(
        case_id: str,
        service: str = "",
        start: datetime | None = None,
        end: datetime | None = None,
        question: str = "",
        params: dict[str, Any] | None = None,
    ) -> Finding:
        """Search the logs."""
        return await analyse(CapabilityInput(case_id=case_id, service=service, question=question))

    return server


def bare_json() -> FastMCP:
    server = bare()
    server.settings.json_response = server.settings.stateless_http = True
    return server


def bare_api() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def endpoint(request: Request) -> JSONResponse:
        inp = CapabilityInput.model_validate_json(await request.body())
        return JSONResponse((await analyse(inp)).model_dump(mode="json"))

    return Starlette(routes=[Route("/v1/capabilities/search_logs", endpoint, methods=["POST"])])


def bare_a2a(port: int) -> Any:
    """An A2A agent made only of the official SDK's classes, answering with the same function."""
    from a2a.helpers import get_data_parts, new_data_part
    from a2a.server.agent_execution import AgentExecutor, RequestContext
    from a2a.server.events import EventQueue
    from a2a.server.request_handlers import DefaultRequestHandler
    from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
    from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
    from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill, Task, TaskState, TaskStatus
    from starlette.applications import Starlette

    class Executor(AgentExecutor):
        async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
            assert context.message is not None and context.task_id and context.context_id
            await event_queue.enqueue_event(Task(id=context.task_id, context_id=context.context_id,
                                                 status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED)))  # fmt: skip
            updater = TaskUpdater(event_queue, context.task_id, context.context_id)
            inp = CapabilityInput.model_validate(get_data_parts(context.message.parts)[0])
            finding = await analyse(inp)
            await updater.add_artifact([new_data_part(finding.model_dump(mode="json"))], name="finding")
            await updater.complete()

        async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
            pass

    card = AgentCard(
        name="bare", description="bare", version="1",
        supported_interfaces=[AgentInterface(url=f"http://127.0.0.1:{port}/a2a", protocol_binding="JSONRPC",
                                             protocol_version="1.0")],
        capabilities=AgentCapabilities(streaming=True),
        skills=[AgentSkill(id="search_logs", name="search_logs", description="d", tags=["t"])],
    )  # fmt: skip
    handler = DefaultRequestHandler(agent_executor=Executor(), task_store=InMemoryTaskStore(), agent_card=card)
    return Starlette(routes=create_agent_card_routes(card) + create_jsonrpc_routes(handler, "/a2a"))


def serve(kind: str, port: int) -> None:
    """Server side of the bench, run in a child process."""
    if kind == "ours-stdio":
        ours().run_stdio()
    elif kind == "bare-stdio":
        bare().run("stdio")
    else:
        import uvicorn

        app = {
            "ours-http": lambda: ours().http_app(),
            "ours-http-json": lambda: ours().http_app(mcp_mode="json"),
            "bare-http": lambda: bare().streamable_http_app(),
            "bare-http-json": lambda: bare_json().streamable_http_app(),
            "bare-a2a": lambda: bare_a2a(port),
        }.get(kind, bare_api)()
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# -- clients: each yields an async `call()` -------------------------------------------------------------

Call = Callable[[], Awaitable[Any]]


SERVER_PIDS: dict[str, int] = {}  # url -> pid of the server process, for CPU accounting


@contextmanager
def server_process(kind: str) -> Any:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--port", str(port)], cwd=ROOT)
    try:
        wait_for_port(port, proc, what=f"bench server {kind}")
        SERVER_PIDS[f"http://127.0.0.1:{port}"] = proc.pid
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def cpu_per_call(transports: list[str], calls: int) -> None:
    """CPU ms per call, server process and client process, at c=1: robust to other load on the machine."""
    print(f"\nCPU per call at c=1, ms ({calls} calls; server process + this client process; ours)")
    for transport in transports:
        if transport not in ("MCP HTTP", "MCP HTTP json", "plain API", "A2A"):
            continue
        before = set(SERVER_PIDS)
        async with client(transport, "ours") as call:
            pid = SERVER_PIDS[next(iter(set(SERVER_PIDS) - before))]
            for _ in range(30):
                await call()
            s0, c0 = cpu_seconds(pid), time.process_time()
            for _ in range(calls):
                await call()
            server, mine = (cpu_seconds(pid) - s0) * 1000 / calls, (time.process_time() - c0) * 1000 / calls
        print(f"  {transport:<14} server {server:6.2f}   client {mine:6.2f}   total {server + mine:6.2f}")


def stdio_command(kind: str) -> list[str]:
    return [sys.executable, __file__, "--serve", kind]


@asynccontextmanager
async def raw_session(read: Any, write: Any) -> AsyncIterator[ClientSession]:
    async with ClientSession(read, write) as session:
        await session.initialize()
        yield session


@asynccontextmanager
async def client(transport: str, side: str) -> AsyncIterator[Call]:
    """A ready-to-call client for one transport and side ("ours" or "bare")."""
    async with AsyncExitStack() as stack:
        call: Call
        if transport == "in-process":
            if side == "ours":
                partner = ours()
                call = lambda: partner.call("search_logs", ASK)  # noqa: E731
            else:
                call = lambda: analyse(ASK)  # noqa: E731
        elif transport == "plain API":
            if side == "ours":
                url = stack.enter_context(server_process("ours-http"))
                settings = PartnerSettings(name="t", transport="api", url=url)
                c = await stack.enter_async_context(PartnerClient(settings))
                call = lambda: c.call("search_logs", ASK)  # noqa: E731
            else:
                url = stack.enter_context(server_process("bare-api"))
                http = await stack.enter_async_context(httpx.AsyncClient(base_url=url))

                async def call() -> Any:
                    resp = await http.post("/v1/capabilities/search_logs", content=ASK.model_dump_json())
                    return resp.json()

        elif transport == "A2A":
            if side == "ours":
                url = stack.enter_context(server_process("ours-http"))
                c = await stack.enter_async_context(PartnerClient(PartnerSettings(name="t", transport="a2a", url=url)))
                call = lambda: c.call("search_logs", ASK)  # noqa: E731
            else:
                call = await bare_a2a_client(stack)
        elif side == "ours":
            if transport == "MCP in-memory":
                session = await stack.enter_async_context(create_connected_server_and_client_session(ours().mcp()))
                c = PartnerClient.over_session("t", session)
            else:
                if transport == "MCP stdio":
                    env = {**get_default_environment(), "PYTHONPATH": str(ROOT)}
                    settings = PartnerSettings(name="t", command=stdio_command("ours-stdio"), env=env)
                else:
                    url = stack.enter_context(server_process("ours-http-json" if "json" in transport else "ours-http"))
                    settings = PartnerSettings(name="t", transport="http", url=f"{url}/mcp")
                c = await stack.enter_async_context(PartnerClient(settings))
            call = lambda: c.call("search_logs", ASK)  # noqa: E731
        else:
            if transport == "MCP in-memory":
                session = await stack.enter_async_context(create_connected_server_and_client_session(bare()))
            elif transport == "MCP stdio":
                cmd = stdio_command("bare-stdio")
                params = StdioServerParameters(command=cmd[0], args=cmd[1:], env=get_default_environment())
                read, write = await stack.enter_async_context(stdio_client(params))
                session = await stack.enter_async_context(raw_session(read, write))
            else:
                url = stack.enter_context(server_process("bare-http-json" if "json" in transport else "bare-http"))
                read, write, _ = await stack.enter_async_context(streamable_http_client(f"{url}/mcp"))
                session = await stack.enter_async_context(raw_session(read, write))
            call = lambda: session.call_tool("search_logs", ARGS)  # noqa: E731
        yield call


async def bare_a2a_client(stack: AsyncExitStack) -> Call:
    """The official SDK's client, streaming, against the SDK-only agent: what A2A costs with nothing of ours."""
    import uuid

    from a2a.client import ClientConfig, create_client
    from a2a.helpers import new_data_part
    from a2a.types import Message, Role, SendMessageRequest

    url = stack.enter_context(server_process("bare-a2a"))
    http = await stack.enter_async_context(httpx.AsyncClient())
    a2a = await create_client(url, ClientConfig(streaming=True, httpx_client=http))
    stack.push_async_callback(a2a.close)

    async def call() -> Any:
        msg = Message(message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=[new_data_part(ARGS)])
        return [e async for e in a2a.send_message(SendMessageRequest(message=msg))]

    return call


# -- measuring -----------------------------------------------------------------------------------------


async def measure(call: Call, calls: int, concurrency: int) -> list[float]:
    """Latency (ms) of each of `calls` calls, `concurrency` of them in flight at a time."""
    for _ in range(min(30, calls)):  # warm caches, schemas, connections
        await call()
    latencies: list[float] = []
    remaining = calls

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t0 = time.perf_counter()
            await call()
            latencies.append((time.perf_counter() - t0) * 1000)

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return latencies


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


TRANSPORTS = ["in-process", "MCP in-memory", "MCP stdio", "MCP HTTP", "MCP HTTP json", "plain API", "A2A"]


async def run(calls: int, concurrencies: list[int], transports: list[str]) -> None:
    results: dict[tuple[str, str, int], list[float]] = {}
    for transport in transports:
        for side in ("ours", "bare"):
            async with client(transport, side) as call:
                for conc in concurrencies:
                    results[transport, side, conc] = await measure(call, calls, conc)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nround trip of one partner call, ms ({calls} calls per cell, {os.cpu_count()} CPUs, "
          f"load average {load} at the end)\n")
    head = (
        f"{'transport':<14} {'conc':>4} | {'ours p50':>8} {'ours p99':>8} | "
        f"{'bare p50':>8} {'bare p99':>8} | ours/bare p50"
    )
    print(head)
    print("-" * len(head))
    for transport in transports:
        for conc in concurrencies:
            o, b = results[transport, "ours", conc], results[transport, "bare", conc]
            ratio = pct(o, 50) / pct(b, 50)
            flag = "" if ratio <= 1.10 or transport == "in-process" else "  (over 1.10)"
            print(
                f"{transport:<14} {conc:>4} | {pct(o, 50):8.3f} {pct(o, 99):8.3f} | "
                f"{pct(b, 50):8.3f} {pct(b, 99):8.3f} | {ratio:5.2f}x{flag}"
            )
    if {"MCP HTTP", "MCP HTTP json", "plain API"} <= set(transports):
        print("\nMCP Streamable HTTP, both modes, vs the plain HTTP API (ours; bare in brackets), same run")
        print(f"{'conc':>4} | {'API p50':>8} {'API p99':>8} | {'stream p50':>10} {'p99':>8} {'/API p50':>8} "
              f"{'/API p99':>8} | {'json p50':>8} {'p99':>8} {'/API p50':>8} {'/API p99':>8}")
        for conc in concurrencies:
            api = results["plain API", "ours", conc]
            cells = [f"{conc:>4} | {pct(api, 50):8.3f} {pct(api, 99):8.3f}"]
            for mode in ("MCP HTTP", "MCP HTTP json"):
                m, bm = results[mode, "ours", conc], results[mode, "bare", conc]
                bapi = results["plain API", "bare", conc]
                cells.append(f"{pct(m, 50):{10 if mode == 'MCP HTTP' else 8}.3f} {pct(m, 99):8.3f} "
                             f"{pct(m, 50) / pct(api, 50):7.2f}x {pct(m, 99) / pct(api, 99):7.2f}x "
                             f"({pct(bm, 50) / pct(bapi, 50):.2f}x)")
            print(" | ".join(cells))
    if not {"MCP HTTP", "plain API", "A2A"} <= set(transports):
        return
    print("\nMCP Streamable HTTP vs plain HTTP API at p50 (target <= 1.5x)")
    for conc in concurrencies:
        ours_ratio = pct(results["MCP HTTP", "ours", conc], 50) / pct(results["plain API", "ours", conc], 50)
        bare_ratio = pct(results["MCP HTTP", "bare", conc], 50) / pct(results["plain API", "bare", conc], 50)
        print(f"  conc {conc:>2}: ours MCP HTTP / ours API {ours_ratio:5.2f}x   bare: {bare_ratio:5.2f}x")
    print("\nA2A (JSON-RPC, streaming) vs plain HTTP API at p50")
    for conc in concurrencies:
        ours_ratio = pct(results["A2A", "ours", conc], 50) / pct(results["plain API", "ours", conc], 50)
        bare_ratio = pct(results["A2A", "bare", conc], 50) / pct(results["plain API", "bare", conc], 50)
        print(f"  conc {conc:>2}: ours A2A / ours API {ours_ratio:5.2f}x   bare: {bare_ratio:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer calls per cell (~30 s in all)")
    parser.add_argument("--calls", type=int, default=None, help="calls per cell (default 200, --quick 60)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--cpu", action="store_true", help="also CPU ms per call of the HTTP rows (load-robust)")
    parser.add_argument("--transports", nargs="+", default=TRANSPORTS, choices=TRANSPORTS, metavar="T",
                        help=f"which rows to measure (default all): {', '.join(TRANSPORTS)}")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    calls = args.calls or (60 if args.quick else 200)
    logging.disable(logging.ERROR)  # session teardown noise from the SDK, not results
    started = time.monotonic()
    anyio.run(run, calls, args.concurrency, args.transports)
    if args.cpu:
        anyio.run(cpu_per_call, args.transports, calls)
    print(f"\n(bench took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
