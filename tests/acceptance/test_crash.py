"""Crash test: kill -9 the recorder and the delivery worker at random moments, many times.

Each round starts a recorder (`python -m tests.acceptance._children record`, which appends an entry
id to an ack file only after `record()` returned) and a real `sharedctx worker` process delivering to
the `local` backend, then SIGKILLs each at its own random moment. After every restart, every
acknowledged entry is in the store exactly once with the seq it was acknowledged with. After a final
drain, every stored entry is in the case's `.jsonl` exactly once and in seq order, the `.md` shows
each once (in order), and `sharedctx verify` passes. Then one stored row is edited behind the
journal's back and `sharedctx verify` must exit 5 naming that entry.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from sharedctx.config import load_config
from sharedctx.context import SharedContext
from tests.acceptance.soak import kill_plan

ROOT = Path(__file__).resolve().parents[2]
# 16 rounds (was 25; each starts two processes, ~2 s a round): the kill points are stratified (`kill_plan`), so
# each process is killed twice in its startup and once in each sixteenth of the window, every run.
ROUNDS = 16
N_CASES = 3
# Each process is killed 0–1 s after it is working (the recorder acknowledged an entry, the worker said it
# is delivering), or, for 15% of kills, 0.1–0.8 s after it was spawned (in its startup). Timing kills from
# readiness rather than from the spawn keeps a loaded machine (slow imports) from turning every kill into
# one of a process that never worked.
KILL_WINDOW = (0.0, 1.0)
STARTUP_KILLS = 0.15
STARTUP_WINDOW = (0.1, 0.8)

CONFIG = """\
store = "journal.db"

[agent]
name = "crash-recorder"
kind = "primary"

[worker]
enabled = false
base_delay = 0.05
max_delay = 0.2
max_attempts = 1000
lease_seconds = 1.0
poll_interval = 0.05

[[backends]]
type = "local"
path = "cases"
"""


def _spawn(args: list[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, *args], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)


def _read_acks(ack: Path) -> list[tuple[str, str, int]]:
    """Complete ack lines only: a line cut by the kill was never acknowledged."""
    if not ack.exists():
        return []
    out = []
    for line in ack.read_text().split("\n")[:-1]:  # the text after the last newline is torn
        entry_id, case_id, seq = line.split()
        out.append((entry_id, case_id, int(seq)))
    return out


def _stored(db: Path) -> dict[str, tuple[str, int]]:
    """entry id -> (case id, seq), straight from the SQLite file, after asserting ids are unique."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT id, case_id, seq FROM entries").fetchall()
    finally:
        conn.close()
    counts = Counter(r[0] for r in rows)
    assert all(n == 1 for n in counts.values()), f"entries stored twice: {[i for i, n in counts.items() if n > 1]}"
    return {r[0]: (r[1], r[2]) for r in rows}


