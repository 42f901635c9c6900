"""The alert intake under the inputs of issue 11: how long a big batch takes, and how cheap a refusal is.

    .venv/bin/python bench/intake.py            # ~1 minute
    .venv/bin/python bench/intake.py --quick    # ~10 s

One journal (SQLite in a temp dir, one local backend, delivery worker off), the real app
(`server.build_app`, bearer auth on) over httpx's ASGI transport, and an agent that does nothing, so
what is measured is the intake: auth, reading, validation, and recording each alert. Wall time and
process CPU per request:

* accept   an Alertmanager batch of N distinct firing alerts -> N cases, each with its first entry
* refuse   the requests issue 11 used: 10,000 alerts in one request (was: 10,000 cases, 214 s CPU),
           1 MB of nesting, a 300 KB description, an unauthenticated post, a text/plain post
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# run as a script, this folder would shadow packages named like its scripts (bench/mcp.py vs `mcp`)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench._stats import print_table  # noqa: E402
from sharedctx.agents.demo import demo_payload  # noqa: E402
from sharedctx.config import parse_config  # noqa: E402
from sharedctx.context import SharedContext  # noqa: E402
from sharedctx.intake_guard import IntakeAuth  # noqa: E402
from sharedctx.server import Dispatcher, build_app  # noqa: E402

TOKEN = "bench-intake-token"
AUTH = {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"}


class IdleAgent:
    author = None

    async def investigate(self, case: Any, alert: Any) -> None:
        return None

    async def verify_and_close(self, case: Any, alert: Any, investigation: Any = None) -> None:
        return None


def batch(n: int, offset: int = 0) -> bytes:
    payload = demo_payload("firing", "2026-01-01T10:00:00Z")
    template = payload["alerts"][0]
    payload["alerts"] = [{**template, "fingerprint": f"{offset + i:016x}",
                          "labels": {**template["labels"], "instance": f"pod-{offset + i}"}} for i in range(n)]
    return json.dumps(payload).encode()


async def timed(client: httpx.AsyncClient, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    resp = await client.post(path, content=body, headers=headers)
    return resp.status_code, time.perf_counter() - wall, time.process_time() - cpu


async def run(quick: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = parse_config({"store": "journal.db", "worker": {"enabled": False},
                            "backends": [{"type": "local", "path": "cases"}]}, base_dir=Path(tmp))  # fmt: skip
        with SharedContext.open(cfg, worker=False) as ctx:
            app = build_app(ctx, dispatcher=Dispatcher(ctx, IdleAgent()), auth=IntakeAuth(token=TOKEN.encode()))  # type: ignore[arg-type]
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=600) as client:
                rows = []
                offset = 0
                for n in ([10, 100] if quick else [10, 100, 1000]):
                    status, wall, cpu = await timed(client, "/alerts/alertmanager", batch(n, offset), AUTH)
                    offset += n
                    rows.append([f"accept: batch of {n:,} new alerts", status, f"{wall * 1000:,.0f} ms",
                                 f"{cpu * 1000:,.0f} ms", f"{wall / n * 1000:.2f} ms"])
                cases_before = len(ctx.store.list_cases(limit=1_000_000))
                ten_k = json.dumps([{"title": f"alert {i}"} for i in range(10_000)]).encode()
                deep = json.dumps(demo_payload("firing", "2026-01-01T10:00:00Z"))[:-1].encode() + (
                    b', "x": ' + b"[" * 450_000 + b"]" * 450_000 + b"}")
                refusals = [
                    (f"refuse: 10,000 alerts in one request ({len(ten_k) // 1000} KB)", "/alerts", ten_k, AUTH),
                    (f"refuse: nesting 450,000 deep ({len(deep) // 1000} KB)", "/alerts/alertmanager", deep, AUTH),
                    ("refuse: 300 KB description", "/alerts",
                     json.dumps({"title": "t", "description": "d" * 300_000}).encode(), AUTH),
                    ("refuse: no credentials", "/alerts/alertmanager", batch(1000),
                     {"content-type": "application/json"}),
                    ("refuse: text/plain (cross-origin form)", "/alerts/alertmanager", batch(10),
                     {"authorization": f"Bearer {TOKEN}", "content-type": "text/plain"}),
                ]  # fmt: skip
                for label, path, body, headers in refusals:
                    status, wall, cpu = await timed(client, path, body, headers)
                    rows.append([label, status, f"{wall * 1000:,.1f} ms", f"{cpu * 1000:,.1f} ms", "-"])
                assert len(ctx.store.list_cases(limit=1_000_000)) == cases_before, "a refusal recorded something"
            print_table("alert intake (SQLite, bearer auth, agent idle)",
                        ["request", "status", "wall", "CPU", "per alert"], rows)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    asyncio.run(run(parser.parse_args().quick))


if __name__ == "__main__":
    main()
