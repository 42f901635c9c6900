"""A fault-injecting HTTP/1.1 proxy between a connector and the real Redmine (asyncio + httpx upstream).

The faults are the network's, not a double's: the connector talks to a real socket, and "after apply"
faults happen after Redmine really committed the write.

- `timeout_after_apply`: forward, then never answer (the client's read timeout fires);
- `reset_after_apply`: forward, then close the connection without an answer;
- `5xx_after_apply`: forward, then answer 504 as a gateway that gave up would;
- `status` / `5xx`, `429` (with Retry-After), `html` (a proxy page): answered here, nothing forwarded;
- `strip_content_type`: forwarded without `Content-Type` (Redmine then ignores a write, answering 204);
- `reset`: the port refuses connections for `seconds` (default 1 s) - "the server is down";
- `auth_ok = False`: the API key is replaced by a wrong one, so Redmine itself answers 401.

It has the same `inject`/`chaos`/`requests` surface as the service doubles in tests/doubles, so the shared
backend suite (tests/backends/suite.py) runs against real Redmine through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx

HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "proxy-connection"}


@dataclass
class Seen:
    method: str
    path: str
    fault: str | None = None


@dataclass
class Fault:
    kind: str
    times: int = 1
    method: str | None = None
    path: str | None = None
    status: int | None = None
    retry_after: float | None = None
    seconds: float = 1.0

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (self.path is None or re.search(self.path, path)
                                                                   is not None)


@dataclass
class Chaos:
    """Random faults on writes (PUT/POST) at these rates; `counts` says how many of each were injected."""

    rng: random.Random
    timeout_after_apply: float = 0.0
    reset_after_apply: float = 0.0
    server_error: float = 0.0
    server_error_after_apply: float = 0.0
    reads_too: float = 0.0  # rate of 5xx / resets on GETs as well
    counts: dict[str, int] = field(default_factory=dict)

    def pick(self, method: str) -> Fault | None:
        r = self.rng.random()
        if method == "GET":
            if r < self.reads_too:
                return self._count(Fault("reset_after_apply" if self.rng.random() < 0.5 else "5xx", status=502))
            return None
        for kind, rate in (("timeout_after_apply", self.timeout_after_apply),
                           ("reset_after_apply", self.reset_after_apply), ("5xx", self.server_error),
                           ("5xx_after_apply", self.server_error_after_apply)):
            if r < rate:
                return self._count(Fault(kind, status=503))
            r -= rate
        return None

    def _count(self, f: Fault) -> Fault:
        self.counts[f.kind] = self.counts.get(f.kind, 0) + 1
        return f


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.requests: list[Seen] = []
        self.faults: list[Fault] = []
        self.chaos_cfg: Chaos | None = None
        self.auth_ok = True
        self.port = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._held: list[asyncio.Event] = []
        self._thread = threading.Thread(target=self._loop.run_forever, name="redmine-fault-proxy", daemon=True)
        self._http: httpx.AsyncClient | None = None

    # ---- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        self._thread.start()
        self._run(self._open())
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        async def down() -> None:
            for ev in self._held:
                ev.set()
            await self._close_listener()
            if self._http is not None:
                await self._http.aclose()

        self._run(down())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    async def _open(self) -> None:
        if self._http is None:
            self._http = httpx.AsyncClient(base_url=self.upstream, timeout=120.0)
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._writers):
            w.close()
        self._writers.clear()

    # ---- faults ------------------------------------------------------------------------------------
    def inject(self, kind: str, **kw: Any) -> Fault:
        fault = Fault(kind, **kw)
        if kind == "reset":  # refuse connections now (pooled ones included), accept again later
            async def refuse() -> None:
                await self._close_listener()
                self._loop.call_later(fault.seconds, lambda: asyncio.ensure_future(self._open()))

            self._run(refuse())
            return fault
        with self._lock:
            self.faults.append(fault)
        return fault

    def chaos(self, **kw: Any) -> Chaos:
        self.chaos_cfg = Chaos(**kw)
        return self.chaos_cfg

    def _take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.times > 0 and f.matches(method, path):
                    f.times -= 1
                    return f
            return self.chaos_cfg.pick(method) if self.chaos_cfg else None

    # ---- one connection ----------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = [tuple(x.strip() for x in ln.split(":", 1)) for ln in lines[1:] if ":" in ln]
                length = int(next((v for k, v in headers if k.lower() == "content-length"), "0") or 0)
                body = await reader.readexactly(length) if length else b""
                if not await self._one(reader, writer, method, target, headers, body):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, method: str, target: str,
                   headers: list[Any], body: bytes) -> bool:
        """Answer one request; False closes the connection."""
        path = target.split("?", 1)[0]
        fault = self._take(method, path)
        with self._lock:
            self.requests.append(Seen(method, path, fault.kind if fault else None))
        kind = fault.kind if fault else None
        if fault is not None and kind in ("status", "5xx"):
            await self._send(writer, fault.status or 502, b'{"errors":["injected by the fault proxy"]}',
                             {"content-type": "application/json; charset=utf-8"})
            return True
        if fault is not None and kind == "429":
            extra = {} if fault.retry_after is None else {"retry-after": f"{fault.retry_after:g}"}
            await self._send(writer, 429, b"", {"content-type": "text/plain", **extra})
            return True
        if fault is not None and kind == "html":
            await self._send(writer, fault.status or 200, b"<html><body><h1>Gateway</h1></body></html>",
                             {"content-type": "text/html"})
            return True
        fwd = {k: v for k, v in headers if k.lower() not in HOP | {"host", "accept-encoding"}}
        if kind == "strip_content_type":  # a misconfigured proxy in front of Redmine
            fwd = {k: v for k, v in fwd.items() if k.lower() != "content-type"}
        if not self.auth_ok:
            fwd = {k: ("0" * 40 if k.lower() == "x-redmine-api-key" else v) for k, v in fwd.items()}
        assert self._http is not None
        try:
            resp = await self._http.request(method, target, headers=fwd, content=body)
        except httpx.HTTPError:
            return False  # upstream down: drop the connection, as a proxy would
        if kind == "timeout_after_apply":
            held = asyncio.Event()
            self._held.append(held)
            waits = [asyncio.ensure_future(held.wait()), asyncio.ensure_future(reader.read(1))]
            with contextlib.suppress(ConnectionError):
                await asyncio.wait(waits, timeout=120, return_when=asyncio.FIRST_COMPLETED)  # until the client gives up
            for w in waits:
                w.cancel()
            return False
        if kind == "reset_after_apply":
            return False
        if kind == "5xx_after_apply":
            await self._send(writer, 504, b"<html>504 Gateway Time-out</html>", {"content-type": "text/html"})
            return True
        out = {k: v for k, v in resp.headers.items() if k.lower() not in HOP}
        await self._send(writer, resp.status_code, resp.content, out)
        return True

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, status: int, body: bytes, headers: dict[str, str]) -> None:
        reason = httpx.codes.get_reason_phrase(status) or "Status"
        head = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers.items()),
                f"content-length: {len(body)}", "connection: keep-alive", "", ""]
        writer.write("\r\n".join(head).encode("latin-1") + body)
        await writer.drain()
