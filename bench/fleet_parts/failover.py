"""Failover: two `sharedctx serve` replicas on one store; one is stopped mid-investigation.

Each scenario starts two real `sharedctx serve` processes (A and B) on one database, with a slow
partner (`slow_partner.py`) so the investigation is still consulting when A goes. The same Alertmanager
alert is posted to both replicas (A first). When A's investigation is in its consult step, A is
stopped — `kill -9` (the lease must expire) or SIGTERM (A drains and releases the lease). Measured:

- takeover: from the stop to B holding the investigation's lease (read from the store);
- first step: from the stop to B's first recorded step (the entry's own timestamp);
- closed once: after a `resolved` notification to B, the case is resolved with exactly one
  verification and one resolution;
- duplicated steps: primary-agent entries that appear more than once by (kind, title) (must be 0);
- cases: how many cases the alert, posted to both replicas at once, opened (must be 1). Whichever
  replica opened it owns the investigation and is the one stopped ("A").

Everything is read back from the journal, never from what the harness meant to happen.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from sharedctx.channel.net import free_port
from sharedctx.store.base import Store, open_store

from . import Section

ROOT = Path(__file__).resolve().parents[2]
SERVE = [str(Path(sys.executable).parent / "sharedctx"), "serve"]


def alert_payload(fingerprint: str, status: str = "firing") -> dict[str, Any]:
    """An Alertmanager v4 webhook body with one alert (its fingerprint names the case)."""
    starts = "2026-01-01T10:00:00Z"
    return {
        "version": "4", "status": status, "receiver": "sharedctx", "groupKey": f"{{}}:{{alertname=\"{fingerprint}\"}}",
        "groupLabels": {"alertname": "CheckoutHighErrorRate"}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093", "truncatedAlerts": 0,
        "alerts": [{
            "status": status, "fingerprint": fingerprint,
            "labels": {"alertname": "CheckoutHighErrorRate", "service": "checkout", "severity": "critical"},
            "annotations": {"summary": "Checkout 5xx ratio above 5%"},
            "startsAt": starts, "endsAt": "2026-01-01T10:20:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph",
        }],
    }  # fmt: skip


@dataclass
class Replica:
    """One `sharedctx serve` process, its port and its log."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, name: str, workdir: Path) -> Replica:
        port = free_port()
        log = workdir / f"serve-{name}-{port}.log"
        env = {**os.environ, "SHAREDCTX_CONFIG": str(workdir / "sharedctx.toml"), "PYTHONPATH": str(ROOT)}
        with log.open("wb") as out:
            proc = subprocess.Popen([*SERVE, "--port", str(port)], cwd=workdir, env=env, stdout=out,
                                    stderr=subprocess.STDOUT)  # fmt: skip
        return cls(name, port, proc, log)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"replica {self.name} exited {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"replica {self.name} not ready in {timeout}s:\n{self.log.read_text()}")

    def post(self, payload: dict[str, Any]) -> dict[str, Any]:
        r = httpx.post(f"{self.url}/alerts/alertmanager", json=payload, timeout=30)
        r.raise_for_status()
        result: dict[str, Any] = r.json()["alerts"][0]
        return result

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@dataclass
class Result:
    """What one failover scenario measured, read back from the journal."""

    how: str  # "kill -9" or "SIGTERM"
    store: str
    takeover_s: float | None = None
    first_step_s: float | None = None
    closed_once: bool = False
    duplicated_steps: int = -1
    cases: int = 0
    steps_by_survivor: list[str] = field(default_factory=list)
    exit_code: int | None = None  # of the stopped replica
    exit_s: float | None = None  # from the signal to the stopped replica's exit
    a_step_at_stop: str = ""
    intake: str = ""  # what the two replicas answered to the alert posted to both at once
    problems: list[str] = field(default_factory=list)


