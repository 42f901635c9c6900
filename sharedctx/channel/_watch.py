"""An httpx transport that turns a failed MCP POST into a reported failure instead of a hang.

Used by `PartnerClient` for Streamable HTTP partners; see `WatchedTransport` for why.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

import anyio
import httpx

__all__ = ["WatchedTransport"]

log = logging.getLogger("sharedctx.channel")


class WatchedTransport(httpx.AsyncBaseTransport):
    """Reports a failed MCP POST to the client instead of letting it crash the SDK's task group.

    In mcp 1.x an HTTP error on a POST escapes into the transport's task group and cancels the
    caller with a bare cancellation, and a response stream cut by a dying server leaves the call
    waiting forever. Here both become `on_failure(reason)`, which fails the calls in flight with
    `PartnerUnavailable`; the SDK is told "202 Accepted" (no answer coming) so it carries on.
    """

    def __init__(self, on_failure: Callable[[str], None], on_json: Callable[[], None] | None = None) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._on_failure = on_failure
        self._on_json = on_json  # told when a POST is answered with one JSON body (a server in JSON mode)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST":
            return await self._inner.handle_async_request(request)
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.TransportError as exc:
            self._on_failure(f"{type(exc).__name__}: {exc}")
            return httpx.Response(202, request=request)
        if response.status_code >= 400 and response.status_code != 404:  # 404: the SDK's "session ended"
            body = (await response.aread())[:300].decode("utf-8", "replace")
            await response.aclose()
            self._on_failure(f"HTTP {response.status_code} from {request.url}: {body}")
            return httpx.Response(202, request=request)
        # 200 only: a 202 (notification accepted, no answer) carries a JSON content-type in both modes
        json_answer = response.status_code == 200 and response.headers.get("content-type", "").startswith(
            "application/json")
        if self._on_json is not None and json_answer:
            self._on_json()
        response.stream = _WatchedStream(response.stream, self._on_failure)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


#: How long, and how much, `_WatchedStream.aclose` reads to finish a response so its connection is reused.
_DRAIN_SECONDS = 0.05
_DRAIN_BYTES = 64 * 1024


class _WatchedStream(httpx.AsyncByteStream):
    def __init__(self, inner: Any, on_failure: Callable[[str], None]) -> None:
        self._inner = inner
        self._on_failure = on_failure
        self._iterator: AsyncGenerator[bytes, None] | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        self._iterator = self._iterate()
        return self._iterator

    async def _iterate(self) -> AsyncGenerator[bytes, None]:
        try:
            async for chunk in self._inner:
                yield chunk
        except httpx.TransportError as exc:
            self._on_failure(f"the answer was cut off: {f'{type(exc).__name__}: {exc}'}")
            raise

    async def aclose(self) -> None:
        """Finish reading the response (briefly) before closing it, so its connection can be reused.

        The SDK closes a POST's event stream as soon as the answer has arrived, a moment before the
        server ends the stream; a connection closed mid-response is thrown away, so every call would
        open a new TCP connection. The answer is already with the session, so nobody waits for this.
        """
        iterator, self._iterator = self._iterator, None
        try:
            if iterator is not None:
                read = 0
                with anyio.move_on_after(_DRAIN_SECONDS):
                    async for chunk in iterator:
                        read += len(chunk)
                        if read > _DRAIN_BYTES:
                            break
        except Exception as exc:  # the stream failed while finishing: it is closed below all the same
            log.debug("could not finish reading an MCP response: %s", exc)
        finally:
            if iterator is not None:
                await iterator.aclose()
            await self._inner.aclose()
