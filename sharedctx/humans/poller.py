"""Reading every live case's threads back on a timer: the fallback when webhooks cannot reach us."""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..backends.base import ThreadRef
from ..errors import BackendError
from ..model import format_ts, parse_ts, utcnow
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

    Which cases are live comes from the store's bindings index, per backend (`Store.live_bindings`), so a
    round costs one query per backend plus one read per live thread, not a pass over every case.

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

    def _resolved_since(self) -> datetime:
        """Resolved cases are read back for `poll_resolved_for` seconds more (late answers still count)."""
        return utcnow() - timedelta(seconds=self.humans.settings.poll_resolved_for)

    def live_cases(self) -> list[str]:
        """The cases a round reads back: bound to a configured backend, and open, mitigated or resolved
        less than `poll_resolved_for` ago; newest first. One indexed query per backend."""
        since = self._resolved_since()
        found = (case_id for name in self.ctx.backends for case_id, _ in self.ctx.store.live_bindings(name, since))
        return list(dict.fromkeys(found))

    def poll_case(self, case_id: str) -> list[Ingested]:
        """Read one case's threads back, on every configured backend it is bound to, whatever its status."""
        rec = self.ctx.store.get_case(case_id)
        done: list[Ingested] = []
        for name, bound in rec.bindings.items():
            done += self._read(name, case_id, bound)
        self.stats.cases += 1
        return done

    def _read(self, name: str, case_id: str, bound: dict[str, Any]) -> list[Ingested]:
        """Read `case_id`'s thread on backend `name` back from its cursor and take new human items in."""
        backend = self.ctx.backends.get(name)
        if backend is None:
            return []
        key = f"{name}#humans"
        try:
            back = backend.read_back(ThreadRef.model_validate({"backend": name, **bound}),
                                     self.ctx.store.get_cursor(key, case_id))
        except BackendError as exc:
            self.stats.errors += 1
            POLLS_TOTAL.labels(name, "error").inc()
            log.warning("reading %s back for case %s failed: %s", name, case_id, exc)
            return []
        self.stats.reads += 1
        POLLS_TOTAL.labels(name, "ok").inc()
        done: list[Ingested] = []
        for item in back.humans:
            self.stats.items += 1
            POLL_ITEMS.labels(name).inc()
            got = self.humans.ingest(case_id, item, via="poll")
            self.stats.recorded += 0 if got.duplicate else 1
            done.append(got)
        if back.cursor is not None:
            self.ctx.store.set_cursor(key, case_id, back.cursor)
        return done

    def poll_once(self) -> list[Ingested]:
        """One round: per backend, its live bound cases (one indexed query: resolved cases beyond
        `poll_resolved_for` and cases bound elsewhere are never read), each thread read back. A failing
        case or backend is logged and counted; the round goes on with the others."""
        done: list[Ingested] = []
        polled: set[str] = set()
        since = self._resolved_since()
        for name in list(self.ctx.backends):
            try:
                bound = self.ctx.store.live_bindings(name, since)
            except Exception:
                self.stats.errors += 1
                log.exception("listing the live cases bound to %s failed", name)
                continue
            for case_id, thread in bound:
                polled.add(case_id)
                try:
                    done += self._read(name, case_id, thread)
                except Exception:
                    self.stats.errors += 1
                    log.exception("polling case %s on %s failed", case_id, name)
        self.stats.cases += len(polled)
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
