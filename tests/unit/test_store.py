"""The store suite: every test here runs on SQLite and on a real PostgreSQL (see conftest)."""

from __future__ import annotations

import sqlite3
import threading

import psycopg
import pytest

from sharedctx.errors import CaseNotFound, EntryNotFound, StoreError
from sharedctx.model import Author, CaseRecord, CaseStatus, EntryDraft, EntryKind, Evidence
from sharedctx.store.base import SearchFilters, Store, verify_entries
from sharedctx.store.postgres import PostgresStore
from sharedctx.store.sqlite import SQLiteStore

PRIMARY = Author(kind="primary", name="triage-bot")


def new_case(store: Store, fingerprint: str | None = None, service: str = "checkout") -> CaseRecord:
    case, _ = store.open_case(
        title="Checkout 5xx spike", service=service, severity="critical", fingerprint=fingerprint, labels={}
    )
    return case


def draft(case_id: str, title: str = "p99 latency up 8x", body: str = "since deploy 4411", **kw) -> EntryDraft:
    return EntryDraft(case_id=case_id, kind=kw.pop("kind", EntryKind.FINDING), title=title, body=body,
                      author=kw.pop("author", PRIMARY), **kw)


def test_an_open_case_with_the_same_fingerprint_is_reused(store: Store) -> None:
    first, created = store.open_case(title="a", service="s", severity="warning", fingerprint="fp", labels={})
    again, created_again = store.open_case(title="b", service="s", severity="warning", fingerprint="fp", labels={})
    assert created and not created_again
    assert again.id == first.id


def test_a_resolved_case_does_not_absorb_a_new_alert(store: Store) -> None:
    first = new_case(store, "fp")
    store.append(draft(first.id, kind=EntryKind.RESOLUTION), [], CaseStatus.RESOLVED)
    second, created = store.open_case(title="again", service="s", severity="warning", fingerprint="fp", labels={})
    assert created and second.id != first.id
    assert store.find_open_case("fp") is not None and store.find_open_case("fp").id == second.id  # type: ignore[union-attr]


def test_appended_entries_read_back_identical_and_chained(store: Store) -> None:
    case = new_case(store)
    ev = Evidence(type="metric", source="prometheus", summary="5xx ratio 12%", query="sum(rate(x[5m]))",
                  data={"peak": 0.12, "labels": {"pod": "checkout-1"}})
    written = [store.append(draft(case.id, f"step {i}", evidence=(ev,), attrs={"i": i}), []) for i in range(5)]
    read = store.entries(case.id)
    assert read == written
    assert [e.seq for e in read] == [1, 2, 3, 4, 5]
    assert read[0].prev_hash == "0" * 64 and read[1].prev_hash == read[0].hash
    assert verify_entries(case.id, read).ok
    assert store.get_case(case.id).last_seq == 5


def test_appending_to_an_unknown_case_records_nothing(store: Store) -> None:
    with pytest.raises(CaseNotFound):
        store.append(draft("01NOSUCHCASE0000000000000"), ["local"])
    assert store.outbox_counts() == {}


def test_entries_cannot_be_updated_or_deleted_even_with_raw_sql(store: Store) -> None:
    case = new_case(store)
    e = store.append(draft(case.id), [])
    for sql in ("UPDATE entries SET body = 'edited' WHERE id = ?", "DELETE FROM entries WHERE id = ?"):
        refused = pytest.raises((sqlite3.DatabaseError, psycopg.Error, StoreError), match="append-only")
        with refused, store._tx() as c:  # type: ignore[attr-defined]
            c.execute(sql, (e.id,))
    assert store.get_entry(e.id) == e


