"""Indexed lookups (issue 13): with 20,000 cases in the journal, a webhook finds its case, a poll round
reads only live bound cases, and `find_case` finds case #15,000 (and #5,000, beyond the old 10,000-case
cap) by every kind of reference, each in a handful of statements and rows, on SQLite and PostgreSQL.

The promises are counted, not timed: `metered` counts every statement the store runs and every row it
fetches. The code before the index read every case (`list_cases(limit=100_000)`): 20,000 rows per
webhook miss and per poll round, and `find_case` gave up after the newest 10,000.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import json
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from sharedctx.backends.base import ReadBack, ThreadRef
from sharedctx.backends.github import GitHubBackend, GitHubOptions
from sharedctx.config import Config, parse_config
from sharedctx.context import SharedContext
from sharedctx.errors import AmbiguousCase, CaseNotFound
from sharedctx.humans import Humans, Poller
from sharedctx.model import utcnow
from sharedctx.store.base import Store, read_migrations
from sharedctx.store.postgres import PostgresStore
from sharedctx.store.sql.bindings import binding_rows
from sharedctx.store.sqlite import SQLiteStore
from sharedctx.testing import FakeBackend
from sharedctx.webhooks import WebhookReceiver
from tests.conftest import PG_ADMIN
from tests.data.bulk_cases import BACKENDS, FLAPPY, SHARED_LABEL, Filled, fill, metered, thread

N = 20_000
TARGETS = (14_999, 4_999)  # case #15,000, and #5,000: older than the newest 10,000 the old find_case read
HOOK_SECRET = "lookup-hook-secret"


@contextmanager
def pg_database(prefix: str, template: str | None = None) -> Iterator[tuple[str, str]]:
    """A throwaway PostgreSQL database (a copy of `template` if given): its (name, url), dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    try:
        yield name, PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def _templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[str, Filled]]]:
    """20,000 cases written once per dialect (a SQLite file, a PostgreSQL template database), not once per test:
    the fill is most of this module's time (~5-12 s a copy on a loaded machine). Each test still gets a copy of
    its own (`filled_store`), so what one test writes never reaches another."""
    folder = tmp_path_factory.mktemp("lookups-template")
    sqlite_path = folder / "template.db"
    s = SQLiteStore(sqlite_path)
    sqlite_filled = fill(s, N, everywhere=TARGETS)
    s.close()
    with pg_database("sharedctx_lookups_tpl") as (name, url):
        pg = PostgresStore(url)
        pg_filled = fill(pg, N, everywhere=TARGETS)
        pg.close()  # CREATE DATABASE ... TEMPLATE needs the template to have no connections
        yield {"sqlite": (str(sqlite_path), sqlite_filled), "postgres": (name, pg_filled)}


@pytest.fixture(params=["sqlite", "postgres"])
def filled_store(request: pytest.FixtureRequest, tmp_path: Path,
                 _templates: dict[str, tuple[str, Filled]]) -> Iterator[tuple[Store, Filled]]:
    """A fresh store holding its own copy of the 20,000 filled cases, and what `fill` wrote into it."""
    source, filled = _templates[request.param]
    filled = copy.deepcopy(filled)
    if request.param == "sqlite":
        # SQLite's backup API, not a file copy: what is still in the template's WAL is copied too
        with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(tmp_path / "journal.db")) as dst:
            src.backup(dst)
        s: Store = SQLiteStore(tmp_path / "journal.db")
        yield s, filled
        s.close()
        return
    with pg_database("sharedctx_lookups", template=source) as (_, url):
        s = PostgresStore(url)
        try:
            yield s, filled
        finally:
            s.close()


@pytest.fixture
def filled(filled_store: tuple[Store, Filled]) -> Filled:
    return filled_store[1]


@pytest.fixture
def lookup_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("LOOKUP_HOOK_SECRET", HOOK_SECRET)
    monkeypatch.setenv("GITHUB_TOKEN", "gh-test-token")
    return parse_config({"store": "journal.db", "backends": [{"type": "local"}],
                         "humans": {"webhooks": {"github": {"secret": "env:LOOKUP_HOOK_SECRET"}}}},
                        base_dir=tmp_path)  # fmt: skip


