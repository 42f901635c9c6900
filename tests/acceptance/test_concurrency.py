"""Property: any interleaving of `record()` from several threads and two processes keeps every case's
journal whole — sequences 1..n with no gap or repeat, every call's entry stored exactly once with the
seq it was returned with, one outbox row per entry and backend, and an intact hash chain.

Hypothesis chooses the plan: how many cases, how many threads in this process (sharing one
`SharedContext` or each with its own connection), what each of two `spawn`ed processes (each with
one or two threads) records into which case, and short pauses that shift the interleaving. All
participants start at the same wall-clock instant. The same property runs on SQLite (one file, many
connections and processes) and on PostgreSQL.
"""

from __future__ import annotations

import multiprocessing
import queue
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sharedctx.context import SharedContext
from sharedctx.store.base import Store

from ._children import Returned, Step, make_config, participant_loop, run_threads

N_PROCS = 2
MAX_MAIN_THREADS = 4
START_DELAY = 0.15  # seconds from handing out the plans to the common start instant
RESULT_TIMEOUT = 60.0


@dataclass
class Scenario:
    n_cases: int
    shared_ctx: bool  # this process's threads share one SharedContext, or each has its own
    main_plans: list[list[Step]]  # one plan per thread in this process
    proc_plans: list[list[list[Step]]]  # per child process, one plan per thread

    def planned(self) -> Counter[int]:
        c: Counter[int] = Counter()
        for plan in [*self.main_plans, *(p for proc in self.proc_plans for p in proc)]:
            c.update(case for case, _ in plan)
        return c


PAUSES = st.sampled_from([0.0, 0.0, 0.0, 0.0001, 0.0005, 0.002])


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    n_cases = draw(st.integers(1, 3))
    step = st.tuples(st.integers(0, n_cases - 1), PAUSES)
    plan = st.lists(step, min_size=0, max_size=12)
    return Scenario(
        n_cases=n_cases,
        shared_ctx=draw(st.booleans()),
        main_plans=draw(st.lists(plan, min_size=1, max_size=MAX_MAIN_THREADS)),
        proc_plans=[draw(st.lists(plan, min_size=1, max_size=2)) for _ in range(N_PROCS)],
    )


# -- the oracle -----------------------------------------------------------------------------------
def check_journal(
    store: Store, ctx: SharedContext, case_ids: list[str], returned: list[Returned], planned: dict[str, int]
) -> None:
    """Everything the property promises, for the cases of one example. Raises AssertionError."""
    ids = [r[1] for r in returned]
    assert len(ids) == len(set(ids)), "record() returned the same entry id twice"
    pending = store.list_deliveries(state="pending", backend="local", limit=10**7)
    for case_id in case_ids:
        stored = store.entries(case_id)
        n = planned.get(case_id, 0)
        assert [e.seq for e in stored] == list(range(1, n + 1)), f"case {case_id}: seqs not 1..{n}"
        mine = sorted((r for r in returned if r[0] == case_id), key=lambda r: r[2])
        assert [(e.id, e.seq, e.body) for e in stored] == [(r[1], r[2], r[3]) for r in mine], (
            f"case {case_id}: stored entries differ from what record() returned"
        )
        report = ctx.case(case_id).verify()
        assert report.ok, report.issues
        info = store.get_case(case_id)
        assert info.last_seq == n
        if stored:
            assert info.last_hash == stored[-1].hash
        outbox = Counter(d.entry_id for d in pending if d.case_id == case_id)
        assert outbox == Counter(e.id for e in stored), f"case {case_id}: not one outbox row per entry"


def check_thread_order(per_thread: list[list[Returned]]) -> None:
    """Within one thread, a later call gets a later seq in the same case."""
    for results in per_thread:
        last: dict[str, int] = {}
        for case_id, _, seq, _ in results:
            assert seq > last.get(case_id, 0), f"seq went backwards within one thread in case {case_id}"
            last[case_id] = seq


# -- fixtures -------------------------------------------------------------------------------------
@dataclass
class Procs:
    tasks: list[Any]
    results: Any

    def collect(self, label: str) -> list[tuple[str, str, Any]]:
        """The answers of every child to the task labelled `label`; stale answers to an aborted
        earlier example are dropped, so they can never be mistaken for this example's."""
        out: list[tuple[str, str, Any]] = []
        deadline = time.monotonic() + RESULT_TIMEOUT
        while len(out) < len(self.tasks):
            try:
                answer = self.results.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"a child process did not answer within {RESULT_TIMEOUT}s")
            if answer[0].startswith(f"{label}/"):
                out.append(answer)
        return out


