"""A real Synapse per test session (see server.py); skipped only with SHAREDCTX_SKIP_REAL_SERVERS=1."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.matrix.server import MatrixServer, start, stop


@pytest.fixture(scope="session")
def synapse() -> Iterator[MatrixServer]:
    if os.environ.get("SHAREDCTX_SKIP_REAL_SERVERS") == "1":
        pytest.skip("SHAREDCTX_SKIP_REAL_SERVERS=1: no real Synapse")
    server = start()
    yield server
    stop(server)


@pytest.fixture(scope="session")
def synapse_stock() -> Iterator[MatrixServer]:
    """A second homeserver that keeps Synapse's stock rate limits (0.2 msg/s, burst 10)."""
    if os.environ.get("SHAREDCTX_SKIP_REAL_SERVERS") == "1":
        pytest.skip("SHAREDCTX_SKIP_REAL_SERVERS=1: no real Synapse")
    server = start(stock_limits=True)
    yield server
    stop(server)
