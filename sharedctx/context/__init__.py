"""The Python API: `SharedContext` (one journal + its backends) and `Case` (one incident).

    ctx = SharedContext.open()                     # sharedctx.toml, or the embedded defaults
    case = ctx.open_case("Checkout 5xx spike", service="checkout", fingerprint="alert:abc")
    case.record("finding", "p99 latency up 8x", "Since 10:02, after deploy 4411", evidence=[...])
    case.resolve("Rolled back deploy 4411; error rate back to baseline")

`record()` validates, redacts and appends locally in one transaction (entry, search index, one
outbox row per backend) and returns; it never does network I/O. Delivery happens behind, in the
worker. From asyncio code use `await case.arecord(...)`, which runs the same call in a thread.

Seams (one module each), so each reads on its own:

- `entries`: what an entry's text, kind and evidence must be; plain checks with no journal behind them.
- `case`: `Case`, the handle on one incident, and `NewEntry`, the entry a case can be opened with.
- `core`: `SharedContext`, the journal with its backends and the one write path (`_record`).
"""

from __future__ import annotations

from .case import Case, NewEntry
from .core import FIND_LIMIT, SharedContext
from .entries import _ID_RE, DEFERRED_STATUS_ATTR, _evidence, _kind, _text

__all__ = [
    "DEFERRED_STATUS_ATTR",
    "FIND_LIMIT",
    "_ID_RE",
    "Case",
    "NewEntry",
    "SharedContext",
    "_evidence",
    "_kind",
    "_text",
]  # fmt: skip
