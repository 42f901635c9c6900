"""`sharedctx serve`'s app: 202 at once, dedupe by fingerprint, the agent in the background, 4xx that explain."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from sharedctx.agents.demo import demo_payload
from sharedctx.agents.primary import PrimaryAgent
from sharedctx.context import SharedContext
from sharedctx.server import Dispatcher, build_app

pytestmark = pytest.mark.anyio
STARTS = "2026-01-01T10:00:00Z"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def dispatcher(ctx: SharedContext) -> Dispatcher:
    return Dispatcher(ctx, PrimaryAgent([]))  # no partners: the agent escalates, which is quick


@pytest.fixture
async def client(ctx: SharedContext, dispatcher: Dispatcher) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(ctx, dispatcher=dispatcher, max_alert_bytes=4096,
                    mounts=[Route("/mcp", lambda r: PlainTextResponse("mounted"))])  # fmt: skip
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c


async def post(client: httpx.AsyncClient, payload: Any, path: str = "/alerts/alertmanager") -> httpx.Response:
    return await client.post(path, content=json.dumps(payload), headers={"content-type": "application/json"})


async def test_a_firing_alert_opens_a_case_and_the_agent_investigates_it(
    ctx: SharedContext, client: httpx.AsyncClient, dispatcher: Dispatcher
) -> None:
    resp = await post(client, demo_payload("firing", STARTS))
    assert resp.status_code == 202
    [outcome] = resp.json()["alerts"]
    assert outcome["action"] == "opened"
    # the alert is recorded before the 202: durable even if the agent never runs
    assert [e.kind for e in ctx.case(outcome["case_id"]).timeline()][:1] == ["alert"]
    assert await dispatcher.idle(30)
    kinds = [e.kind.value for e in ctx.case(outcome["case_id"]).timeline()]
    assert kinds == ["alert", "triage", "finding", "decision-request", "handoff"]


async def test_the_same_notification_again_adds_nothing_and_a_new_firing_adds_an_entry(
    ctx: SharedContext, client: httpx.AsyncClient, dispatcher: Dispatcher
) -> None:
    first = (await post(client, demo_payload("firing", STARTS))).json()["alerts"][0]
    await dispatcher.idle(30)
    repeat = (await post(client, demo_payload("firing", STARTS))).json()["alerts"][0]
    refire = (await post(client, demo_payload("firing", "2026-01-01T10:30:00Z"))).json()["alerts"][0]
    await dispatcher.idle(30)
    assert (repeat["action"], refire["action"]) == ("repeat", "refired")
    assert first["case_id"] == repeat["case_id"] == refire["case_id"]
    case = ctx.case(first["case_id"])
    alerts = [e.title for e in case.timeline(kinds=["alert"])]
    assert alerts == ["Alert firing: Checkout 5xx ratio above 5%", "Alert re-fired: Checkout 5xx ratio above 5%"]
    # the investigation ran once; the re-fire joined the open case instead of starting another
    assert len(case.timeline(kinds=["handoff"])) == 1
    assert len(ctx.cases()) == 1


async def test_resolved_makes_the_agent_verify_and_close_then_a_new_firing_opens_a_new_case(
    ctx: SharedContext, client: httpx.AsyncClient, dispatcher: Dispatcher
) -> None:
    first = (await post(client, demo_payload("firing", STARTS))).json()["alerts"][0]
    resolved = (await post(client, demo_payload("resolved", STARTS, "2026-01-01T10:20:00Z"))).json()["alerts"][0]
    assert resolved["action"] == "resolving"
    await dispatcher.idle(30)
    case = ctx.case(first["case_id"])
    assert case.status == "resolved"
    kinds = [e.kind.value for e in case.timeline()]
    # both alerts are recorded on arrival; one run per case at a time: verification waited for the
    # investigation (which still explains what happened) to finish
    assert kinds == ["alert", "alert", "triage", "finding", "decision-request", "handoff", "verification",
                     "resolution"]  # fmt: skip
    assert case.verify().ok
    again = (await post(client, demo_payload("firing", "2026-01-01T11:00:00Z"))).json()["alerts"][0]
    assert again["action"] == "opened" and again["case_id"] != first["case_id"]
    await dispatcher.idle(30)


async def test_resolved_for_an_alert_without_an_open_case_is_accepted_and_ignored(
    ctx: SharedContext, client: httpx.AsyncClient
) -> None:
    resp = await post(client, demo_payload("resolved", STARTS, "2026-01-01T10:20:00Z"))
    assert resp.status_code == 202
    assert resp.json()["alerts"][0]["action"] == "ignored"
    assert ctx.cases() == []


async def test_refusals_say_what_is_wrong_and_record_nothing(ctx: SharedContext, client: httpx.AsyncClient) -> None:
    bad_version = await post(client, {**demo_payload("firing", STARTS), "version": "2"})
    assert bad_version.status_code == 422
    assert "version '2' is not supported" in bad_version.json()["error"]
    malformed = await client.post("/alerts", content=b'{"title": ', headers={"content-type": "application/json"})
    assert malformed.status_code == 400
    assert "not valid JSON" in malformed.json()["error"]
    missing = await post(client, {"service": "db"}, "/alerts")
    assert missing.status_code == 422
    assert missing.json()["detail"] == ["title: Field required"]
    huge = await post(client, {"title": "x" * 5000}, "/alerts")
    assert huge.status_code == 413
    assert huge.json()["type"] == "too_large"
    assert ctx.cases() == []


async def test_a_generic_alert_goes_through_the_same_flow(ctx: SharedContext, client: httpx.AsyncClient,
                                                          dispatcher: Dispatcher) -> None:  # fmt: skip
    resp = await post(client, {"title": "Disk almost full", "service": "db", "severity": "info"}, "/alerts")
    assert resp.status_code == 202
    await dispatcher.idle(30)
    [case] = ctx.cases()
    assert (case.title, case.service, case.severity) == ("Disk almost full (db)", "db", "info")


async def test_health_and_mounts(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"ok": True, "running": 0}
    assert (await client.get("/mcp")).text == "mounted"


async def test_when_the_journal_fails_the_sender_is_told_to_retry(
    ctx: SharedContext, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sharedctx.errors import StoreError

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise StoreError("disk I/O error")

    monkeypatch.setattr(ctx, "open_case", broken)
    resp = await post(client, demo_payload("firing", STARTS))
    assert resp.status_code == 503
    assert resp.json()["error"] == "disk I/O error"
