"""History search promises from issue 12: case-level ranking, negation, typo tolerance, time phrases,
`service:` prefixes, token-exact service names, structured signals that cannot lift a weak text match over a
strong one, symptom-based similar cases, synonyms from a data file, and an explanation on every result.

Store-backed tests run on SQLite and PostgreSQL (the `ctx` fixture).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharedctx import search as search_mod
from sharedctx.context import Case, SharedContext
from sharedctx.search import parse_query, parse_since, search, similar_cases
from sharedctx.search.ranking import MAX_BOOST, CaseDoc, Evidence, Term, score_cases, service_named
from sharedctx.search.words import synonym_groups
from sharedctx.store.base import Candidate

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)  # a Monday


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    search_mod.clear_caches()  # the PostgreSQL test database is reused (truncated) between tests
    yield
    search_mod.clear_caches()


def incident(ctx: SharedContext, title: str, service: str, *texts: tuple[str, str, str],
             resolution: str | None = None, alert: str | None = None) -> Case:
    case = ctx.open_case(title, service=service, labels={"alertname": alert} if alert else {})
    for kind, t, body in texts:
        case.record(kind, t, body, author="partner:telemetry" if kind == "finding" else "primary:sre")
    if resolution:
        case.resolve(resolution, author="human:alice")
    return case


# -- ranking ----------------------------------------------------------------------------------------------
def test_case_level_ranking_counts_rare_words_across_entries(ctx: SharedContext) -> None:
    """Per-entry scoring let a one-line note sharing one common word beat a case whose findings hold the rare
    words; at case level the evidence of all entries adds up."""
    chatty = incident(ctx, "weekly sync", "ops", *[("note", "timeout", "timeout again") for _ in range(3)])
    real = incident(ctx, "checkout errors", "checkout",
                    ("finding", "TLS handshake timeout to the card vault", "handshake failures since 09:10"),
                    ("finding", "intermediate certificate missing from the vault chain", "openssl shows it"),
                    resolution="re-issued the chain with the intermediate")
    res = ctx.search("handshake timeout vault intermediate")
    assert [c.case_id for c in res.cases][:2] == [real.id, chatty.id]


def test_case_titles_are_indexed_for_ranking(ctx: SharedContext) -> None:
    titled = incident(ctx, "Kestrel ingest stalled", "ingest", ("finding", "queue depth grows", "consumers idle"))
    incident(ctx, "other", "ingest", ("finding", "queue depth grows", "consumers idle"))
    assert ctx.search("kestrel queue").cases[0].case_id == titled.id


def test_negation_is_kept(ctx: SharedContext) -> None:
    bad_deploy = incident(ctx, "5xx after release", "api",
                          ("finding", "errors started right after the deploy", "deploy 4.2 broke the handler"),
                          resolution="rolled back the deploy")
    no_deploy = incident(ctx, "5xx with nothing shipped", "api",
                         ("finding", "errors with no deploy in the window", "no deploy since Friday; upstream DNS"),
                         resolution="pinned the resolver")
    q = parse_query("errors without any deploy")
    assert "deploy" in q.negated and "without" not in q.terms
    order = [c.case_id for c in ctx.search("errors without any deploy").cases]
    assert order.index(no_deploy.id) < order.index(bad_deploy.id)
    order = [c.case_id for c in ctx.search("errors after a deploy").cases]
    assert order.index(bad_deploy.id) < order.index(no_deploy.id)  # and the plain query still means the deploy


def test_typo_is_corrected_from_the_index_with_a_notice(ctx: SharedContext) -> None:
    cert = incident(ctx, "edge TLS outage", "edge", ("finding", "certificate expired at midnight", "not renewed"),
                    resolution="renewed the certificate")
    incident(ctx, "disk full", "db", ("finding", "volume at 99%", "wal growth"))
    res = ctx.search("certifcate expird")
    assert res.cases and res.cases[0].case_id == cert.id
    assert res.notice and "searched for" in res.notice and "certifcate" in res.notice
    assert set(res.corrections) == {"certifcate", "expird"}
    assert any("corrected" in r for r in res.cases[0].reasons)


def test_a_real_word_is_not_corrected_when_the_rest_of_the_query_matches(ctx: SharedContext) -> None:
    incident(ctx, "queue broker down", "events", ("finding", "broker unreachable", "kafka broker 3 gone"))
    res = ctx.search("broken kafka")
    assert "broken" not in res.corrections


# -- time phrases -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("phrase", "since", "until"),
    [
        ("yesterday", datetime(2026, 11, 29, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC)),
        ("today", datetime(2026, 11, 30, tzinfo=UTC), None),
        ("last week", datetime(2026, 11, 23, tzinfo=UTC), None),
        ("this month", datetime(2026, 11, 1, tzinfo=UTC), None),
        ("last month", datetime(2026, 10, 1, tzinfo=UTC), None),
        ("in March", datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)),
        ("in december", datetime(2025, 12, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)),
        ("in the last 3 days", NOW - timedelta(days=3), None),
        ("past two weeks", NOW - timedelta(weeks=2), None),
    ],
)
def test_time_phrases_become_filters(phrase: str, since: datetime, until: datetime | None) -> None:
    q = parse_query(f"disk full {phrase} on db", now=NOW)
    assert q.filters.since == since and q.filters.until == until
    assert q.terms == ["disk", "full", "db"]
    assert any(phrase.lower() in n.lower() and "filter" in n for n in q.notices)


def test_one_time_parser_for_filters_and_phrases() -> None:
    assert parse_since("yesterday", now=NOW) == datetime(2026, 11, 29, tzinfo=UTC)
    assert parse_since("7d", now=NOW) == NOW - timedelta(days=7)
    assert parse_query("since:last-week x", now=NOW).filters.since == datetime(2026, 11, 23, tzinfo=UTC)
    assert parse_query("may the pool", now=NOW).filters.since is None  # a bare month name that is a word


def test_time_phrase_filters_the_search(ctx: SharedContext) -> None:
    case = incident(ctx, "disk full", "db", ("finding", "volume at 99%", "wal growth"))
    assert [c.case_id for c in ctx.search("volume yesterday").cases] == []  # recorded today
    assert [c.case_id for c in search(ctx, "volume today").cases] == [case.id]
    later = datetime.now(UTC) + timedelta(days=1)
    res = search(ctx, "volume yesterday", now=later)
    assert [c.case_id for c in res.cases] == [case.id] and res.notice and "yesterday" in res.notice


# -- service filters and names ----------------------------------------------------------------------------
def test_service_filter_matches_prefixes_with_a_notice(ctx: SharedContext) -> None:
    pay = incident(ctx, "pool exhausted", "payments-api", ("finding", "connection pool exhausted", "100/100"))
    incident(ctx, "pool exhausted", "ledger", ("finding", "connection pool exhausted", "100/100"))
    res = ctx.search("pool service:payments")
    assert [c.case_id for c in res.cases] == [pay.id]
    assert res.notice and "payments-api" in res.notice
    assert [c.case_id for c in ctx.search("pool service:payments-api").cases] == [pay.id]
    none = ctx.search("pool service:paymnts-gateway")
    assert none.cases == [] and none.notice and "matches no service" in none.notice and "payments-api" in none.notice


@pytest.mark.parametrize(
    ("service", "query", "named"),
    [
        ("payments-api", "api latency", 0.0),  # "api" alone never names payments-api
        ("payments-api", "payments api latency", 1.0),
        ("payments-api", "payments-api latency", 1.0),
        ("payments-api", "payments latency", 0.5),
        ("storage", "storage full", 1.0),
        ("object-storage", "storagebox full", 0.0),
        ("api", "rapid errors", 0.0),
    ],
)
def test_service_names_match_token_exact(service: str, query: str, named: float) -> None:
    assert service_named(service, parse_query(query).words) == named


def _doc(case_id: str, service: str, status: str) -> CaseDoc:
    from sharedctx.model import Author, Entry, EntryKind

    e = Entry(id=f"e-{case_id}", case_id=case_id, seq=1, ts=NOW, author=Author(kind="system", name="x"),
              kind=EntryKind.NOTE, title="t", body="", prev_hash="0" * 64, hash="0" * 64)
    meta = Candidate(entry=e, rowid=1, service=service, case_title=case_id, case_status=status,
                     labels={"alertname": "DiskFull"}, case_created_at=NOW, case_resolved_at=NOW)
    return CaseDoc(case_id=case_id, meta=meta, alertname="DiskFull")


@settings(max_examples=200, deadline=None)
@given(strong=st.floats(0.01, 100), ratio=st.floats(0.0, 1 / MAX_BOOST - 1e-6),
       named=st.booleans(), resolved=st.booleans())
def test_signals_never_lift_a_weak_text_match_over_a_strong_one(strong: float, ratio: float, named: bool,
                                                                 resolved: bool) -> None:
    """Every structured signal on the weak case, none on the strong one: the strong case still ranks first
    whenever the weak case's text score is below 1 / MAX_BOOST of it."""
    weak = _doc("weak", "payments-api", "resolved" if resolved else "open")
    strong_doc = _doc("strong", "ledger", "open")
    strong_doc.alertname = None
    words = ["payments", "api", "diskfull"] if named else ["diskfull"]
    ranked = score_cases([weak, strong_doc], {"weak": strong * ratio, "strong": strong},
                         Evidence(words=words, now=NOW), [Term(word="x", stems=frozenset({"x"}), idf=1.0)])
    assert ranked[0].case_id == "strong"
    assert "same_service" in ranked[1].signals or not named


