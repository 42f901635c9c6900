"""The plain HTTP JSON API: the same capabilities for partners and primaries that do not speak MCP.

    GET  /v1/capabilities             -> {"partner": ..., "capabilities": [{"name", "description"}]}
    POST /v1/capabilities/{name}      CapabilityInput -> Finding
    GET  /openapi.json                OpenAPI 3.1, generated from the same pydantic models

The case id and trace context travel as headers (`X-Sharedctx-Case`, W3C `traceparent`). Errors are
`{"error": {"type", "message", ...}}` with a status that says whose fault it is: 404 unknown
capability (listing the known ones), 413 body too large, 422 invalid input (pydantic's message),
500 the capability failed. If the client disconnects, the running capability is cancelled.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive

from ..errors import UnknownCapability
from .models import CallContext, CapabilityInput, Finding
from .partner import Partner, _valid

if TYPE_CHECKING:
    from mcp.server.fastmcp import FastMCP

__all__ = ["CASE_HEADER", "MAX_BODY_BYTES", "add_api_routes", "openapi"]

CASE_HEADER = "X-Sharedctx-Case"
MAX_BODY_BYTES = 1_000_000

log = logging.getLogger("sharedctx.channel")


def _error(status: int, type_: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"type": type_, "message": message, **extra}}, status_code=status)


def add_api_routes(partner: Partner, server: FastMCP) -> None:
    """Register the plain API on the partner's FastMCP app, so one server offers MCP and JSON."""
    if getattr(server, "_sharedctx_api", False):
        return
    server._sharedctx_api = True  # type: ignore[attr-defined]

    @server.custom_route("/v1/capabilities", methods=["GET"])
    async def list_capabilities(request: Request) -> Response:
        caps = [{"name": c.name, "description": c.description} for c in partner.capabilities.values()]
        return JSONResponse({"partner": partner.name, "capabilities": caps})

    @server.custom_route("/v1/capabilities/{name}", methods=["POST"])
    async def call_capability(request: Request) -> Response:
        try:
            cap = partner.get(request.path_params["name"])
        except UnknownCapability as exc:
            return _error(404, "unknown_capability", exc.message, known=exc.known)
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return _error(413, "too_large", f"request body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
        try:
            inp = CapabilityInput.model_validate_json(body)
        except ValidationError as exc:
            return _error(422, "invalid_input", str(exc), errors=json.loads(exc.json(include_url=False)))
        call = CallContext(
            case_id=request.headers.get(CASE_HEADER) or inp.case_id,
            traceparent=_valid(request.headers.get("traceparent")),
            capability=cap.name,
            partner=partner.name,
        )
        finding: Finding | None = None
        failure: Exception | None = None
        scope = anyio.CancelScope()
        async with _cancel_on_disconnect(request.receive, scope):
            with scope:
                try:
                    finding = await partner.invoke(cap, inp, call)
                except Exception as exc:
                    failure = exc
        if finding is None:
            if failure is None:  # cancelled because the client went away: nobody reads this
                return Response(status_code=499)
            return _error(500, "capability_failed", f"capability {cap.name!r} failed: {failure}")
        # The enrichment entry is handed over only once the response has been sent.
        answered: Finding = finding

        async def hand_over() -> None:
            partner.record_later(call, answered)

        # pydantic's own JSON encoder: the same document JSONResponse(model_dump(...)) would send, faster.
        return Response(
            finding.model_dump_json(),
            media_type="application/json",
            background=BackgroundTask(hand_over) if partner.recorder else None,
            headers={"traceparent": call.traceparent} if call.traceparent else None,
        )

    @server.custom_route("/openapi.json", methods=["GET"])
    async def openapi_json(request: Request) -> Response:
        return JSONResponse(openapi(partner))


@asynccontextmanager
async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> AsyncIterator[None]:
    """Cancel `scope` if the client disconnects while the body of the `async with` runs.

    The request body has been read, so the next ASGI message is `http.disconnect`. Watching for it
    takes a task; a task group spawned, cancelled and joined on every request cost more than the
    whole rest of the request (~0.1 ms). On asyncio the watcher is a plain task, started only once
    the call first waits (a call that never waits cannot be cancelled anyway), cancelled and not
    joined when the call ends. Other event loops (trio) get the task group.
    """

    async def watch() -> None:
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
        except Exception as exc:  # the server has nothing more to tell us: nothing to watch
            log.debug("disconnect watch ended: %s", exc)
            return
        scope.cancel()

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not asyncio
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()
        return
    watchers: list[asyncio.Task[None]] = []
    start = loop.call_soon(lambda: watchers.append(loop.create_task(watch())))
    try:
        yield
    finally:
        start.cancel()
        for task in watchers:
            task.cancel()


class ApiError(BaseModel):
    """The body of every 4xx/5xx answer of the plain API."""

    error: dict[str, Any]


def openapi(partner: Partner) -> dict[str, Any]:
    """An OpenAPI 3.1 description of the plain API, with one operation per capability."""
    _, defs = models_json_schema(
        [(CapabilityInput, "validation"), (Finding, "serialization"), (ApiError, "serialization")],
        ref_template="#/components/schemas/{model}",
    )
    schemas = defs.get("$defs", {})
    ref = "#/components/schemas/{}".format
    headers = [
        {
            "name": CASE_HEADER,
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "the sharedctx case id (defaults to the body's case_id)",
        },
        {
            "name": "traceparent",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "W3C Trace Context, stored on the partner's enrichment entry",
        },
    ]
    error = {"content": {"application/json": {"schema": {"$ref": ref("ApiError")}}}}
    paths: dict[str, Any] = {
        "/v1/capabilities": {
            "get": {
                "operationId": "list_capabilities",
                "summary": "List this partner's capabilities",
                "responses": {
                    "200": {
                        "description": "the capabilities",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "partner": {"type": "string"},
                                        "capabilities": {
                                            "type": "array",
                                            "items": {
                                                "type": "object",
                                                "properties": {
                                                    "name": {"type": "string"},
                                                    "description": {"type": "string"},
                                                },
                                            },
                                        },
                                    },
                                }
                            }
                        },
                    }
                },
            }
        }
    }
    for cap in partner.capabilities.values():
        paths[f"/v1/capabilities/{cap.name}"] = {
            "post": {
                "operationId": cap.name,
                "summary": cap.description.splitlines()[0],
                "description": cap.description,
                "parameters": headers,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": ref("CapabilityInput")}}},
                },
                "responses": {
                    "200": {
                        "description": "the finding",
                        "content": {"application/json": {"schema": {"$ref": ref("Finding")}}},
                    },
                    "413": {"description": "request body too large", **error},
                    "422": {"description": "the input does not match CapabilityInput", **error},
                    "500": {"description": "the capability failed", **error},
                },
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"sharedctx partner {partner.name!r}",
            "version": "1",
            "description": "Capabilities of a sharedctx partner agent (the same ones its MCP server offers at /mcp).",
        },
        "paths": paths,
        "components": {"schemas": schemas},
    }
