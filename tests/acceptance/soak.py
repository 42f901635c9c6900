"""The exactly-once soak: real `sharedctx worker` processes, killed with SIGKILL at random moments, deliver
to a GitHub double on a real port that is slow (latency per request) and sometimes stores a comment and
then drops the connection without answering (commit-then-drop).

Used by tests/acceptance/test_exactly_once.py (scaled for CI) and bench/reliability.py (the README's
"Reliability" figures). Everything is counted on the double's own storage, never on what the worker says.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sharedctx.config import load_config
from sharedctx.context import SharedContext
from sharedctx.model import EntryKind
from sharedctx.render import CASE_MARK, RESOLVED_MARK, parse_github
from tests.doubles.base import specs_available, violations
from tests.doubles.github import GitHubDouble
from tests.doubles.server import PortServer

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "soak-token"


@dataclass
class Soak:
    """One soak run's shape. `lease` is also the backend's request timeout (the config refuses less)."""

    store: str = "journal.db"  # a SQLite path (relative to the run folder) or a postgresql:// URL
    workers: int = 1
    rounds: int = 30
    entries: int = 80
    cases: int = 8
    latency: tuple[float, float] = (0.05, 0.4)
    drop_writes: float = 0.15
    lease: float = 2.0
    timeout: float | None = None  # the backend's request timeout; default: the lease
    kill_window: tuple[float, float] = (0.0, 1.5)  # seconds after the victim said it is delivering
    startup_kills: float = 0.15  # share of kills aimed at a worker still starting (before it delivers)
    seed: int | None = None


@dataclass
class SoakResult:
    soak: Soak
    seed: int
    kills: int = 0
    entries: int = 0
    duplicates: int = 0  # extra copies of an entry (part) in the service
    losses: int = 0  # journal entries the service does not hold
    extra_threads: int = 0  # issues beyond one per case
    extra_resolved_notes: int = 0
    unresolved: int = 0  # resolved cases whose issue is still open
    requests: int = 0
    writes: int = 0
    dropped: int = 0  # writes stored and then answered with a dropped connection
    delivered_during_rounds: int = 0
    reconciled: int = 0  # deliveries that needed more than one attempt
    seconds: float = 0.0
    spec_violations: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.losses or self.extra_threads or self.extra_resolved_notes
                    or self.unresolved)


def _config(soak: Soak, url: str) -> str:
    timeout = soak.timeout if soak.timeout is not None else soak.lease
    return f"""\
store = "{soak.store}"

[agent]
name = "soak"
kind = "primary"

[worker]
enabled = false
base_delay = 0.05
max_delay = 0.5
max_attempts = 10000
lease_seconds = {soak.lease}
concurrency = 4
poll_interval = 0.05

[humans]
poll = false

[[backends]]
type = "github"
repo = "acme/payments"
token = "env:SOAK_GITHUB_TOKEN"
base_url = "{url}"
per_minute = 1000000
per_hour = 1000000
max_block = 0
timeout = {timeout}
read_reactions = false
read_status = false
"""


class _Worker:
    """One `sharedctx worker` process with a log of its own, so the soak can tell when it is delivering."""

    def __init__(self, config: Path, cwd: Path, log: Path) -> None:
        env = {**os.environ, "SOAK_GITHUB_TOKEN": TOKEN,
               "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.log = log
        self.started = time.monotonic()
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "sharedctx.cli", "--config", str(config), "worker"],
                                         cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until it says "delivering to": startup takes ~1 s on an idle machine, many on a loaded one."""
        deadline = time.monotonic() + timeout
        while b"delivering to" not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"a worker did not start (exit {self.proc.returncode}); see {self.log}:\n"
                                     f"{self.log.read_text()[-3000:]}")
            time.sleep(0.02)

    def kill(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"a worker exited with {self.proc.returncode} before its kill; see {self.log}:\n"
                                 f"{self.log.read_text()[-3000:]}")
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def kill_plan(rng: random.Random, rounds: int, startup_share: float,
              window: tuple[float, float]) -> tuple[set[int], list[float]]:
    """Which rounds kill a worker in its startup, and each round's kill offset into the window.

    Stratified rather than drawn independently: round(share x rounds) rounds (at least one when the share is
    not 0) kill in startup, and the offsets, in a random order, fall one in each of `rounds` equal slices of
    the window. A short soak then still kills in startup and across the whole window, every run; independent
    draws left 4% of 20-round runs with no startup kill at all and bunched the rest by chance."""
    n_startup = max(1, round(startup_share * rounds)) if startup_share > 0 else 0
    startup = set(rng.sample(range(rounds), min(rounds, n_startup)))
    lo, hi = window
    slices = rng.sample(range(rounds), rounds)
    return startup, [lo + (hi - lo) * (k + rng.random()) / rounds for k in slices]