# -- similar cases ----------------------------------------------------------------------------------------
def test_similar_cases_rank_by_symptoms_not_by_service(ctx: SharedContext) -> None:
    same_cause = incident(ctx, "search latency", "search",
                          ("finding", "GC pauses of 4s on the JVM heap", "old gen full, heap 95%"),
                          resolution="Raised the heap to 8g and switched to G1; latency back to 40 ms",
                          alert="HighLatency")
    same_service = incident(ctx, "payments disk", "payments",
                            ("finding", "volume full", "logs filled the disk"),
                            resolution="rotated the logs", alert="HighLatency")
    new = incident(ctx, "payments slow", "payments",
                   ("finding", "JVM heap 97% with GC pauses", "old gen not reclaimed; pauses of 3-5 s"),
                   alert="HighLatency")
    found = similar_cases(ctx.store, new.id, limit=5)
    ids = [c.case_id for c in found]
    assert ids[0] == same_cause.id  # same service and alert alone do not make a case similar
    assert same_service.id not in ids[:1]
    top = found[0]
    assert top.outcome is not None and top.outcome.resolution and "G1" in top.outcome.resolution
    assert "what worked: Raised the heap" in top.summary  # the resolution text, not "fix: fix"
    assert top.reasons and top.reasons[0].startswith("text:")


