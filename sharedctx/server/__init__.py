"""`sharedctx serve`: one HTTP app that takes alerts in and runs the primary agent on them.

    POST /alerts/alertmanager   Alertmanager webhook (payload version 4)
    POST /alerts                the generic JSON alert (format in `sharedctx.intake`)
    GET  /healthz               {"ok": true, "running": <investigations in flight>} (the process is alive)
    GET  /readyz                {"ready": true}, or 503 {"ready": false, "reason": ...} if the store does not answer
    GET  /metrics               Prometheus text format (`sharedctx.observability`); loopback clients need
                                no credentials, any other client the intake's

Every intake route is built by one factory (`build_app`'s `intake`), the choke point where a request
is authenticated, checked to be JSON and within size (`sharedctx.intake_guard`), then read alert by
alert (`sharedctx.intake`). A payload that cannot be read at all gets a 4xx naming the problem; a
readable one gets 202 with one outcome per alert — `opened`, `refired`, `repeat`, `resolving`,
`ignored`, or `rejected` with the reason — so one bad alert never drops its siblings and
Alertmanager does not retry a batch forever. If no alert was accepted the answer is 422.

An accepted alert is durable before the answer: a new case is opened together with its first entry,
in one transaction (no empty case), or the alert is added to the open case with its fingerprint.
The agent runs afterwards, in the background: a firing alert for a new case begins an investigation;
the same alert again while the case is open adds a "re-fired" entry (an identical repeat of a
notification adds nothing); a `resolved` notification makes the agent verify and close.

Several `serve` replicas may share one store: each investigation is leased to one replica at a time
and checkpointed after every step (`Dispatcher`, `sharedctx.agents.lease`), so a survivor or a
restarted process resumes it where it stopped, without recording any step twice. SIGTERM drains
(`Dispatcher.shutdown`): in-flight steps finish or are abandoned unrecorded, leases are released.

`build_app(ctx, mounts=[...], lifespans=[...])` keeps the app composable: the shared-context MCP
server (`/mcp`) and backend webhooks (`/webhooks/...`) mount beside the intake with their own
authentication, and their lifespans (e.g. an MCP session manager) run with the app's. `serve()` is
what `sharedctx serve` runs: it wires those mounts and refuses to expose an unauthenticated intake
beyond loopback.

The package is split where the work changes hands, so that each side can be read (and driven) alone:

    dispatch.py   `Dispatcher`, `Outcome`: alert -> case -> investigation lease, scheduling, draining
    app.py        `build_app` (routes, probes, /metrics, lifespan) and `serve()` (mounts, uvicorn)

Everything callers use is re-exported here; patch a name where it is read (e.g.
`sharedctx.server.app.READY_TIMEOUT`), not here. Both modules log to the one "sharedctx.server" logger.
"""

from __future__ import annotations

from .app import Lifespan as Lifespan  # the type aliases stay importable from here, as before the split
from .app import build_app, serve
from .dispatch import Action as Action
from .dispatch import Dispatcher, Outcome

__all__ = ["Dispatcher", "Outcome", "build_app", "serve"]
