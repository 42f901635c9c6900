"""The partner's MCP over HTTP in JSON mode (stateless, one JSON answer per POST) next to the streaming default.

The official MCP client (through `PartnerClient`) gets the same findings in both modes; in JSON mode progress is
not available, and that is visible: the capability's `progress(...)` is a no-op, `on_progress` is never called,
and `PartnerClient.json_mode` says why.
"""

from __future__ import annotations

import logging

import anyio
import httpx
import pytest

from sharedctx.channel import CapabilityInput, Finding, PartnerClient
from sharedctx.config import PartnerSettings
from sharedctx.errors import PartnerTimeout

from .conftest import serve_in_thread
from .partner_app import build

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def settings(url: str) -> PartnerSettings:
    return PartnerSettings(name="telemetry", transport="http", url=f"{url}/mcp", timeout=10)


@pytest.mark.parametrize("mode", ["stream", "json"])
async def test_the_official_client_gets_the_finding_in_both_modes(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    recorded: list[tuple[str, Finding, str | None]] = []
    partner = build(recorder=lambda case, finding, tp: recorded.append((case, finding, tp)))
    progress: list[float] = []
    caplog.set_level(logging.INFO, "sharedctx.channel")
    with serve_in_thread(partner.http_app(mcp_mode=mode)) as url:  # type: ignore[arg-type]
        async with PartnerClient(settings(url)) as client:
            found = await client.call("search_logs", CapabilityInput(case_id="C1", service="checkout"), traceparent=TP)
            slow = await client.call("analyze_spans", CapabilityInput(case_id="C1", params={"steps": 3, "delay": 0}),
                                     on_progress=lambda done, total, msg: progress.append(done))
            assert client.json_mode is (mode == "json")
    assert "trace 0af7651916cd43dd8448eb211c80319c, case C1" in found.summary
    assert slow.summary == "p99 latency doubled in 3 batches"
    if mode == "stream":
        assert progress == [0.0, 1.0, 2.0, 3.0]
    else:  # nothing before the answer in JSON mode: the callback is never called, and the log says why
        assert progress == []
        assert "serves MCP in JSON mode: no progress notifications" in caplog.text
    assert partner.wait_for_records(5)
    assert [(c, tp) for c, _, tp in recorded] == [("C1", TP), ("C1", recorded[1][2])]  # enrichment in both modes


async def test_json_mode_answers_each_post_with_one_json_body_and_no_session() -> None:
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "analyze_spans", "arguments": {"case_id": "C1", "params": {"steps": 2, "delay": 0}},
        "_meta": {"progressToken": "p1"}}}
    with serve_in_thread(build().http_app(mcp_mode="json")) as url:
        async with httpx.AsyncClient() as http:
            init = await http.post(f"{url}/mcp", json=INIT, headers=HEADERS)
            tool = await http.post(f"{url}/mcp", json=call, headers={**HEADERS, "mcp-protocol-version": "2025-06-18"})
    for resp in (init, tool):
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/json")
        assert "mcp-session-id" not in resp.headers  # stateless: any replica can take the next POST
    answer = tool.json()
    assert answer["id"] == 2 and answer["result"]["structuredContent"]["summary"] == "p99 latency doubled in 2 batches"


async def test_stream_mode_still_streams_progress_before_the_answer() -> None:
    with serve_in_thread(build().http_app()) as url:
        async with httpx.AsyncClient() as http:
            init = await http.post(f"{url}/mcp", json=INIT, headers=HEADERS)
    assert init.headers["content-type"].startswith("text/event-stream") and "mcp-session-id" in init.headers


async def test_the_plain_api_is_the_same_in_json_mode() -> None:
    with serve_in_thread(build().http_app(mcp_mode="json")) as url:
        settings_api = PartnerSettings(name="telemetry", transport="api", url=url, timeout=10)
        async with PartnerClient(settings_api) as client:
            found = await client.call("search_logs", CapabilityInput(case_id="C2", service="checkout"))
    assert "case C2" in found.summary


async def test_a_json_mode_partner_killed_mid_call_is_unavailable_not_a_hang() -> None:
    """kill -9 of the partner process while it computes: the JSON answer never comes, the call fails fast."""
    import os
    import signal

    from sharedctx.channel.net import free_port
    from sharedctx.errors import PartnerUnavailable

    from .conftest import partner_process

    port = free_port()
    with partner_process(port, mcp_mode="json") as proc:
        async with PartnerClient(PartnerSettings(name="telemetry", transport="http", url=f"http://127.0.0.1:{port}/mcp",
                                                 timeout=30)) as client:
            await client.call("search_logs", CapabilityInput(case_id="C1"))

            async def kill_soon() -> None:
                await anyio.sleep(0.5)
                os.kill(proc.pid, signal.SIGKILL)

            started = anyio.current_time()
            async with anyio.create_task_group() as tg:
                tg.start_soon(kill_soon)
                with pytest.raises(PartnerUnavailable):
                    await client.call("sync_scan", CapabilityInput(case_id="C1", params={"seconds": 20}))
            assert anyio.current_time() - started < 10  # failed on the cut connection, not at the 30 s timeout


async def test_json_mode_timeout_is_partner_timeout_and_the_next_call_works() -> None:
    with serve_in_thread(build().http_app(mcp_mode="json")) as url:
        async with PartnerClient(settings(url)) as client:
            with pytest.raises(PartnerTimeout, match=r"no answer within 0\.3s"):
                await client.call("analyze_spans", CapabilityInput(case_id="C1", params={"steps": 1, "delay": 3}),
                                  timeout=0.3)
            found = await client.call("search_logs", CapabilityInput(case_id="C3"))
    assert "case C3" in found.summary
