"""Shared fixtures. The `store` fixture runs every store test on SQLite AND on a real PostgreSQL.

PostgreSQL comes from $SHAREDCTX_TEST_PG (default: the local server with trust auth). One
throwaway database per test session; tables are truncated between tests (TRUNCATE does not fire
the append-only row triggers, which is exactly why tests may use it and the API never does).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from sharedctx.config import Config, parse_config
from sharedctx.context import SharedContext
from sharedctx.store.base import Store
from sharedctx.store.postgres import PostgresStore
from sharedctx.store.sqlite import SQLiteStore
from sharedctx.testing import FakeBackend

# The semantic layer (sharedctx[semantic], which CI installs) stays off unless a test turns it on: the other
# suites assert lexical rankings, and would otherwise load the model and start an indexer thread per store.
os.environ.setdefault("SHAREDCTX_SEMANTIC", "off")

PG_ADMIN = os.environ.get("SHAREDCTX_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    name = f"sharedctx_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
            # No test crashes the PostgreSQL server (it is shared), so waiting for each commit's WAL flush proves
            # nothing here and costs every PostgreSQL test its fsyncs on a busy machine. Commits stay atomic and
            # visible to other connections at once; only a server crash could lose the last few.
            conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is required for the store suite ({PG_ADMIN}): {exc}. Start it (see .ci/run).")
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


RESET_TABLES = ("cases", "entries", "outbox", "backend_state", "cursors", "checkpoints", "checkpoint_heads")


def empty_pg(store: PostgresStore, roots: tuple[str, ...]) -> None:
    """What `TRUNCATE <roots> CASCADE` does, in a few milliseconds instead of ~250 ms (TRUNCATE swaps every
    table's files, ~11 with the cascade, on each of the ~150 PostgreSQL tests): DELETE from the same tables, with
    triggers and foreign-key checks off for this transaction (`session_replication_role = replica`), so the
    append-only row triggers do not fire, as with TRUNCATE. Falls back to TRUNCATE for a non-superuser."""
    with store._pool.connection() as conn:
        tables = set(roots)  # the roots and every table whose foreign key reaches one of them, read each time
        while True:
            rows = conn.execute(
                "SELECT DISTINCT conrelid::regclass::text FROM pg_constraint WHERE contype = 'f' "
                "AND confrelid::regclass::text = ANY(%s)", (sorted(tables),)).fetchall()
            new = {r[0] for r in rows} - tables
            if not new:
                break
            tables |= new
        try:
            with conn.transaction():
                conn.execute("SET LOCAL session_replication_role = replica")
                for table in sorted(tables):
                    conn.execute(f"DELETE FROM {table}")
        except psycopg.errors.InsufficientPrivilege:
            conn.execute(f"TRUNCATE {', '.join(roots)} CASCADE")


@pytest.fixture(scope="session")
def _pg_store(pg_url: str) -> Iterator[PostgresStore]:
    store = PostgresStore(pg_url)
    yield store
    store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        s = SQLiteStore(tmp_path / "journal.db")
        yield s
        s.close()
    else:
        pg: PostgresStore = request.getfixturevalue("_pg_store")
        empty_pg(pg, RESET_TABLES)
        yield pg


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return parse_config({"store": "journal.db", "backends": [{"type": "local"}]}, base_dir=tmp_path)


@pytest.fixture
def fake() -> FakeBackend:
    return FakeBackend("fake")


@pytest.fixture
def ctx(config: Config, store: Store, fake: FakeBackend) -> Iterator[SharedContext]:
    """A context over the parametrised store with one in-memory backend and no background worker."""
    c = SharedContext.open(config, store=store, backends={"fake": fake}, worker=False)
    yield c
    c.worker.stop()