def _verify(config: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sharedctx.cli", "--config", str(config), "verify"],
        cwd=cwd, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.slow
def test_kill_9_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    config = tmp_path / "sharedctx.toml"
    config.write_text(CONFIG)
    ack, log = tmp_path / "acks.txt", tmp_path / "children.log"
    rng = random.Random()
    seed = rng.randrange(2**32)
    rng.seed(seed)
    kills = Counter[str]()
    plans = {name: kill_plan(rng, ROUNDS, STARTUP_KILLS, KILL_WINDOW) for name in ("recorder", "worker")}

    for round_no in range(ROUNDS):
        recorder = _spawn(
            ["-m", "tests.acceptance._children", "record", str(config), str(ack), str(N_CASES)], tmp_path, log
        )
        worker = _spawn(["-m", "sharedctx.cli", "--config", str(config), "worker"], tmp_path, log)
        started = time.monotonic()
        acked0 = ack.stat().st_size if ack.exists() else 0
        banners0 = log.read_bytes().count(b"delivering to") if log.exists() else 0

        def working(name: str, acked0: int = acked0, banners0: int = banners0) -> bool:
            if name == "recorder":
                return ack.exists() and ack.stat().st_size > acked0
            return log.read_bytes().count(b"delivering to") > banners0

        pending: dict[str, tuple[subprocess.Popen[bytes], float, bool]] = {}
        for name, proc in (("recorder", recorder), ("worker", worker)):
            early = round_no in plans[name][0]
            pending[name] = (proc, rng.uniform(*STARTUP_WINDOW) if early else plans[name][1][round_no], early)
        ready_at: dict[str, float] = {}
        while pending:
            now = time.monotonic()
            for name in list(pending):
                proc, offset, early = pending[name]
                if proc.poll() is not None:  # it died on its own: that is a failure, not a crash we caused
                    pytest.fail(
                        f"round {round_no}: {name} exited with {proc.returncode} before the kill "
                        f"(seed {seed}); see {log}:\n{log.read_text()[-3000:]}"
                    )
                if name not in ready_at and (early or working(name)):
                    ready_at[name] = started if early else now
                if name in ready_at and now >= ready_at[name] + offset:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    kills[name] += 1
                    del pending[name]
            if now - started > 120:
                pytest.fail(f"round {round_no}: {', '.join(pending)} never started working (seed {seed})")
            time.sleep(0.01)
        # After the restart (the next round's processes, or the checks below): nothing acked is lost.
        stored = _stored(tmp_path / "journal.db") if (tmp_path / "journal.db").exists() else {}
        for entry_id, case_id, seq in _read_acks(ack):
            assert stored.get(entry_id) == (case_id, seq), (
                f"round {round_no}: acknowledged entry {entry_id} (case {case_id} #{seq}) is not in the store "
                f"as acknowledged (seed {seed})"
            )

    acks = _read_acks(ack)
    assert kills == {"recorder": ROUNDS, "worker": ROUNDS}
    assert len(acks) > ROUNDS, f"too few acknowledged entries ({len(acks)}) for the test to mean anything"

    # Final drain in this process, then the backend must hold every stored entry exactly once, in order.
    ctx = SharedContext.open(load_config(config), worker=False)
    try:
        before = ctx.store.outbox_counts().get("local", {})
        assert before.get("delivered", 0) > 0, "the worker never delivered during the rounds: nothing was tested"
        retried = sum(1 for d in ctx.store.list_deliveries(backend="local", limit=10**7) if d.attempts > 1)
        assert ctx.drain(timeout=60), f"outbox did not drain: {ctx.store.outbox_counts()}"
        assert ctx.store.outbox_counts()["local"]["dead"] == 0, ctx.store.list_deliveries(state="dead")
        cases = ctx.cases(limit=100)
        assert len(cases) == N_CASES, "a fingerprint opened a second case after a crash"
        stored_ids: set[str] = set()
        for case in cases:
            entries = ctx.store.entries(case.id)
            assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
            stored_ids.update(e.id for e in entries)
            folder = tmp_path / "cases"
            lines = (folder / f"{case.id}.jsonl").read_text().splitlines()
            assert [json.loads(line)["id"] for line in lines] == [e.id for e in entries], (
                f"case {case.id}: .jsonl does not hold each stored entry exactly once in seq order"
            )
            md = (folder / f"{case.id}.md").read_text()
            markers = re.findall(r"<!-- sharedctx:entry (\S+) hash (\S+) -->", md)
            assert markers == [(e.id, e.hash) for e in entries], f"case {case.id}: .md does not list each entry once"
        assert {a[0] for a in acks} <= stored_ids
        victim = rng.choice([e for c in cases for e in ctx.store.entries(c.id)])
        print(
            f"seed {seed}: {len(acks)} acked, {len(stored_ids)} stored, {before.get('delivered', 0)} delivered "
            f"and {before.get('pending', 0)} pending before the final drain, {retried} re-claimed after a kill"
        )
    finally:
        ctx.close()

    ok = _verify(config, tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count("chain intact") == N_CASES

    # Tamper with one stored row: drop the append-only guard, edit a body.
    db = sqlite3.connect(tmp_path / "journal.db")
    db.execute("DROP TRIGGER entries_append_only_update")
    db.execute("UPDATE entries SET body = body || ' (quietly edited)' WHERE id = ?", (victim.id,))
    db.commit()
    db.close()
    bad = _verify(config, tmp_path)
    assert bad.returncode == 5, bad.stdout + bad.stderr
    assert victim.id in bad.stdout and f"#{victim.seq} " in bad.stdout, bad.stdout
    assert bad.stdout.count("FAIL") == 1, f"only the edited entry should be named:\n{bad.stdout}"