def test_similar_cases_show_what_worked_in_words(ctx: SharedContext) -> None:
    old = incident(ctx, "queue stuck", "events", ("finding", "consumer group rebalancing in a loop", "every 30 s"))
    rem = old.record("remediation", "fix", "raised max.poll.interval.ms to 10 minutes", author="primary:sre")
    old.record("verification", "Verified", "lag draining", author="primary:sre", ref=rem.id,
               attrs={"verdict": "verified"})
    old.resolve("fix", author="human:alice")
    new = incident(ctx, "queue stuck again", "events", ("finding", "consumer group rebalancing", "loop"))
    [top] = similar_cases(ctx.store, new.id, limit=1)
    assert top.outcome is not None
    assert top.outcome.worked[0] == "raised max.poll.interval.ms to 10 minutes"  # not "fix"


# -- synonyms are data ------------------------------------------------------------------------------------
def test_synonyms_come_from_data_files(ctx: SharedContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case = incident(ctx, "gizmo outage", "shop", ("finding", "the gizmo crashed", "segfault"))
    assert ctx.search("widget").cases == []
    team = tmp_path / "team-synonyms.txt"
    team.write_text("# our words\nwidget gizmo\n")
    monkeypatch.setenv("SHAREDCTX_SYNONYMS", str(team))
    synonym_groups.cache_clear()
    try:
        assert [c.case_id for c in ctx.search("widget").cases] == [case.id]
    finally:
        monkeypatch.delenv("SHAREDCTX_SYNONYMS")
        synonym_groups.cache_clear()


def test_no_benchmark_vocabulary_in_code() -> None:
    """The ranking's only word lists are grammar (stop words, negators, fix intent); domain words live in
    sharedctx/search/data/ and hold abbreviations only."""
    groups = synonym_groups("")
    assert all(len(g) <= 3 for g in groups)
    assert not any({"oom", "memory"} <= g or {"rollback", "revert"} <= g or {"dns", "coredns"} <= g for g in groups)


def test_every_result_is_explained(ctx: SharedContext) -> None:
    incident(ctx, "pool exhausted", "payments-api", ("finding", "connection pool exhausted", "100/100"),
             resolution="raised the pool")
    res = ctx.search("payments connection pool")
    assert res.cases
    for c in res.cases:
        assert c.reasons and c.reasons[0].startswith("text:") and c.matched
        assert "text" in c.signals


def test_a_case_is_found_by_its_title_alone(ctx: SharedContext) -> None:
    """Case titles have their own full-text index (migration 0011): a known-item query that only matches
    the title still finds the case."""
    case = incident(ctx, "Osprey ledger reconciliation drift", "ledger", ("note", "looking", "nothing yet"))
    incident(ctx, "unrelated", "ledger", ("note", "looking", "nothing yet"))
    res = ctx.search("osprey reconciliation")
    assert [c.case_id for c in res.cases] == [case.id]
    assert ctx.store.rebuild_index() >= 2
    assert [c.case_id for c in ctx.search("osprey reconciliation").cases] == [case.id]


# -- PostgreSQL at scale: migration 0013, indexes, the same answers as SQLite ----------------------------------
FAULTS = [  # (title, service, finding, resolution): several symptoms share common words, as real history does
    ("checkout latency", "checkout", "connection pool exhausted on the primary database", "raised the pool size"),
    ("checkout errors", "checkout", "database connection refused after failover", "repointed the DSN"),
    ("search slow", "search", "JVM heap full with long GC pauses on the database client", "raised the heap"),
    ("search errors", "search", "disk full on the database volume, writes failing", "rotated the logs"),
    ("payments latency", "payments", "slow queries on the database after a missing index", "added the index"),
    ("payments errors", "payments", "TLS certificate expired on the database proxy", "renewed the certificate"),
    ("ledger lag", "ledger", "kafka consumer lag growing, database writes slow", "scaled the consumers"),
    ("ledger errors", "ledger", "connection pool exhausted after a deploy, database idle", "rolled back"),
]


def fill(ctx: SharedContext, rounds: int = 3) -> list[Case]:
    cases = []
    for r in range(rounds):
        for title, svc, finding, fix in FAULTS:
            c = incident(ctx, f"{title} {r}", svc, ("alert", f"{title} alert", "errors and latency on the database"),
                         ("finding", finding, f"seen on {svc} database hosts"), resolution=fix)
            cases.append(c)
    return cases


def _pg_admin() -> str:
    import os

    return os.environ.get("SHAREDCTX_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def test_pg_migration_0013_applies_to_a_journal_that_holds_cases(config: object) -> None:
    """A journal created before migration 0013 (titles indexed by an expression index) upgrades in place,
    with its cases, and title search then answers as before."""
    import uuid

    import psycopg

    from sharedctx.store.postgres import PostgresStore
    from sharedctx.testing import FakeBackend

    name = f"sharedctx_test_m13_{uuid.uuid4().hex[:8]}"
    admin = _pg_admin()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin.rsplit("/", 1)[0] + f"/{name}"

    def context(store: PostgresStore) -> SharedContext:
        return SharedContext.open(config, store=store, backends={"fake": FakeBackend("fake")},  # type: ignore[arg-type]
                                  worker=False)

    try:
        store = PostgresStore(url)
        with store._pool.connection() as conn:  # back to the schema as it was before 0013
            conn.execute("ALTER TABLE cases DROP COLUMN title_tsv")
            conn.execute("CREATE INDEX cases_title_tsv ON cases USING GIN (to_tsvector('english', title))")
            conn.execute("DELETE FROM schema_version WHERE version = 13")
        ctx = context(store)
        case = incident(ctx, "Osprey ledger reconciliation drift", "ledger", ("note", "looking", "nothing yet"))
        ctx.worker.stop()
        store.close()
        store = PostgresStore(url)  # migrates
        ctx = context(store)
        try:
            assert store.schema_version() >= 13
            assert [c.case_id for c in search(store, "osprey reconciliation").cases] == [case.id]
            later = incident(ctx, "Osprey payout drift", "ledger", ("note", "looking", "nothing yet"))
            assert {c.case_id for c in search(store, "osprey").cases} == {case.id, later.id}  # new titles too
        finally:
            ctx.worker.stop()
            store.close()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_pg_search_statements_are_served_by_the_full_text_indexes(ctx: SharedContext) -> None:
    """Every full-text statement a PostgreSQL search runs can be answered from a GIN index (no statement
    computes a tsvector per row at query time, which an index cannot serve)."""
    if type(ctx.store).__name__ != "PostgresStore":
        pytest.skip("PostgreSQL plans")
    from sharedctx.store.postgres import translate

    fill(ctx, 1)
    store = ctx.store
    seen: list[tuple[str, list[object]]] = []
    orig = store._q  # type: ignore[attr-defined]

    def spy(sql: str, params: object = ()) -> list[object]:
        seen.append((sql, list(params or [])))  # type: ignore[call-overload]
        return orig(sql, params)  # type: ignore[no-any-return]

    store._q = spy  # type: ignore[attr-defined]
    try:
        assert search(store, "database connection pool exhausted").cases
    finally:
        del store._q  # type: ignore[attr-defined]
    fts = [(s, p) for s, p in seen if "@@" in s]
    assert any("title_tsv" in s for s, _ in fts) and any("e.tsv" in s for s, _ in fts)
    with store._pool.connection() as conn:  # type: ignore[attr-defined]
        conn.execute("SET enable_seqscan = off")
        for sql, params in fts:
            plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + translate(sql), params or None).fetchall())
            assert "entries_tsv" in plan or "cases_title_tsv" in plan, plan
            assert "to_tsvector" not in plan, plan


