"""A case and the entry that opened it are one transaction: no empty case, whatever fails (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from sharedctx.context import NewEntry, SharedContext
from sharedctx.errors import InvalidEntry, SharedCtxError
from sharedctx.model import Author, EntryDraft, EntryKind
from sharedctx.store.base import Store, verify_entries
from sharedctx.store.postgres import PostgresStore
from sharedctx.store.sqlite import SQLiteStore
from sharedctx.testing import FakeBackend

SYSTEM = Author(kind="system", name="alertmanager")


def first(title: str = "Alert firing: checkout 5xx") -> EntryDraft:
    return EntryDraft(case_id="", kind=EntryKind.ALERT, title=title, body="5xx above 5%", author=SYSTEM)


@contextmanager
def entries_insert_fails(store: Store) -> Iterator[None]:
    """A real database fault on the entry INSERT (a trigger that aborts it), the case INSERT before it succeeds."""
    if isinstance(store, SQLiteStore):
        with store._lock:
            store._conn.execute("CREATE TEMP TRIGGER fail_entry BEFORE INSERT ON entries "
                                "BEGIN SELECT RAISE(ABORT, 'disk says no'); END")  # fmt: skip
        try:
            yield
        finally:
            with store._lock:
                store._conn.execute("DROP TRIGGER fail_entry")
    else:
        assert isinstance(store, PostgresStore)
        with store._pool.connection() as conn:
            conn.execute("CREATE OR REPLACE FUNCTION sctx_fail_entry() RETURNS trigger LANGUAGE plpgsql AS "
                         "$$ BEGIN RAISE EXCEPTION 'disk says no'; END $$")  # fmt: skip
            conn.execute("CREATE TRIGGER fail_entry BEFORE INSERT ON entries "
                         "FOR EACH ROW EXECUTE FUNCTION sctx_fail_entry()")  # fmt: skip
        try:
            yield
        finally:
            with store._pool.connection() as conn:
                conn.execute("DROP TRIGGER fail_entry ON entries")


def test_a_new_case_carries_its_first_entry_and_outbox_rows(store: Store) -> None:
    case, created = store.open_case(title="t", service="checkout", severity="critical", fingerprint="fp",
                                    labels={}, first=first(), backends=["github", "local"])  # fmt: skip
    assert created
    [entry] = store.entries(case.id)
    assert (entry.seq, entry.case_id, entry.title) == (1, case.id, "Alert firing: checkout 5xx")
    assert case.last_seq == 1 and case.last_hash == entry.hash
    assert verify_entries(case.id, [entry]).ok
    assert {d.backend for d in store.list_deliveries(state="pending")} == {"github", "local"}


def test_a_found_case_gets_no_first_entry(store: Store) -> None:
    case, _ = store.open_case(title="t", service="s", severity="warning", fingerprint="fp", labels={}, first=first())
    again, created = store.open_case(title="t", service="s", severity="warning", fingerprint="fp", labels={},
                                     first=first("second"))  # fmt: skip
    assert not created and again.id == case.id
    assert [e.title for e in store.entries(case.id)] == ["Alert firing: checkout 5xx"]


def test_when_the_first_entry_fails_in_the_database_no_case_is_left(store: Store) -> None:
    with entries_insert_fails(store), pytest.raises(Exception, match="disk says no"):
        store.open_case(title="t", service="s", severity="warning", fingerprint="fp", labels={}, first=first(),
                        backends=["local"])  # fmt: skip
    assert store.list_cases() == []
    assert store.find_open_case("fp") is None
    assert store.list_deliveries(state="pending") == []
    # and the next alert with that fingerprint opens a proper case
    case, created = store.open_case(title="t", service="s", severity="warning", fingerprint="fp", labels={},
                                    first=first())  # fmt: skip
    assert created and len(store.entries(case.id)) == 1


def test_context_refuses_an_invalid_first_entry_before_creating_anything(ctx: SharedContext,
                                                                       fake: FakeBackend) -> None:  # fmt: skip
    too_big = NewEntry(EntryKind.ALERT, "Alert firing", "x" * 300_000)
    with pytest.raises(InvalidEntry, match="body is 300,000 bytes"):
        ctx.open_case("Checkout 5xx", service="checkout", fingerprint="fp", first=too_big)
    with pytest.raises(InvalidEntry, match="unknown entry kind"):
        ctx.open_case("Checkout 5xx", fingerprint="fp", first=NewEntry("nonsense", "t"))
    assert ctx.cases() == []
    case = ctx.open_case("Checkout 5xx", fingerprint="fp", first=NewEntry(EntryKind.ALERT, "Alert firing", "b",
                                                                          author="system:alertmanager"))  # fmt: skip
    assert case.created
    [entry] = case.timeline()
    assert (entry.author.kind, entry.author.name, entry.kind) == ("system", "alertmanager", EntryKind.ALERT)
    assert [d.backend for d in ctx.store.list_deliveries(state="pending")] == ["fake"]


def test_context_open_case_with_a_failing_store_leaves_nothing(ctx: SharedContext) -> None:
    with entries_insert_fails(ctx.store), pytest.raises(SharedCtxError):
        ctx.open_case("Checkout 5xx", fingerprint="fp", first=NewEntry(EntryKind.ALERT, "Alert firing"))
    assert ctx.cases() == []


def test_the_first_entry_is_redacted_like_any_other(ctx: SharedContext) -> None:
    """The first entry takes the store's one-transaction path (`_append_in`), not `append`: redaction must
    cover it all the same. (A merge that redacts only inside `append` fails here.)"""
    secret = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"
    case = ctx.open_case("Checkout 5xx", fingerprint="fp", first=NewEntry(
        EntryKind.ALERT, f"Alert firing {secret}", f"the token {secret} leaked", author="system:alertmanager"))
    [entry] = ctx.store.entries(case.id)
    stored = entry.model_dump_json()
    assert secret not in stored and "[REDACTED:github-token]" in entry.body