def test_status_only_moves_forward(store: Store) -> None:
    case = new_case(store)
    store.append(draft(case.id), [], CaseStatus.MITIGATED)
    store.append(draft(case.id), [], CaseStatus.OPEN)
    assert store.get_case(case.id).status == CaseStatus.MITIGATED
    store.append(draft(case.id, kind=EntryKind.RESOLUTION), [], CaseStatus.RESOLVED)
    late = store.append(draft(case.id, kind=EntryKind.NOTE), [])
    rec = store.get_case(case.id)
    assert rec.status == CaseStatus.RESOLVED and rec.resolved_at is not None and late.seq == 4


def test_each_entry_enqueues_one_delivery_per_backend(store: Store) -> None:
    case = new_case(store)
    store.append(draft(case.id), ["local", "github", "jira"])
    counts = store.outbox_counts()
    assert {b: c["pending"] for b, c in counts.items()} == {"local": 1, "github": 1, "jira": 1}


def test_claim_hands_out_only_the_head_of_each_case_line(store: Store) -> None:
    a, b = new_case(store), new_case(store)
    for _ in range(3):
        store.append(draft(a.id), ["x"])
    store.append(draft(b.id), ["x"])
    claimed = store.claim("x", "w1", 10, 60)
    assert sorted((d.case_id, d.seq) for d in claimed) == sorted([(a.id, 1), (b.id, 1)])
    assert store.claim("x", "w2", 10, 60) == []  # heads are leased; followers wait their turn
    head_a = next(d for d in claimed if d.case_id == a.id)
    store.mark_delivered(head_a.id, {"id": "ext-1"})
    nxt = store.claim("x", "w2", 10, 60)
    assert [(d.case_id, d.seq) for d in nxt] == [(a.id, 2)]


def test_a_backed_off_head_holds_back_its_case_but_not_others(store: Store) -> None:
    a, b = new_case(store), new_case(store)
    store.append(draft(a.id), ["x"])
    store.append(draft(a.id), ["x"])
    [head] = store.claim("x", "w", 1, 60)
    store.reschedule(head.id, error="503", kind="retryable", delay=3600)
    store.append(draft(b.id), ["x"])
    assert [(d.case_id, d.seq) for d in store.claim("x", "w", 10, 60)] == [(b.id, 1)]


def test_dead_letters_keep_their_reason_and_can_be_requeued(store: Store) -> None:
    case = new_case(store)
    store.append(draft(case.id), ["x"])
    [d] = store.claim("x", "w", 1, 60)
    store.mark_dead(d.id, error="422: body too long", kind="rejected")
    [dead] = store.list_deliveries(state="dead")
    assert dead.last_error == "422: body too long" and dead.attempts == 1
    assert store.requeue_dead(backend="x") == 1
    [again] = store.claim("x", "w", 1, 60)
    assert again.id == d.id and again.attempts == 1


def test_release_does_not_count_the_attempt(store: Store) -> None:
    case = new_case(store)
    store.append(draft(case.id), ["x"])
    [d] = store.claim("x", "w", 1, 60)
    store.release(d.id, error="401", kind="auth")
    [again] = store.claim("x", "w", 1, 60)
    assert again.attempts == 1 and again.last_error_kind == "auth"


def test_concurrent_claimers_never_share_a_delivery(store: Store) -> None:
    cases = [new_case(store) for _ in range(30)]
    for c in cases:
        store.append(draft(c.id), ["x"])
    got: list[int] = []
    lock = threading.Lock()

    def claimer() -> None:
        while True:
            batch = store.claim("x", threading.current_thread().name, 2, 60)
            if not batch:
                return
            with lock:
                got.extend(d.id for d in batch)

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 30 and len(set(got)) == 30


def test_backend_state_and_cursors_persist(store: Store) -> None:
    assert store.get_backend_state("github").state == "running"
    store.set_backend_state("github", "stopped", "401 Bad credentials")
    st = store.get_backend_state("github")
    assert st.state == "stopped" and st.reason == "401 Bad credentials"
    case = new_case(store)
    assert store.get_cursor("github", case.id) is None
    store.set_cursor("github", case.id, "2026-11-25T10:00:00Z")
    store.set_cursor("github", case.id, "2026-11-25T11:00:00Z")
    assert store.get_cursor("github", case.id) == "2026-11-25T11:00:00Z"