def test_similar_cases_agree_on_both_stores_when_the_symptoms_match_many_entries(
        config: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """PostgreSQL ranks an interactive search over fewer index matches than SQLite (a latency budget); that
    must not change what `similar_cases` finds: the same history gives the same similar cases on both."""
    from sharedctx.search import candidates
    from sharedctx.store.sqlite import SQLiteStore
    from sharedctx.testing import FakeBackend

    monkeypatch.setattr(candidates, "BUDGET_PG", 10)  # this small history already exceeds the PostgreSQL budget
    pg = request.getfixturevalue("_pg_store")
    with pg._pool.connection() as conn:
        conn.execute("TRUNCATE cases, entries, outbox, backend_state, cursors, checkpoints, checkpoint_heads CASCADE")
    answers = []
    for store in (SQLiteStore(tmp_path / "j.db"), pg):
        search_mod.clear_caches()
        c = SharedContext.open(config, store=store, backends={"fake": FakeBackend("fake")},  # type: ignore[arg-type]
                               worker=False)
        try:
            fill(c)
            new = incident(c, "ledger errors again", "ledger",
                           ("finding", "connection pool exhausted after a deploy", "database idle, app threads stuck"))
            # which faults come back (the three rounds of one fault are identical texts: their order is a tie)
            answers.append(sorted(r.title.rsplit(" ", 1)[0] for r in similar_cases(c.store, new.id, limit=5)))
        finally:
            c.worker.stop()
    assert answers[0] == answers[1]
    assert answers[1].count("ledger errors") == 3


def test_similar_symptoms_leave_out_words_the_postgresql_index_never_holds() -> None:
    """PostgreSQL's 'english' config drops stop words ("while", "between") that SQLite's porter tokenizer
    indexes: kept as symptoms they were query words on one store and nothing on the other."""
    from sharedctx.search.similar import symptom_terms

    words = symptom_terms(["packet loss between zones while draining the node"])
    assert "between" not in words and "while" not in words
    assert {"packet", "loss", "zones", "draining", "node"} <= set(words)


def test_similar_pool_order_is_computed_here_not_taken_from_the_index_score() -> None:
    """Which candidate cases reach case-level ranking must not depend on the store's rank function (FTS5
    bm25 scores in the tens, ts_rank in tenths, a ts_rank case title at a tenth of an entry title)."""
    from types import SimpleNamespace

    from sharedctx.search.similar import _pool_scores

    def cands(scores: tuple[float, float, float]) -> list[Candidate]:
        texts = [("ledger pool exhausted", "connection pool exhausted after deploy", "ledger errors"),
                 ("ledger errors", "latency up, nothing else", "ledger errors"),
                 ("alert fired", "", "connection pool exhausted on ledger")]
        return [Candidate.model_construct(entry=SimpleNamespace(title=t, body=b), case_title=ct, score=s)
                for (t, b, ct), s in zip(texts, scores, strict=True)]

    weighted = [(1, 3, ["exhausted"]), (1, 5, ["pool"]), (1, 400, ["ledger"])]
    fts5, pg = cands((12.0, 9.5, 4.0)), cands((0.2, 0.6, 0.01))
    _pool_scores(fts5, {id(fts5[2])}, weighted, 1000)  # the third was found by its case title
    _pool_scores(pg, {id(pg[2])}, weighted, 1000)
    assert [c.score for c in fts5] == [c.score for c in pg]
    assert pg[2].score > pg[1].score  # scored on its case title, which holds the rare words
    assert pg[0].score > pg[1].score
@pytest.mark.parametrize(("and_count", "share"), [(6551, 4000 / 6551), (None, 4000 / 50_000)])
def test_a_windowed_and_ranks_about_the_budget(and_count: int | None, share: float) -> None:
    """The bounded plan's AND of two common words is counted past the budget and its recency window sized to
    hold about `budget` of its matches; when even that count stops at its cap, the window is sized by the most
    the AND can match (its rarer word's count). Sized by a count stopped at the budget, the window was the
    whole journal and every match was ranked (6,551 instead of 4,000 on the 1M benchmark journal; without
    bound for commoner pairs). Fails on the code that lost this."""
    from sharedctx.search import candidates
    from sharedctx.store.base import CandidateQuery

    class Counting:
        def __init__(self) -> None:
            self.url = f"fake://window-{and_count}"
            self.dfs = {"alpha": 50_000, "beta": 80_000}
            self.windows: list[int | None] = []

        def entry_rowid_range(self) -> tuple[int, int]:
            return (1, 1_000_000)

        def count_matches(self, q: CandidateQuery, cap: int) -> int:
            words = [w for clause in q.match for group in clause for w in group]
            if len(words) == 1:
                return min(cap, self.dfs[words[0]])
            return min(cap, and_count if and_count is not None else cap)

        def search_candidates(self, q: CandidateQuery, limit: int = 200) -> list[Candidate]:
            self.windows.append(q.min_rowid)
            return []

    store = Counting()
    got = candidates.retrieve(store, [["alpha"], ["beta"]], [], CandidateQuery(), budget=4000)  # type: ignore[arg-type]
    assert got.strategy.startswith("bounded:and2w")
    lo = store.windows[0]
    assert lo is not None
    assert 1_000_000 - lo == pytest.approx(1_000_000 * share, rel=0.01)


def test_stored_entries_read_for_search_are_the_entries_recorded(tmp_path: Path) -> None:
    """Search reads entries and candidates without re-validation (`trusted`, much cheaper than
    `model_construct`); what it builds must equal the validated entry and `model_construct`'s instance,
    field set included, and behave as a model (copy, dump, assignment on the mutable Candidate)."""
    from sharedctx.model import Author, EntryDraft, EntryKind
    from sharedctx.model import Evidence as Proof
    from sharedctx.store.sql.common import ENTRY_COLS, row_to_entry, trusted
    from sharedctx.store.sql.search import CANDIDATE_CASE_COLS, row_to_candidate
    from sharedctx.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "j.db")
    try:
        rec, _ = store.open_case(title="disk full", service="db", severity="warning", fingerprint="a:db",
                                 labels={"alertname": "DiskFull"})
        store.append(EntryDraft(case_id=rec.id, kind=EntryKind.FINDING, title="no space left", body="WAL archive",
                                author=Author(kind="partner", name="telemetry"), attrs={"k": [1, "x"]},
                                evidence=(Proof(type="metric", source="prometheus", summary="disk 100%"),)), [])
        store.append(EntryDraft(case_id=rec.id, kind=EntryKind.NOTE, title="looking", author=Author.parse("alice")), [])
        cols = ", ".join(f"e.{c.strip()}" for c in ENTRY_COLS.split(",")) + ", e.rowid, " + CANDIDATE_CASE_COLS
        rows = store._q(f"SELECT {cols}, 2.5 FROM entries e JOIN cases c ON c.id = e.case_id ORDER BY e.seq")
        assert len(rows) == 2
        for r in rows:
            cand = row_to_candidate(r)
            entry = row_to_entry(r[:15])
            assert cand.entry == entry and cand.entry.model_dump() == entry.model_dump()
            assert cand.entry.model_fields_set == entry.model_fields_set
            built = Candidate.model_construct(**dict(cand.__dict__))
            assert cand == built and cand.model_fields_set == built.model_fields_set
            assert cand.model_copy(update={"score": 1.0}).score == 1.0 and cand.score == 2.5
            cand.score = 3.0  # Candidate is mutable, Entry frozen: both as with model_construct
            assert cand.score == 3.0
            with pytest.raises(ValueError):
                cand.entry.title = "changed"  # type: ignore[misc]
        assert trusted(Author, {"kind": "human", "name": "bob"}) == Author(kind="human", name="bob")
    finally:
        store.close()
