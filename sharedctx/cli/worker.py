"""`sharedctx worker`: the delivery worker in the foreground, draining on SIGTERM."""

from __future__ import annotations

import os
import threading
import time
from typing import Annotated, Any

import typer

from ._common import context, err, escape, out

commands = typer.Typer(rich_markup_mode=None)


@commands.command()
def worker(
    once: Annotated[bool, typer.Option("--once", help="deliver what is due now, then exit")] = False,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="serve Prometheus /metrics on this port (no auth)")
    ] = None,
    metrics_host: Annotated[str, typer.Option("--metrics-host", help="address for --metrics-port")] = "127.0.0.1",
    drain_timeout: Annotated[
        float, typer.Option("--drain-timeout", help="on SIGTERM/Ctrl-C, seconds to let deliveries in flight finish")
    ] = 30.0,
) -> None:
    """Run the delivery worker in the foreground.

    SIGTERM or Ctrl-C drains: nothing new is claimed, deliveries in flight finish (up to --drain-timeout),
    every lease is given back, and the process exits 0. A second signal exits at once (what is still in
    flight is then reconciled by the next worker, as after a crash)."""
    with context(worker=False) as ctx:
        if once:
            n = ctx.worker.run_once()
            out.print(f"handled {n} deliveries")
            return
        from ..observability import serve_metrics, setup_otlp

        if setup_otlp():
            err.print("exporting spans over OTLP (OTEL_EXPORTER_OTLP_ENDPOINT)")
        if metrics_port is not None:
            srv = serve_metrics(ctx.store, ctx.backend_names, metrics_host, metrics_port)
            err.print(f"metrics at http://{metrics_host}:{srv.server_port}/metrics")
        ctx.worker.on_event = lambda what, d, detail: err.print(  # plain: error texts are not rich markup
            f"{what:9} {d.backend} {d.case_id}#{d.seq} {detail}", markup=False, highlight=False)
        ctx.worker.start()
        from ..humans import Poller, human_settings

        poller = Poller(ctx).start() if human_settings(ctx.config).poll else None  # human answers, read back
        if poller is not None:
            for b in ctx.backends.values():
                if hasattr(b, "wait_for_activity"):  # chat (Matrix): a person's answer wakes the poller at once
                    _wake_on_activity(b, poller)
        stopping = _drain_on_signals()
        err.print(f"delivering to {', '.join(ctx.backend_names)}; Ctrl-C or SIGTERM to stop")
        while not stopping.wait(1.0):
            pass
        err.print(f"stopping: letting deliveries in flight finish (up to {drain_timeout:g} s); "
                  "a second signal exits at once")
        if poller is not None:
            poller.stop()
        left = ctx.worker.stop(timeout=drain_timeout)
        if left:
            err.print(f"{left} deliveries still in flight after {drain_timeout:g} s: their leases run out on their "
                      "own and the next worker checks whether they landed before sending")
            raise typer.Exit(1)
        err.print(f"stopped: no delivery in flight, no lease held ({ctx.worker.delivered} deliveries, "
                  f"{ctx.worker.empty_claims} empty claims)")


def _drain_on_signals() -> threading.Event:
    """SIGTERM and SIGINT set the returned event (the worker drains); a second one exits the process at once.

    The exit is `os._exit`: no cleanup that could hang on a stuck request. Nothing is lost by it: a delivery
    cut off keeps `sent_possibly`, and the next claim looks for its copy before sending (`Worker._send`)."""
    import signal

    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if stopping.is_set():
            os.write(2, b"second signal: exiting now\n")
            os._exit(128 + signum)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stopping


def _wake_on_activity(backend: Any, poller: Any) -> None:
    """A daemon thread: long-poll the backend for people's activity and read every live case back when there
    is some. A failure waits and tries again; the poller's own interval still runs underneath."""
    from ..errors import BackendError

    def loop() -> None:
        while True:
            try:
                if backend.wait_for_activity():
                    poller.poll_once()
            except BackendError as exc:
                err.print(f"{backend.name}: waiting for activity failed ({escape(str(exc))}); the poller's interval "
                          "still runs", highlight=False)
                time.sleep(10)

    threading.Thread(target=loop, name=f"sharedctx-{backend.name}-sync", daemon=True).start()
