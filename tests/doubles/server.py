"""Serve a service double on a real TCP port, with latency and commit-then-drop faults.

The in-process doubles are `httpx.MockTransport` handlers; a test that kills worker *processes* needs the
service outside them, reachable over a socket, so a connection can really be dropped. `PortServer` wraps
any `ServiceDouble`: each request waits a random latency, goes through the double (spec checks, routing,
storage), and then, for a share of writes, the connection is closed without an answer after the double
stored the write. That is the failure that makes naive retries post twice: the client sees the connection
die, the service kept the comment.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from .base import ServiceDouble

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class PortServer:
    """`double` on 127.0.0.1:<free port>. `latency` is a (min, max) range in seconds per request."""

    def __init__(self, double: ServiceDouble, *, latency: tuple[float, float] = (0.05, 0.4),
                 drop_writes: float = 0.15, seed: int | None = None) -> None:
        self.double = double
        self.latency = latency
        self.drop_writes = drop_writes
        self.rng = random.Random(seed)
        self.counts: Counter[str] = Counter()  # requests, writes, dropped (after the double applied them)
        self.writes_in_flight = 0  # read, not yet answered: lets a test signal a client mid-request, not by timing
        self._lock = threading.Lock()
        self._stop = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _serve(self) -> None:
                owner._serve(self)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="double-server", daemon=True)

    def start(self) -> PortServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> PortServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _roll(self) -> tuple[float, float]:
        with self._lock:
            return self.rng.uniform(*self.latency), self.rng.random()

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("content-length") or 0)
        body = h.rfile.read(length) if length else b""
        if len(body) < length:  # the client died mid-request (kill -9): no HTTP server acts on half a request
            h.close_connection = True
            return
        write = h.command in WRITES
        with self._lock:
            self.writes_in_flight += write
        try:
            self._answer(h, body, write)
        finally:
            with self._lock:
                self.writes_in_flight -= write

    def _answer(self, h: BaseHTTPRequestHandler, body: bytes, write: bool) -> None:
        delay, dice = self._roll()
        if self._stop.wait(delay):
            return
        request = httpx.Request(h.command, self.double.host_url.rstrip("/") + h.path,
                                headers=[(k, v) for k, v in h.headers.items() if k.lower() != "host"],
                                content=body)
        response = self.double.handle(request)
        with self._lock:
            self.counts["requests"] += 1
            self.counts["writes"] += write
        if write and 200 <= response.status_code < 300 and dice < self.drop_writes:
            with self._lock:
                self.counts["dropped"] += 1
            h.close_connection = True
            with contextlib.suppress(OSError):  # the write is stored; the client never hears about it
                h.connection.shutdown(socket.SHUT_RDWR)
            return
        try:
            h.send_response(response.status_code)
            for k, v in response.headers.items():
                if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                    h.send_header(k, v)
            h.send_header("content-length", str(len(response.content)))
            h.send_header("connection", "close")
            h.end_headers()
            h.wfile.write(response.content)
        except OSError:  # the client was killed mid-request: that is the point of the soak
            h.close_connection = True
