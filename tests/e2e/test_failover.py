"""Two real `sharedctx serve` replicas on one store; one is stopped in the middle of an investigation.

The harness is the failover bench's (`bench/fleet_parts/failover.py`): two processes on one PostgreSQL
database (and one SQLite file), a partner that takes 2 s per question (4 s for SIGTERM, so A's 1 s drain
cannot finish the consult it was stopped in), the same Alertmanager alert
posted to both replicas, and replica A stopped while its investigation is consulting that partner.
Everything asserted is read back from the journal and the investigations table afterwards.

- kill -9: B takes over once A's lease (3 s) expires; the case is investigated and closed once, by B,
  and every primary-agent entry appears exactly once (by kind and title).
- SIGTERM: A drains (drain_seconds = 1), releases the lease and exits 0; B takes over well before the
  lease (30 s) could have expired.

Before this change each replica investigated from memory: the kill -9 run left the case half done
(nothing resumed it) and there was no lease for B to take over.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.fleet_parts.failover import Result, fresh_pg, scenario
from tests.conftest import PG_ADMIN

pytestmark = pytest.mark.slow
# The partner's wait per question under kill -9. Long enough that A is still consulting when it is killed
# (0.5 s after it was seen consulting; `check` asserts it), short enough that the survivor's redone consult
# and its verify step do not dominate the test (4 s made each kill scenario ~7 s longer).
KILL_DELAY = 2.0


@pytest.fixture(scope="module")
def pg_db() -> Iterator[str]:
    url, drop = fresh_pg(PG_ADMIN)
    yield url
    drop()


def check(r: Result) -> None:
    assert not r.problems, "\n".join(r.problems)
    assert r.a_step_at_stop == "consult"  # A really was mid-investigation when it was stopped
    assert r.cases == 1  # the alert posted to both replicas opened one case
    assert r.closed_once
    assert r.duplicated_steps == 0
    # the survivor ran what was left, starting with the step A was in
    assert r.steps_by_survivor[:4] == ["consult", "correlate", "remediate", "handoff"], r.steps_by_survivor


def test_kill_9_mid_investigation_on_postgres_the_survivor_finishes_it_once(pg_db: str) -> None:
    r = scenario(pg_db, how="kill", lease=3.0, delay=KILL_DELAY)
    check(r)
    assert r.exit_code == -9
    assert r.takeover_s is not None and r.takeover_s < 3.0 + 10  # the lease, one scan, and a loaded machine


def test_kill_9_mid_investigation_on_sqlite_the_survivor_finishes_it_once(tmp_path: Path) -> None:
    r = scenario(str(tmp_path / "journal.db"), how="kill", lease=3.0, delay=KILL_DELAY)
    check(r)


def test_sigterm_drains_releases_the_lease_and_the_other_replica_takes_over_at_once(pg_db: str) -> None:
    r = scenario(pg_db, how="term", lease=30.0, drain=1.0, delay=4.0)
    check(r)
    assert r.exit_code == 0
    assert r.takeover_s is not None and r.takeover_s < 10, r.takeover_s  # not the 30 s lease expiry