def test_bindings_are_stored_per_backend(store: Store) -> None:
    case = new_case(store)
    store.set_binding(case.id, "github", {"backend": "github", "id": "42", "url": "https://x/42"})
    store.set_binding(case.id, "pagerduty", {"backend": "pagerduty", "id": "PABC"})
    assert set(store.get_case(case.id).bindings) == {"github", "pagerduty"}


def test_search_finds_words_and_applies_filters(store: Store) -> None:
    a = new_case(store, service="checkout")
    b = new_case(store, service="payments")
    store.append(draft(a.id, "connection pool exhausted", "the db pool hit its max"), [])
    store.append(draft(b.id, "connection pool exhausted", "payments db too"), [])
    store.append(draft(b.id, "unrelated", "disk full", author=Author(kind="human", name="alice")), [])
    rows = store.search("connection pool", SearchFilters(service="payments"))
    assert [r.entry.case_id for r in rows] == [b.id]
    assert rows[0].service == "payments" and "pool" in rows[0].snippet.lower()
    assert [r.entry.title for r in store.search("disk", SearchFilters(author_kind="human"))] == ["unrelated"]
    assert store.search("disk", SearchFilters(author_kind="primary")) == []


@pytest.mark.parametrize(
    "text", ['"unbalanced', "pool AND OR NOT", "col:umn*", "NEAR(a b)", "ünïcødé pool", "x" * 5000]
)
def test_search_never_fails_on_query_syntax(store: Store, text: str) -> None:
    case = new_case(store)
    store.append(draft(case.id, "connection pool exhausted"), [])
    store.search(text)  # must not raise


def test_get_entry_of_unknown_id_names_it(store: Store) -> None:
    with pytest.raises(EntryNotFound, match="nope"):
        store.get_entry("nope")


def test_migrations_are_versioned_and_idempotent(store: Store) -> None:
    assert isinstance(store, SQLiteStore | PostgresStore)
    before = store.schema_version()
    store.migrate()
    assert store.schema_version() == before >= 1


def test_rebuild_index_restores_search(store: Store) -> None:
    case = new_case(store)
    store.append(draft(case.id, "connection pool exhausted"), [])
    if isinstance(store, SQLiteStore):
        with store._tx() as c:
            c.execute("INSERT INTO entries_fts(entries_fts) VALUES ('delete-all')")
        assert store.search("pool") == []
    assert store.rebuild_index() == 1
    assert len(store.search("pool")) == 1


def test_a_migration_that_lands_late_is_still_applied(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Branches merge out of order: a missing 0098 must apply even though 0099 already has."""
    import sharedctx.store.postgres as pg_module
    import sharedctx.store.sqlite.store as sqlite_module
    from sharedctx.store.base import read_migrations

    module = sqlite_module if isinstance(store, SQLiteStore) else pg_module
    dialect = "sqlite" if isinstance(store, SQLiteStore) else "postgres"
    real = read_migrations(dialect)
    newer = (99, "newer", "CREATE TABLE t99 (x INTEGER);")
    late = (98, "late", "CREATE TABLE t98 (x INTEGER);")
    try:
        monkeypatch.setattr(module, "read_migrations", lambda d: [*real, newer])
        store.migrate()
        monkeypatch.setattr(module, "read_migrations", lambda d: [*real, late, newer])
        store.migrate()
        assert store._q("SELECT count(*) FROM t98")[0][0] == 0  # type: ignore[attr-defined]
        assert {98, 99} <= {int(r[0]) for r in store._q("SELECT version FROM schema_version")}  # type: ignore[attr-defined]
    finally:
        with store._tx() as c:  # type: ignore[attr-defined]
            c.execute("DROP TABLE IF EXISTS t98")
            c.execute("DROP TABLE IF EXISTS t99")
            c.execute("DELETE FROM schema_version WHERE version IN (98, 99)")
