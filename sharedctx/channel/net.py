"""Loopback plumbing shared by the demo, the tests and the benchmarks: pick a port, wait for a server.

A child server process is "up" when its port accepts a connection; if it dies first, the error
says so and carries the end of its stderr, so a broken partner explains itself instead of a timeout.
"""

from __future__ import annotations

import socket
import subprocess
import time
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(
    port: int, proc: subprocess.Popen[Any] | None = None, *, timeout: float = 20.0, what: str = "the server"
) -> None:
    """Block until 127.0.0.1:`port` accepts connections; RuntimeError if `proc` dies or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            died = proc is not None and proc.poll() is not None
            if died or time.monotonic() > deadline:
                tail = ""
                if died and proc is not None and proc.stderr is not None:
                    raw = proc.stderr.read()
                    tail = (raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw))[-800:]
                why = f"exited with code {proc.returncode}" if died and proc is not None else f"not up in {timeout:g}s"
                detail = f": {tail}" if tail else ""
                raise RuntimeError(f"{what} did not start listening on port {port} ({why}){detail}") from None
            time.sleep(0.05)