def run(soak: Soak, folder: Path) -> SoakResult:
    """Run the soak in `folder`; returns what the service ended up holding against the journal."""
    seed = soak.seed if soak.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    result = SoakResult(soak=soak, seed=seed)
    started = time.monotonic()
    double = GitHubDouble(token=TOKEN, validate=specs_available())
    before_violations = len(violations("github"))
    config = folder / "sharedctx.toml"
    os.environ["SOAK_GITHUB_TOKEN"] = TOKEN  # the final drain runs in this process
    with PortServer(double, latency=soak.latency, drop_writes=soak.drop_writes, seed=seed) as server:
        config.write_text(_config(soak, server.url))
        ctx = SharedContext.open(load_config(config), worker=False)
        try:
            cases = [ctx.open_case(f"soak case {c}", service="checkout", severity="critical",
                                   fingerprint=f"soak-{seed}-{c}") for c in range(soak.cases)]
            plan = [(i % soak.cases, i >= soak.entries - soak.cases) for i in range(soak.entries)]
            # Half the entries wait before the first worker starts; the rest arrive a few per round.
            backlog, rest = plan[: len(plan) // 2], plan[len(plan) // 2:]
            per_round = -(-len(rest) // soak.rounds)
            batches = [backlog] + [rest[i * per_round:(i + 1) * per_round] for i in range(soak.rounds)]

            def record(batch: list[tuple[int, bool]], round_no: int) -> None:
                for c, last in batch:
                    if last:
                        cases[c].resolve(f"soak case {c} resolved", author="primary:soak")
                    else:
                        cases[c].record(EntryKind.FINDING, f"round {round_no} finding", "x" * rng.randrange(0, 300),
                                        author="primary:soak")

            record(batches[0], 0)
            # Workers run side by side; each round the longest-lived one is killed at a random
            # moment and replaced at once, so kills land in startup, in claims, mid-request and mid-mark.
            spawned = 0

            def spawn() -> _Worker:
                nonlocal spawned
                spawned += 1
                return _Worker(config, folder, folder / f"worker-{spawned}.log")

            startup, offsets = kill_plan(rng, soak.rounds, soak.startup_kills, soak.kill_window)
            procs = [spawn() for _ in range(soak.workers)]
            try:
                for round_no in range(soak.rounds):
                    victim = min(range(len(procs)), key=lambda i: procs[i].started)  # the longest-lived one
                    if round_no in startup:  # somewhere in its startup
                        time.sleep(max(0.0, procs[victim].started + rng.uniform(0.1, 0.8) - time.monotonic()))
                    else:  # somewhere in its work: claims, requests, marks
                        procs[victim].wait_ready()
                        time.sleep(offsets[round_no])
                    procs[victim].kill()
                    result.kills += 1
                    record(batches[round_no + 1], round_no + 1)
                    procs[victim] = spawn()
            finally:
                for w in procs:
                    if w.proc.poll() is None:
                        w.proc.send_signal(signal.SIGKILL)
                        w.proc.wait()
            result.kills += len(procs)
            counts = ctx.store.outbox_counts().get("github", {})
            result.delivered_during_rounds = counts.get("delivered", 0)
            # Leases held by the last killed workers run out; then this process delivers what is left.
            time.sleep(soak.lease)
            report = ctx.drain(timeout=300)
            if not report:
                result.notes.append(f"outbox did not drain: {ctx.store.outbox_counts()}")
            deliveries = ctx.store.list_deliveries(backend="github", state="delivered", limit=10**6)
            result.reconciled = sum(1 for d in deliveries if d.attempts > 1)
            _count(ctx, double, cases, result)
        finally:
            ctx.close()
        result.requests, result.writes, result.dropped = (server.counts["requests"], server.counts["writes"],
                                                          server.counts["dropped"])
    result.spec_violations = len(violations("github")) - before_violations
    result.seconds = time.monotonic() - started
    return result


def _count(ctx: SharedContext, double: GitHubDouble, cases: list, result: SoakResult) -> None:
    issues_of: Counter[str] = Counter()
    for issue in double.issues.values():
        for case in cases:
            if f"<!-- {CASE_MARK}:{case.id} -->" in (issue.get("body") or ""):
                issues_of[case.id] += 1
    result.extra_threads = sum(n - 1 for n in issues_of.values() if n > 1)
    copies: Counter[tuple[str, int]] = Counter()
    resolved_notes: Counter[int] = Counter()
    for comment in double.comments.values():
        p = parse_github(comment["body"])
        if p:
            copies[(p[0], p[1])] += 1
        elif f"<!-- {RESOLVED_MARK}" in comment["body"]:
            resolved_notes[comment["_issue"]] += 1
    result.duplicates = sum(n - 1 for n in copies.values() if n > 1)
    result.extra_resolved_notes = sum(n - 1 for n in resolved_notes.values() if n > 1)
    held = {eid for eid, _ in copies}
    for case in cases:
        journal = case.timeline()
        result.entries += len(journal)
        result.losses += sum(1 for e in journal if e.id not in held)
        bound = case.info.bindings.get("github")
        if journal and journal[-1].kind == EntryKind.RESOLUTION:
            issue = double.issues.get(int(bound["id"])) if bound else None
            if issue is None or issue["state"] != "closed":
                result.unresolved += 1
