"""Remediation actions the primary agent may take: plain async functions, looked up by name.

    async def my_runbook(args: dict[str, Any], *, dry_run: bool) -> RunbookResult: ...
    PrimaryAgent(..., runbooks={**DEFAULT_RUNBOOKS, "restart_pods": my_runbook})

The defaults act in dry run: they say exactly what they would do, and the primary records it. An
agent that touches production must be allowed to by its operator (`dry_run=False`), not by default.
"""

from __future__ import annotations

import asyncio
import shlex
from asyncio.subprocess import PIPE, STDOUT
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, Field

__all__ = ["CHANGES_NOTHING", "DEFAULT_RUNBOOKS", "Runbook", "RunbookResult", "escalate", "rollback_deploy"]


class RunbookResult(BaseModel):
    done: bool = Field(description="True if the action was carried out (False in dry run)")
    summary: str
    commands: list[str] = Field(default_factory=list)
    needs_human: bool = False


Runbook = Callable[..., Awaitable[RunbookResult]]
"""`await runbook(args, dry_run=...)` -> `RunbookResult`."""


async def rollback_deploy(args: dict[str, Any], *, dry_run: bool) -> RunbookResult:
    """Roll a Kubernetes deployment back to its previous image (kubectl must be configured to run for real)."""
    service = str(args.get("service") or "")
    if not service:
        return RunbookResult(done=False, summary="No service to roll back was named.", needs_human=True)
    to = args.get("to_version")
    cmd = (
        ["kubectl", "set", "image", f"deployment/{service}", f"{service}={service}:{to}"]
        if to
        else ["kubectl", "rollout", "undo", f"deployment/{service}"]
    )
    wait = ["kubectl", "rollout", "status", f"deployment/{service}", "--timeout=120s"]
    commands = [shlex.join(cmd), shlex.join(wait)]
    target = f"{service} {args.get('from_version') or ''} → {to or 'the previous revision'}".replace("  ", " ")
    if dry_run:
        return RunbookResult(done=False, summary=f"Dry run: would roll back {target}.", commands=commands)
    for c in (cmd, wait):
        proc = await asyncio.create_subprocess_exec(*c, stdout=PIPE, stderr=STDOUT)
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            why = f"Rollback failed at `{shlex.join(c)}`: {out.decode(errors='replace')[-500:]}"
            return RunbookResult(done=False, needs_human=True, commands=commands, summary=why)
    return RunbookResult(done=True, summary=f"Rolled back {target}.", commands=commands)


async def escalate(args: dict[str, Any], *, dry_run: bool) -> RunbookResult:
    """No automatic action: hand the case to a human with what is known."""
    who = f"the owners of {args['service']}" if args.get("service") else "the on-call engineer"
    return RunbookResult(done=False, needs_human=True, summary=f"No safe automatic action; asking {who} to decide.")


DEFAULT_RUNBOOKS: dict[str, Runbook] = {"rollback_deploy": rollback_deploy, "escalate": escalate}

CHANGES_NOTHING: set[Runbook] = {escalate}
"""Runbooks that change nothing outside sharedctx, so running one again is harmless: the primary agent does not
record their start before running them (see `PrimaryAgent._run_runbook`). Add your own read-only ones."""