class Reader(FakeBackend):
    """A backend that records which threads a poll read back."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.read: list[str] = []

    def read_back(self, thread: ThreadRef, since: str | None = None) -> ReadBack:
        self.read.append(thread.id)
        return ReadBack()


def no_network(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"a plain comment by webhook needs no call to GitHub, got {request.url}")


def _ctx(store: Store, lookup_config: Config) -> Iterator[SharedContext]:
    github = GitHubBackend("github", GitHubOptions(repo="acme/payments", token="env:GITHUB_TOKEN", max_block=0.0),
                           client=httpx.Client(transport=httpx.MockTransport(no_network)))
    backends = {"github": github, "pagerduty": Reader("pagerduty")}
    ctx = SharedContext.open(lookup_config, store=store, backends=backends, worker=False)  # type: ignore[arg-type]
    yield ctx
    ctx.worker.stop()


@pytest.fixture
def ctx_over(store: Store, lookup_config: Config) -> Iterator[SharedContext]:
    """A context over the suite's (empty) parametrised store."""
    yield from _ctx(store, lookup_config)


@pytest.fixture
def filled_ctx(filled_store: tuple[Store, Filled], lookup_config: Config) -> Iterator[SharedContext]:
    """A context over a store holding the 20,000 filled cases."""
    yield from _ctx(filled_store[0], lookup_config)


def comment_hook(number: int, text: str, comment_id: int) -> tuple[bytes, dict[str, str]]:
    payload = {"action": "created", "issue": {"number": number},
               "comment": {"id": comment_id, "body": text, "user": {"login": "alice"},
                           "created_at": "2026-12-03T12:00:00Z",
                           "html_url": f"https://github.com/acme/payments/issues/{number}#issuecomment-{comment_id}"}}
    body = json.dumps(payload).encode()
    sig = hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {"x-github-event": "issue_comment", "x-github-delivery": f"d-{comment_id}",
                  "x-hub-signature-256": f"sha256={sig}"}  # fmt: skip


# -- webhooks ---------------------------------------------------------------------------------------
def test_a_webhook_for_a_bound_thread_reaches_its_case_in_a_few_rows(
    filled_ctx: SharedContext, filled: Filled
) -> None:
    receiver = WebhookReceiver(filled_ctx, Humans(filled_ctx))
    target = filled.ids[TARGETS[0]]
    body, headers = comment_hook(TARGETS[0] + 1, "the pool is exhausted again", 77)
    with metered(filled_ctx.store) as m:
        status, out = asyncio.run(receiver.handle("github", body, headers))
    assert status == 200 and [r["case"] for r in out["results"]] == [target]
    assert filled_ctx.store.entries(target)[-1].body.startswith("the pool is exhausted again")
    # dedupe, lookup, the note with its outbox rows: the same handful however many cases there are
    assert m.rows <= 20 and m.statements <= 30, (m.rows, m.statements, m.sql)

    body, headers = comment_hook(N + 5, "a thread no case is bound to", 78)  # a miss used to read them all
    with metered(filled_ctx.store) as m:
        status, out = asyncio.run(receiver.handle("github", body, headers))
    assert out["results"] == [{"thread": str(N + 5), "case": None, "meaning": "no case is bound to this thread"}]
    assert m.rows <= 3 and m.statements <= 5, (m.rows, m.statements, m.sql)


def test_every_backends_thread_key_finds_its_case_in_one_statement(filled_store: tuple[Store, Filled], filled: Filled,
                                                                   filled_ctx: SharedContext) -> None:
    store = filled_store[0]
    humans = Humans(filled_ctx)
    for i in TARGETS:
        for backend in BACKENDS:
            t = thread(backend, i)
            keys = [t["id"], *([t["number"]] if "number" in t else [])]  # ServiceNow: sys_id or INC number
            for key in keys:
                with metered(store) as m:
                    assert humans.case_for(backend, key) == filled.ids[i], (backend, key)
                assert (m.statements, m.rows) == (1, 1)
        assert humans.case_for("jira", thread("github", i)["id"]) is None  # keys are per backend
        assert humans.case_for("github", thread("github", i)["url"]) is None  # a URL is not a webhook's key


