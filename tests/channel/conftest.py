"""Fixtures for the direct channel: real servers on 127.0.0.1 and real partner subprocesses."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from sharedctx.channel.net import wait_for_port
from sharedctx.config import PartnerSettings

ROOT = Path(__file__).resolve().parents[2]
PARTNER_CMD = [sys.executable, "-m", "tests.channel.partner_app"]
ENV = {"PYTHONPATH": str(ROOT)}


@contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Run an ASGI app with uvicorn on a free port in a thread; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextmanager
def partner_process(port: int, mcp_mode: str = "stream") -> Iterator[subprocess.Popen[bytes]]:
    """`python -m tests.channel.partner_app --transport http` in its own process, until it listens."""
    proc = subprocess.Popen(
        [*PARTNER_CMD, "--transport", "http", "--port", str(port), "--mcp-mode", mcp_mode], cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, proc, what="the partner process")
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)
        if proc.stderr:
            proc.stderr.close()


@pytest.fixture
def stdio_settings() -> PartnerSettings:
    return PartnerSettings(name="telemetry", transport="stdio", command=PARTNER_CMD, env=ENV, timeout=20)