def write_config(workdir: Path, store_url: str, *, lease: float, drain: float, delay: float) -> None:
    partner = [sys.executable, "-m", "bench.fleet_parts.slow_partner", "--delay", str(delay)]
    workdir.joinpath("sharedctx.toml").write_text(
        f"store = {json.dumps(store_url)}\n[worker]\nenabled = false\n"
        f"[server]\ninvestigation_lease = {lease}\ndrain_seconds = {drain}\n"
        f"[[partners]]\nname = \"slow\"\ntransport = \"stdio\"\ncommand = {json.dumps(partner)}\ntimeout = 60\n"
        f"env = {{ PYTHONPATH = {json.dumps(str(ROOT))} }}\n",
        encoding="utf-8",
    )


def _wait(what: str, check: Any, timeout: float, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")


def scenario(store_url: str, *, how: str, lease: float, drain: float = 1.0, delay: float = 4.0) -> Result:
    """Run one failover: A takes the alert, A is stopped (`how`: "kill" or "term") mid-consult, B finishes."""
    result = Result(how="kill -9" if how == "kill" else "SIGTERM",
                    store="PostgreSQL" if "://" in store_url else "SQLite")
    workdir = Path(tempfile.mkdtemp(prefix="sharedctx-failover-"))
    write_config(workdir, store_url, lease=lease, drain=drain, delay=delay)
    a = Replica.start("A", workdir)
    b = Replica.start("B", workdir)
    store: Store | None = None
    try:
        a.wait_ready()
        b.wait_ready()
        store = open_store(store_url)
        fp = f"failover-{uuid.uuid4().hex[:12]}"
        with ThreadPoolExecutor(2) as pool:  # the same notification to both replicas at once
            first, again = pool.map(lambda r: r.post(alert_payload(fp)), (a, b))
        cid = first["case_id"]
        result.intake = f"{first['action']} / {again['action']}"
        if again["case_id"] != cid:
            result.problems.append(f"the alert posted to both replicas gave two cases: {first} / {again}")

        def owner_is(r: Replica) -> bool:
            inv = store.get_investigation(cid)  # type: ignore[union-attr]
            return inv is not None and f":{r.proc.pid}:" in (inv.owner or "")

        if owner_is(b):  # B's intake won the race: B is the one to stop
            a, b = b, a
            a.name, b.name = "A", "B"
        a_pid = f":{a.proc.pid}:"

        def a_consulting() -> bool:
            inv = store.get_investigation(cid)  # type: ignore[union-attr]
            return inv is not None and inv.step == "consult" and a_pid in (inv.owner or "")

        _wait("A to be consulting the slow partner", a_consulting, 60)
        time.sleep(min(1.0, delay / 4))  # well inside the partner's wait
        inv = store.get_investigation(cid)
        result.a_step_at_stop = inv.step if inv else "?"
        before = {e.id for e in store.entries(cid)}
        stopped = time.time()
        a.proc.send_signal(signal.SIGKILL if how == "kill" else signal.SIGTERM)
        result.exit_code = a.proc.wait(30 + drain)
        result.exit_s = time.time() - stopped

        def b_holds() -> bool:
            inv = store.get_investigation(cid)  # type: ignore[union-attr]
            return inv is not None and (inv.owner or "").find(f":{b.proc.pid}:") >= 0

        _wait("B to take the investigation over", b_holds, lease + 30, every=0.02)
        result.takeover_s = time.time() - stopped
        new = _wait("B's first step", lambda: [e for e in store.entries(cid)  # type: ignore[union-attr]
                                                if e.id not in before and e.author.kind == "primary"], 60)  # fmt: skip
        result.first_step_s = min(e.ts.timestamp() for e in new) - stopped
        _wait("B to finish the investigation", lambda: (i := store.get_investigation(cid)) is not None  # type: ignore[union-attr]
              and i.step == "awaiting-recovery" and i.owner is None, 120)  # fmt: skip
        b.post(alert_payload(fp, "resolved"))
        _wait("B to verify and close the case", lambda: store.get_case(cid).status == "resolved", 120)  # type: ignore[union-attr]
        time.sleep(0.5)
        entries = store.entries(cid)
        primary = [e for e in entries if e.author.kind == "primary"]
        counts = Counter((e.kind.value, e.title) for e in primary)
        result.duplicated_steps = sum(n - 1 for n in counts.values())
        kinds = Counter(e.kind.value for e in entries)
        result.closed_once = (kinds["verification"] == 1 and kinds["resolution"] == 1
                              and store.get_case(cid).status == "resolved")
        result.steps_by_survivor = [str(e.attrs.get("step")) for e in primary if e.id not in before]
        result.cases = sum(1 for c in store.list_cases(limit=1000) if c.fingerprint == f"alertmanager:{fp}")
        for kind in ("triage", "handoff", "verification", "resolution"):
            if kinds[kind] != 1:
                result.problems.append(f"{kinds[kind]} {kind} entries (expected 1)")
    except Exception as exc:
        result.problems.append(f"{type(exc).__name__}: {exc}")
        for r in (a, b):
            result.problems.append(f"--- {r.name} log (tail) ---\n" + "\n".join(r.log.read_text().splitlines()[-25:]))
    finally:
        a.stop()
        b.stop()
        if os.environ.get("FAILOVER_KEEP_LOGS"):
            for r in (a, b):
                shutil.copy(r.log, Path(os.environ["FAILOVER_KEEP_LOGS"]) / r.log.name)
        if store is not None:
            store.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def fresh_pg(pg_url: str) -> tuple[str, Any]:
    """A throwaway database next to `pg_url`; returns its URL and a function that drops it."""
    name = f"failover_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = pg_url.rsplit("/", 1)[0] + f"/{name}"

    def drop() -> None:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return url, drop


def run(pg_url: str, quick: bool) -> Section:
    lease, term_lease, drain = 5.0, 30.0, 1.0
    section = Section(
        title=f"Failover: two `sharedctx serve` replicas on one store (slow partner: 4 s a question; lease {lease:g} s "
              f"for kill -9, {term_lease:g} s for SIGTERM with drain_seconds {drain:g})",
        columns=["stop", "store", "A was at", "A exited s", "take over s", "first step s", "closed once",
                 "dup steps", "cases", "intake (both at once)", "A exit"],
    )  # fmt: skip
    url, drop = fresh_pg(pg_url)
    sqlite_dir = Path(tempfile.mkdtemp(prefix="sharedctx-failover-sqlite-"))
    try:
        runs = [scenario(url, how="kill", lease=lease), scenario(url, how="term", lease=term_lease, drain=drain)]
        if not quick:
            runs.append(scenario(str(sqlite_dir / "journal.db"), how="kill", lease=lease))
    finally:
        drop()
        shutil.rmtree(sqlite_dir, ignore_errors=True)
    for r in runs:
        section.rows.append([r.how, r.store, r.a_step_at_stop, f"{r.exit_s:.2f}" if r.exit_s else "-",
                             f"{r.takeover_s:.2f}" if r.takeover_s else "-",
                             f"{r.first_step_s:.2f}" if r.first_step_s else "-", "yes" if r.closed_once else "NO",
                             str(r.duplicated_steps), str(r.cases), r.intake, str(r.exit_code)])  # fmt: skip
        for p in r.problems:
            section.notes.append(f"{r.how} on {r.store}: {p}")
        ok = r.closed_once and r.duplicated_steps == 0 and r.cases == 1 and not r.problems
        section.verdicts.append(f"{r.how} on {r.store}: closed once, 0 duplicated steps, one case: "
                                f"{'PASS' if ok else 'FAIL'}")  # fmt: skip
    term = [r for r in runs if r.how == "SIGTERM"]
    for r in term:
        fast = r.takeover_s is not None and r.takeover_s < term_lease
        verdict = "PASS" if fast and r.exit_code == 0 else "FAIL"
        section.verdicts.append(f"SIGTERM: exit {r.exit_code} and take-over before the lease could expire "
                                f"({r.takeover_s or 0:.2f} s < {term_lease:g} s): {verdict}")  # fmt: skip
    section.notes.append(f"load: {os.getloadavg()[0]:.2f} (1-min) on {os.cpu_count()} cores. Take over: from the "
                         "signal to B holding the lease (kill -9: the lease's rest + one scan ≤ 1 s; SIGTERM: the "
                         "drain + one scan). First step: to B's first recorded step, which is the consult A was in, "
                         "redone: a new partner process and its 4 s answers.")  # fmt: skip
    return section