# -- polling ----------------------------------------------------------------------------------------
def test_a_poll_round_reads_only_live_cases_bound_to_each_backend(filled_ctx: SharedContext, filled: Filled) -> None:
    github = Reader("github")
    filled_ctx.backends["github"] = github
    pagerduty = filled_ctx.backends["pagerduty"]
    assert isinstance(pagerduty, Reader)
    poller = Poller(filled_ctx)
    with metered(filled_ctx.store) as m:
        poller.poll_once()
    for name, reader in (("github", github), ("pagerduty", pagerduty)):
        expected = {thread(name, filled.ids.index(c))["id"] for c in filled.live_on(name)}
        assert sorted(reader.read) == sorted(expected), name
    live = len(filled.live_on("github")) + len(filled.live_on("pagerduty"))
    assert 0 < live < 200  # open, mitigated and just-resolved cases out of 20,000
    # one listing per backend, then one cursor read per live thread: nothing else, and no resolved case
    assert m.statements == len(filled_ctx.backends) + live, (m.statements, live)
    assert m.rows <= 2 * live, (m.rows, live)
    assert poller.stats.cases == len(filled.live_on("github") | filled.live_on("pagerduty"))
    assert set(poller.live_cases()) == filled.live_on("github") | filled.live_on("pagerduty")


def test_a_case_resolved_longer_ago_than_poll_resolved_for_is_no_longer_read(
    ctx_over: SharedContext, store: Store
) -> None:
    github = Reader("github")
    ctx_over.backends = {"github": github}
    case = ctx_over.open_case("resolved a moment ago")
    store.set_binding(case.id, "github", {"backend": "github", "id": "7"})
    case.resolve("fixed")
    assert Poller(ctx_over).live_cases() == [case.id]
    later = utcnow() + timedelta(seconds=ctx_over.config.humans.poll_resolved_for + 1)
    assert store.live_bindings("github", later - timedelta(seconds=ctx_over.config.humans.poll_resolved_for)) == []


# -- find_case --------------------------------------------------------------------------------------
def refs_of(filled: Filled, i: int) -> list[str]:
    """Every reference a person or agent might hold for filled case `i`."""
    case_id = filled.ids[i]
    others = sorted(set(filled.ids) - {case_id})  # ids minted in one millisecond share all but the last chars
    shared = max(next((k for k, (a, b) in enumerate(zip(case_id, o, strict=True)) if a != b), 26) for o in others)
    prefix = case_id[: shared + 1]
    refs = [case_id, prefix, prefix.lower(), f"fp:{i:06d}", f"am-{i:06d}"]
    for backend in BACKENDS:
        t = thread(backend, i)
        refs += [t["id"], t["url"], t["url"] + "/"]
        refs += [t[k] for k in ("number",) if k in t]
    return refs


def test_find_case_finds_case_15000_by_every_kind_of_reference(filled_ctx: SharedContext, filled: Filled) -> None:
    for i in TARGETS:
        assert filled.status[filled.ids[i]] == "resolved"  # not reachable through the open-fingerprint index
        for ref in refs_of(filled, i):
            with metered(filled_ctx.store) as m:
                assert filled_ctx.find_case(ref).id == filled.ids[i], ref
            # id, open fingerprint, then at most four index lookups of at most a few rows
            assert m.statements <= 6 and m.rows <= 8, (ref, m.statements, m.rows)


def test_find_case_says_why_not_instead_of_giving_up(filled_ctx: SharedContext, filled: Filled) -> None:
    with metered(filled_ctx.store) as m, pytest.raises(CaseNotFound, match="tried it as a case id, an id prefix"):
        filled_ctx.find_case("https://github.com/acme/payments/issues/999999")
    assert m.rows == 0 and m.statements <= 6
    # a label every case has, and a fingerprint shared by many resolved cases: named as ambiguous, with ids
    with pytest.raises(AmbiguousCase, match=r"'payments' names 10\+ cases") as err:
        filled_ctx.find_case(SHARED_LABEL)
    assert "(open, by label)" in str(err.value)
    with pytest.raises(AmbiguousCase, match="0 of them live"):
        filled_ctx.find_case(FLAPPY)
    # the flapping alert fires again: its open case is what the fingerprint means now
    again = filled_ctx.open_case("flapping again", fingerprint=FLAPPY)
    assert filled_ctx.find_case(FLAPPY).id == again.id
    # a thread that two cases were bound to (two alerts on one incident): the live one
    pd = thread("pagerduty", TARGETS[0])
    filled_ctx.store.set_binding(again.id, "pagerduty", pd)
    assert filled_ctx.find_case(pd["id"]).id == again.id
    assert Humans(filled_ctx).case_for("pagerduty", pd["id"]) == again.id


