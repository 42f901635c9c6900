"""Reading every live case's threads back on a timer: the fallback when webhooks cannot reach us."""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..backends.base import ThreadRef
from ..errors import BackendError
from ..model import CaseStatus, format_ts, parse_ts, utcnow
from ..observability import POLL_ITEMS, POLLS_TOTAL
from .ingest import Humans, Ingested

if TYPE_CHECKING:
    from ..context import SharedContext

log = logging.getLogger("sharedctx.humans")


@dataclass
class PollStats:
    cases: int = 0
    reads: int = 0
    items: int = 0
    recorded: int = 0
    errors: int = 0


class Poller:
    """Reads every live case's threads back at `poll_interval` and takes new human items in.

    One cursor per (backend, case) in the store (`<backend>#humans`), so a restart continues where it
    left off. Connectors make the reads cheap where the service allows (GitHub: `If-None-Match`, and a
    304 does not count against the rate limit). Dedupe with webhooks is in `Humans.ingest`, so running
    both is safe. A failing backend is logged and retried at the next round; it never stops the others.
    """

    def __init__(self, ctx: SharedContext, humans: Humans | None = None, *, interval: float | None = None) -> None:
        self.ctx = ctx
        self.humans = humans or Humans(ctx)
        self.interval = interval or self.humans.settings.poll_interval
        self.stats = PollStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def live_cases(self) -> list[str]:
        keep = self.humans.settings.poll_resolved_for
        now = utcnow()
        out = []
        for rec in self.ctx.store.list_cases(limit=100_000):
            recent = rec.resolved_at is not None and (now - rec.resolved_at).total_seconds() < keep
            if rec.status != CaseStatus.RESOLVED or recent:
                out.append(rec.id)
        return out

    def poll_case(self, case_id: str) -> list[Ingested]:
        rec = self.ctx.store.get_case(case_id)
        done: list[Ingested] = []
        for name, bound in rec.bindings.items():
            backend = self.ctx.backends.get(name)
            if backend is None:
                continue
            key = f"{name}#humans"
            try:
                back = backend.read_back(ThreadRef.model_validate({"backend": name, **bound}),
                                         self.ctx.store.get_cursor(key, case_id))
            except BackendError as exc:
                self.stats.errors += 1
                POLLS_TOTAL.labels(name, "error").inc()
                log.warning("reading %s back for case %s failed: %s", name, case_id, exc)
                continue
            self.stats.reads += 1
            POLLS_TOTAL.labels(name, "ok").inc()
            for item in back.humans:
                self.stats.items += 1
                POLL_ITEMS.labels(name).inc()
                got = self.humans.ingest(case_id, item, via="poll")
                self.stats.recorded += 0 if got.duplicate else 1
                done.append(got)
            if back.cursor is not None:
                self.ctx.store.set_cursor(key, case_id, back.cursor)
        self.stats.cases += 1
        return done

    def poll_once(self) -> list[Ingested]:
        done: list[Ingested] = []
        for case_id in self.live_cases():
            try:
                done += self.poll_case(case_id)
            except Exception:
                self.stats.errors += 1
                log.exception("polling case %s failed", case_id)
        return done

    # -- running it ---------------------------------------------------------------------------------
    def start(self) -> Poller:
        """Poll in a daemon thread (for `sharedctx worker`)."""
        def loop() -> None:
            while not self._stop.is_set():
                self.poll_once()
                self._stop.wait(self.interval)

        self._stop.clear()
        self._thread = threading.Thread(target=loop, name="sharedctx-humans-poller", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    async def run(self) -> None:
        """Poll from an event loop (for `sharedctx serve`) until cancelled; reads run in a thread."""
        while True:
            await asyncio.to_thread(self.poll_once)
            await asyncio.sleep(self.interval)


def parse_at(value: str) -> str:
    """A service's time as our one textual form (for `HumanItem.at`)."""
    try:
        return format_ts(parse_ts(value))
    except ValueError:
        return value
