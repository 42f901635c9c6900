"""The plain HTTP API: same capabilities and models as MCP, clear 4xx errors, an OpenAPI description."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from sharedctx.channel import CapabilityInput, Finding
from sharedctx.channel.api import CASE_HEADER

from .partner_app import build

pytestmark = pytest.mark.anyio

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
async def api() -> AsyncIterator[tuple[httpx.AsyncClient, list[Any]]]:
    seen: list[Any] = []
    partner = build(recorder=lambda case, f, tp: seen.append((case, f.capability, tp)))
    transport = httpx.ASGITransport(app=partner.http_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://partner") as client:
        yield client, seen
    assert partner.wait_for_records(5)


async def test_listing_names_every_capability(api: tuple[httpx.AsyncClient, list[Any]]) -> None:
    client, _ = api
    body = (await client.get("/v1/capabilities")).json()
    assert body["partner"] == "telemetry"
    assert {"search_logs", "analyze_spans", "sync_scan", "crash", "fail"} <= {c["name"] for c in body["capabilities"]}


async def test_a_call_returns_the_finding_and_carries_case_and_trace_headers(
    api: tuple[httpx.AsyncClient, list[Any]],
) -> None:
    client, _ = api
    resp = await client.post(
        "/v1/capabilities/search_logs",
        json={"case_id": "C1", "service": "checkout"},
        headers={"traceparent": TP, CASE_HEADER: "C5"},
    )
    assert resp.status_code == 200
    finding = Finding.model_validate(resp.json())
    assert "trace 4bf92f3577b34da6a3ce929d0e0e4736, case C5" in finding.summary
    assert resp.headers["traceparent"] == TP


async def test_the_recorder_gets_case_and_traceparent_from_headers() -> None:
    seen: list[Any] = []
    done = threading.Event()

    def recorder(case: str, f: Finding, tp: str | None) -> None:
        seen.append((case, f.capability, tp))
        done.set()

    partner = build(recorder=recorder)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=partner.http_app()), base_url="http://p") as c:
        await c.post("/v1/capabilities/search_logs", json={"case_id": "C1"}, headers={"traceparent": TP})
    assert partner.wait_for_records(5)
    assert seen == [("C1", "search_logs", TP)]


async def test_an_unknown_capability_is_404_listing_the_known_ones(api: tuple[httpx.AsyncClient, list[Any]]) -> None:
    client, _ = api
    resp = await client.post("/v1/capabilities/query_metric", json={"case_id": "C1"})
    assert resp.status_code == 404
    error = resp.json()["error"]
    assert error["type"] == "unknown_capability"
    assert "search_logs" in error["known"]
    assert "no capability 'query_metric'; this partner offers:" in error["message"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"service": "checkout"}, "case_id\n  Field required"),
        ({"case_id": "C", "confidence": 1}, "Extra inputs are not permitted"),
        ({"case_id": "C", "start": "2025-01-02T00:00:00Z", "end": "2025-01-01T00:00:00Z"}, "is before start"),
        ("not json", "Invalid JSON"),
    ],
)
async def test_invalid_input_is_422_with_pydantics_message(
    api: tuple[httpx.AsyncClient, list[Any]], body: Any, says: str
) -> None:
    client, _ = api
    kwargs: dict[str, Any] = {"content": body} if isinstance(body, str) else {"json": body}
    resp = await client.post("/v1/capabilities/search_logs", **kwargs)
    assert resp.status_code == 422
    assert resp.json()["error"]["type"] == "invalid_input"
    assert says in resp.json()["error"]["message"]


async def test_an_oversized_body_is_413(api: tuple[httpx.AsyncClient, list[Any]]) -> None:
    client, _ = api
    resp = await client.post("/v1/capabilities/search_logs", json={"case_id": "C", "question": "x" * 1_100_000})
    assert resp.status_code == 413


async def test_a_failing_capability_is_500_saying_which(api: tuple[httpx.AsyncClient, list[Any]]) -> None:
    client, seen = api
    resp = await client.post("/v1/capabilities/fail", json={"case_id": "C"})
    assert resp.status_code == 500
    assert resp.json()["error"]["message"] == "capability 'fail' failed: loki is unreachable"
    assert seen == []


async def test_the_openapi_description_is_valid_3_1_and_uses_the_models(
    api: tuple[httpx.AsyncClient, list[Any]],
) -> None:
    client, _ = api
    spec = (await client.get("/openapi.json")).json()
    validate(spec)
    assert spec["openapi"] == "3.1.0"
    op = spec["paths"]["/v1/capabilities/search_logs"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CapabilityInput"
    }
    assert set(spec["components"]["schemas"]["CapabilityInput"]["properties"]) == set(CapabilityInput.model_fields)
    assert {p["name"] for p in op["parameters"]} == {"traceparent", CASE_HEADER}
    assert "Evidence" in spec["components"]["schemas"]