# -- the write path ---------------------------------------------------------------------------------
def test_set_binding_indexes_the_thread_and_a_rebinding_replaces_it(ctx_over: SharedContext, store: Store) -> None:
    case = ctx_over.open_case("c", labels={"pagerduty.incident": "PXYZ123"})
    store.set_binding(case.id, "servicenow", {"backend": "servicenow", "id": "a" * 32, "number": "INC0000042"})
    assert store.case_of_thread("servicenow", "INC0000042") == case.id
    store.set_binding(case.id, "servicenow", {"backend": "servicenow", "id": "b" * 32})
    assert store.case_of_thread("servicenow", "INC0000042") is None  # the old thread no longer names it
    assert store.case_of_thread("servicenow", "a" * 32) is None
    assert store.case_of_thread("servicenow", "b" * 32) == case.id
    assert ctx_over.find_case("PXYZ123").id == case.id  # a label, indexed when the case opened
    with pytest.raises(CaseNotFound):
        store.set_binding("01NOPE", "github", {"backend": "github", "id": "1"})
    assert store.case_of_thread("github", "1") is None  # nothing half-written


def test_values_too_long_to_index_are_left_out_instead_of_failing_the_write(ctx_over: SharedContext,
                                                                          store: Store) -> None:
    """PostgreSQL refuses a btree entry over ~2.7 kB: a long label or URL must not fail the case or binding."""
    long = "😀" * 1_000  # within the 1,024-character label limit, 4,000 bytes
    case = ctx_over.open_case("c", labels={"description": long, "short": "findable"})
    store.set_binding(case.id, "local", {"backend": "local", "id": "t-9", "url": "file:///" + "d/" * 5_000})
    assert store.case_of_thread("local", "t-9") == case.id
    assert ctx_over.find_case("findable").id == case.id
    with pytest.raises(CaseNotFound):
        ctx_over.find_case(long)


def test_a_thread_url_holding_a_secret_is_indexed_redacted_and_still_found(ctx_over: SharedContext,
                                                                           store: Store) -> None:
    case = ctx_over.open_case("c")
    url = "https://hooks.example.com/t/1?token=ghp_" + "a1B2" * 9
    store.set_binding(case.id, "local", {"backend": "local", "id": "t-1", "url": url})
    assert "ghp_" not in json.dumps(store._q("SELECT value FROM bindings"))  # type: ignore[attr-defined]
    assert ctx_over.find_case(url).id == case.id


