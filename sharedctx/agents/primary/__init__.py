"""The reference primary agent: the seven steps of an investigation as an explicit state machine.

    (1) alert            recorded by the intake, which opens or finds the case
    (2) triage           own tools: the alert itself, similar earlier cases
    (3)+(4) consult      every `[[partners]]` entry at once; each answers with findings, or fails
    (5) correlate        own data + partners' findings -> a cause, with a confidence
        remediate        a runbook chosen by the reasoner (dry run by default)
    (6) record           each step above writes its entry; then a one-screen handoff summary
    (7) verify + close   when the alert resolves: partners re-check, then resolve the case

`investigate()` runs (2)-(6) and stops at AWAITING_RECOVERY; `verify_and_close()` runs (7). Each
state's handler returns the next state, so the flow is readable in `_handlers`.

A handler does not write to the journal itself: it queues its entries, and `run()` commits them
together with the next step (`_commit`). Under `sharedctx serve` that commit is the store's fenced
`advance_investigation` (see `sharedctx.agents.lease`): a step's entries and its checkpoint are one
transaction, valid only while this replica holds the case's lease, so a crashed, drained or
superseded replica is resumed from the checkpoint by another one without any step recorded twice.
Outside `serve` (no checkpoint), the queued entries are simply recorded. Decisions come from a `Reasoner`
(rule-based by default); actions from runbooks. A partner that is slow, dead or answers garbage
becomes a recorded note, and the investigation goes on with what it has.

The package is split along what a restart needs:

- `state`: the persisted investigation (`Step`, `Investigation` with `to_state`/`from_state`,
  `PendingEntry`, `Checkpoint`, `LeaseLost`): what a checkpoint records and another replica resumes from;
- `agent`: `PrimaryAgent`, the run loop, the commit and the step handlers;
- `consult`: the partner side of (3)+(4), connecting, asking and inviting, mixed into `PrimaryAgent`.
"""

from __future__ import annotations

from .agent import PrimaryAgent
from .state import Checkpoint, Investigation, LeaseLost, PendingEntry, Step

__all__ = ["Checkpoint", "Investigation", "LeaseLost", "PendingEntry", "PrimaryAgent", "Step"]