@pytest.fixture(scope="module")
def procs() -> Iterator[Procs]:
    mp = multiprocessing.get_context("spawn")
    results = mp.Queue()
    tasks = [mp.Queue() for _ in range(N_PROCS)]
    workers = [mp.Process(target=participant_loop, args=(q, results), daemon=True) for q in tasks]
    for w in workers:
        w.start()
    yield Procs(tasks, results)
    for q in tasks:
        q.put(None)
    for w in workers:
        w.join(10)
        if w.is_alive():
            w.kill()


@dataclass
class Journal:
    url: str
    base_dir: str
    contexts: list[SharedContext]  # contexts[0] is also used for checking


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def journal(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, procs: Procs
) -> Iterator[Journal]:
    base = tmp_path_factory.mktemp(f"concurrency-{request.param}")
    url = str(base / "journal.db") if request.param == "sqlite" else request.getfixturevalue("acceptance_pg_url")
    cfg = make_config(url, str(base))
    contexts = [SharedContext.open(cfg, worker=False) for _ in range(MAX_MAIN_THREADS)]
    # Warm up: let each child open its context now, so the first example's start instant is shared.
    for k, q in enumerate(procs.tasks):
        q.put((url, str(base), [], [], f"warmup/p{k}", 0.0))
    for label, status, detail in procs.collect("warmup"):
        assert status == "ok", f"{label}: {detail}"
    yield Journal(url, str(base), contexts)
    for c in contexts:
        c.close()


# -- the property ---------------------------------------------------------------------------------
@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(sc=scenarios())
def test_any_interleaving_keeps_every_journal_whole(journal: Journal, procs: Procs, sc: Scenario) -> None:
    owner = journal.contexts[0]
    case_ids = [owner.open_case(f"prop {uuid.uuid4().hex[:8]}", service="prop").id for _ in range(sc.n_cases)]
    label = uuid.uuid4().hex[:8]
    start_at = time.time() + START_DELAY
    for k, q in enumerate(procs.tasks):
        q.put((journal.url, journal.base_dir, case_ids, sc.proc_plans[k], f"{label}/p{k}", start_at))
    contexts = journal.contexts[:1] if sc.shared_ctx else journal.contexts
    try:
        per_thread = run_threads(contexts, case_ids, sc.main_plans, f"{label}/m", start_at)
    finally:
        answers = procs.collect(label)  # always wait for the children, even when this process failed
    for child_label, status, detail in answers:
        assert status == "ok", f"{child_label} failed: {detail}"
        per_thread.extend(detail)

    check_thread_order(per_thread)
    returned = [r for results in per_thread for r in results]
    planned = {case_ids[i]: n for i, n in sc.planned().items()}
    assert len(returned) == sum(planned.values())
    check_journal(owner.store, owner, case_ids, returned, planned)


# -- the oracle has teeth -------------------------------------------------------------------------
def test_the_oracle_catches_lost_edited_and_phantom_entries(tmp_path: Path) -> None:
    """`check_journal` must fail on a journal that breaks the property, or the property proves nothing."""
    ctx = SharedContext.open(make_config(str(tmp_path / "journal.db"), str(tmp_path)), worker=False)
    try:
        case = ctx.open_case("oracle")
        returned: list[Returned] = []
        for i in range(5):
            e = case.record("note", f"n{i}", f"body {i}")
            returned.append((case.id, e.id, e.seq, e.body))
        planned = {case.id: 5}
        check_journal(ctx.store, ctx, [case.id], returned, planned)  # the honest journal passes

        phantom = (case.id, "01PHANTOM", 6, "never stored")
        with pytest.raises(AssertionError):  # a returned entry that is not stored
            check_journal(ctx.store, ctx, [case.id], [*returned, phantom], {case.id: 6})
        with pytest.raises(AssertionError):  # a returned id reported twice
            check_journal(ctx.store, ctx, [case.id], [*returned, returned[0]], planned)
        with pytest.raises(AssertionError):  # seq goes backwards within a thread
            check_thread_order([[returned[1], returned[0]]])

        db = sqlite3.connect(tmp_path / "journal.db")
        db.execute("DROP TRIGGER entries_append_only_update")
        db.execute("UPDATE entries SET body = 'edited' WHERE id = ?", (returned[2][1],))
        db.commit()
        db.close()
        with pytest.raises(AssertionError):  # an entry edited behind the journal's back
            check_journal(ctx.store, ctx, [case.id], returned, planned)
    finally:
        ctx.close()