def test_concurrent_bindings_of_one_case_lose_none(store: Store) -> None:
    """Eight deliveries binding the same case on eight backends at once (PostgreSQL: eight connections):
    the JSON record and the index both end with all eight."""
    import threading

    case, _ = store.open_case(title="c", service="", severity="warning", fingerprint=None, labels={})
    names = [f"b{k}" for k in range(8)]
    go = threading.Barrier(len(names))

    def bind(name: str) -> None:
        go.wait()
        store.set_binding(case.id, name, {"backend": name, "id": f"{name}-thread"})

    threads = [threading.Thread(target=bind, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(store.get_case(case.id).bindings) == set(names)
    assert all(store.case_of_thread(n, f"{n}-thread") == case.id for n in names)


# -- migration 0016 -----------------------------------------------------------------------------------
WEIRD_BINDINGS: dict[str, Any] = {  # what an older version or a hand edit may have left in cases.bindings
    "github": {"backend": "github", "id": 42, "url": "", "repo": "acme/x"},
    "jira": {"backend": "jira", "id": "OPS-7", "key": "OPS-7", "number": None, "url": True},
    "odd": "not a thread",
    "nested": {"id": {"deep": 1}, "number": [1, 2], "key": 1.5, "room": 7, "channel": "C1"},
    "ünï": {"id": "ünïcødé-thread", "url": "https://example.org/ü"},
    "long": {"id": "short-enough", "url": "https://example.org/" + "x" * 5_000},
}
# (the model refuses the odd binding and the number label when the case is read; the migration must still
# not trip on them)
WEIRD_LABELS: dict[str, Any] = {"empty": "", "plain": "weird-label", "n": 3, "long": "y" * 5_000}


@contextmanager
def store_before_0016(dialect: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A store with every migration but 0016 applied, as a journal from before this change."""
    import sharedctx.store.postgres as pg_module
    import sharedctx.store.sqlite.store as sqlite_module

    module = sqlite_module if dialect == "sqlite" else pg_module
    real = read_migrations(dialect)
    monkeypatch.setattr(module, "read_migrations", lambda d: [m for m in real if m[0] != 16])
    if dialect == "sqlite":
        s: Any = SQLiteStore(tmp_path / "old.db")
        try:
            yield s
        finally:
            monkeypatch.undo()
            s.close()
        return
    with pg_database("bindings_mig") as (_, url):
        s = PostgresStore(url)
        try:
            yield s
        finally:
            monkeypatch.undo()
            s.close()


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_migration_0016_backfills_the_index_from_the_bound_cases_already_stored(
    dialect: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with store_before_0016(dialect, tmp_path, monkeypatch) as old:
        assert 16 not in {int(r[0]) for r in old._q("SELECT version FROM schema_version")}
        filled = fill(old, 3_000, everywhere=(2_500,), index=False)
        weird = filled.ids[1]
        with old._tx() as c:
            c.execute("UPDATE cases SET bindings = ?, labels = ? WHERE id = ?",
                      (json.dumps(WEIRD_BINDINGS), json.dumps(WEIRD_LABELS), weird))
        monkeypatch.undo()
        old.migrate()  # what the next start of sharedctx does
        assert 16 in {int(r[0]) for r in old._q("SELECT version FROM schema_version")}

        expected_bindings, expected_labels = set(), set()
        for case_id, bindings, labels in old._q("SELECT id, bindings, labels FROM cases"):
            bindings = json.loads(bindings) if isinstance(bindings, str) else bindings
            labels = json.loads(labels) if isinstance(labels, str) else labels
            for backend, t in bindings.items():
                if isinstance(t, dict):
                    expected_bindings |= {tuple(r.values()) for r in binding_rows(case_id, backend, t)}
            expected_labels |= {(case_id, k, str(v)) for k, v in labels.items() if 0 < len(str(v)) <= 512}
        got = {tuple(r) for r in old._q("SELECT case_id, backend, part, value, scope FROM bindings")}
        assert got == expected_bindings  # the SQL backfill writes exactly what set_binding would have
        assert {tuple(r) for r in old._q("SELECT case_id, name, value FROM case_labels")} == expected_labels
        assert len(got) > 3_000
        assert {r for r in got if r[0] == weird} == {
            (weird, "github", "id", "42", "acme/x"), (weird, "jira", "id", "OPS-7", ""),
            (weird, "jira", "key", "OPS-7", ""), (weird, "nested", "key", "1.5", "C1"),
            (weird, "ünï", "id", "ünïcødé-thread", ""), (weird, "ünï", "url", "https://example.org/ü", ""),
            (weird, "long", "id", "short-enough", "")}  # an over-long URL is left out, not a failed migration

        assert old.case_of_thread("github", "42") == weird
        assert old.case_of_thread("servicenow", thread("servicenow", 2_500)["number"]) == filled.ids[2_500]
        ctx = SharedContext.open(parse_config({"store": "x.db"}, base_dir=tmp_path), store=old, backends={},
                                 worker=False)  # fmt: skip
        for ref in (thread("jira", 2_500)["url"], thread("github", 2_500)["id"], f"am-{2_500:06d}"):
            assert ctx.find_case(ref).id == filled.ids[2_500]
