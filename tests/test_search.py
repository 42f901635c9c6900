"""History search: ranking, grouping, reasons, the query language, bad input, similar cases, index rebuild.

Every test that touches a store runs on SQLite and PostgreSQL (the `ctx` fixture from conftest).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sharedctx import search as search_mod
from sharedctx.context import Case, SharedContext
from sharedctx.search import parse_query, search, similar_cases


@pytest.fixture(autouse=True)
def _fresh_df_cache() -> Iterator[None]:
    search_mod.clear_caches()  # the PostgreSQL test database is reused (truncated) between tests
    yield
    search_mod.clear_caches()


def pool_case(ctx: SharedContext, service: str, *, resolve: bool, fix: str = "raised the pool size") -> Case:
    case = ctx.open_case(f"{service} 5xx", service=service, labels={"alertname": "DBConnectionsSaturated"})
    case.record("alert", f"DBConnectionsSaturated firing for {service}", "timeouts acquiring a connection",
                author="system:alertmanager", attrs={"alertname": "DBConnectionsSaturated"})
    case.record("finding", "connection pool exhausted", f"{service}-db: 100/100 connections in use",
                author="partner:telemetry")
    if resolve:
        rem = case.record("remediation", f"Remediation: {fix}", fix, author="primary:sre")
        case.record("verification", "Verified", "errors back to baseline", author="primary:sre", ref=rem.id,
                    attrs={"verdict": "verified"})
        case.resolve(f"Root cause: connection pool exhausted. Fix: {fix}", author="human:alice")
    return case


def test_prefers_same_service_resolved_cases(ctx: SharedContext) -> None:
    other_open = pool_case(ctx, "ledger", resolve=False)
    other_resolved = pool_case(ctx, "ledger", resolve=True)
    same_open = pool_case(ctx, "payments", resolve=False)
    same_resolved = pool_case(ctx, "payments", resolve=True)
    res = ctx.search("how did we fix the payments connection pool last time")
    order = [c.case_id for c in res.cases]
    assert order[0] == same_resolved.id
    assert order.index(same_resolved.id) < order.index(same_open.id) < order.index(other_open.id)
    assert order.index(other_resolved.id) < order.index(other_open.id)
    top = res.cases[0]
    assert "same_service" in top.signals and "resolved" in top.signals and "verified" in top.signals
    assert any("payments" in r for r in top.reasons)
    assert top.outcome is not None and top.outcome.verified and top.outcome.time_to_resolve_minutes is not None


def test_results_grouped_by_case_with_highlights(ctx: SharedContext) -> None:
    a = pool_case(ctx, "payments", resolve=True)
    pool_case(ctx, "ledger", resolve=True)
    res = ctx.search("connection pool")
    ids = [c.case_id for c in res.cases]
    assert len(ids) == len(set(ids)) == 2  # one result per case, though each has several matching entries
    first = next(c for c in res.cases if c.case_id == a.id)
    assert len(first.hits) >= 2 and {h.kind for h in first.hits} >= {"finding"}
    hit = next(h for h in first.hits if h.kind == "finding")
    marked = {hit.text[x:y].lower() for x, y in hit.spans}
    assert "pool" in marked and "[pool]" in hit.snippet.lower()
    assert first.signals["text"] > 0 and first.reasons[0].startswith("text:")


def test_query_language_filters(ctx: SharedContext) -> None:
    pay = pool_case(ctx, "payments", resolve=True)
    led = pool_case(ctx, "ledger", resolve=False)
    assert [c.case_id for c in ctx.search("pool service:payments").cases] == [pay.id]
    assert [c.case_id for c in ctx.search("pool status:open").cases] == [led.id]
    assert [c.case_id for c in ctx.search("pool outcome:resolved").cases] == [pay.id]
    assert {c.case_id for c in ctx.search("pool outcome:verified").cases} == {pay.id}
    res = ctx.search("pool kind:remediation")
    assert [c.case_id for c in res.cases] == [pay.id] and {h.kind for h in res.cases[0].hits} == {"remediation"}
    assert [c.case_id for c in ctx.search("author:human resolved").cases] == [pay.id]
    assert ctx.search("pool until:2001-01-01").cases == []
    assert len(ctx.search("pool since:1h").cases) == 2
    assert [c.case_id for c in ctx.search('"pool exhausted" service:ledger').cases] == [led.id]


def test_outcome_overridden_finds_human_overrides(ctx: SharedContext) -> None:
    plain = pool_case(ctx, "payments", resolve=True)
    case = pool_case(ctx, "payments", resolve=False)
    req = case.record("decision-request", "Proposal: restart payments-db primary", "Should I restart it?",
                      author="primary:sre")
    case.record("decision", "Rejected: restart payments-db primary", "/reject too risky at peak",
                author="human:bob", ref=req.id, attrs={"outcome": "rejected"})
    res = ctx.search("outcome:overridden")
    assert [c.case_id for c in res.cases] == [case.id]
    assert res.cases[0].hits[0].kind == "decision"
    assert res.cases[0].outcome is not None and "restart payments-db primary" in res.cases[0].outcome.rejected[0]
    with_text = ctx.search("pool outcome:rejected")
    assert [c.case_id for c in with_text.cases] == [case.id] and plain.id not in [c.case_id for c in with_text]


def test_parse_query() -> None:
    q = parse_query('service:payments kind:finding,remediation author:human outcome:overridden since:7d '
                    'until:2026-01-31 status:resolved "connection pool" how did we fix the DB')
    f = q.filters
    assert f.service == "payments" and f.kinds == ["finding", "remediation"] and f.author_kind == "human"
    assert f.case_status == "resolved" and f.since is not None and f.until == datetime(2026, 1, 31, tzinfo=UTC)
    assert q.outcomes == ["overridden"] and q.phrases == ["connection pool"] and q.terms == ["db"]
    assert q.fix_intent and not q.notices
    assert parse_query("author:partner:telemetry").filters.author == "telemetry"
    assert parse_query('service:"payments api" x').filters.service == "payments api"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('pool "unbalanced', "unmatched double quote"),
        ("pool AND NOT db*", "taken literally"),
        ("kind:nonsense pool", "unknown kind"),
        ("since:whenever pool", "not a time"),
        ("outcome:maybe pool", "unknown outcome"),
        ("pool " * 1000, "characters"),
        (" ".join(f"w{i}" for i in range(40)), "only the first"),
    ],
)
def test_odd_input_is_reported(text: str, fragment: str) -> None:
    q = parse_query(text)
    assert any(fragment in n for n in q.notices), q.notices


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300) | st.lists(st.sampled_from(
    ['"', "(", ")", "*", "^", "AND", "OR", "NOT", "NEAR", "-", ":", "title:", "pool", "ü", "数据库", "\x00", "'",
     "\\", "{", "}", "service:", "kind:", "&", "|", "!", "<->", ":*"]), max_size=30).map(" ".join))
def test_arbitrary_text_never_crashes(ctx: SharedContext, text: str) -> None:
    if not getattr(ctx, "_seeded", False):
        pool_case(ctx, "payments", resolve=True)
        ctx._seeded = True  # type: ignore[attr-defined]
    res = search(ctx, text, limit=5)
    assert res.strategy != "failed"
    assert all(c.case_id for c in res.cases)


def test_similar_cases_report_what_was_tried_and_overridden(ctx: SharedContext) -> None:
    old = pool_case(ctx, "payments", resolve=False)
    old.record("action", "Tried: restarted payments pods", "errors came back", author="primary:sre",
               attrs={"result": "no-effect"})
    req = old.record("decision-request", "Proposal: fail over payments-db", "ok?", author="primary:sre")
    old.record("decision", "Overridden", "/override raise the pool size instead", author="human:dana", ref=req.id,
               attrs={"outcome": "overridden", "instead": "raise the pool size"})
    rem = old.record("remediation", "Remediation: raised the pool size to 400", "done", author="primary:sre")
    old.record("verification", "Verified", "ok", author="primary:sre", ref=rem.id, attrs={"verdict": "verified"})
    old.resolve("Fix: raised the pool size", author="human:dana")
    unrelated = ctx.open_case("disk full on search", service="search")
    unrelated.record("alert", "DiskSpaceLow firing for search", "volume at 97%")
    unrelated.resolve("expanded the volume")
    new = ctx.open_case("payments 5xx", service="payments", labels={"alertname": "DBConnectionsSaturated"})
    new.record("alert", "DBConnectionsSaturated firing for payments", "timeouts acquiring a connection",
               attrs={"alertname": "DBConnectionsSaturated"})
    new.record("finding", "connection pool exhausted", "payments-db 100/100 connections", author="partner:telemetry")
    found = ctx.similar_cases(new.id, limit=5)
    ids = [c.case_id for c in found]
    assert ids[0] == old.id and new.id not in ids
    top = found[0]
    assert {"same_service", "same_alert"} <= set(top.signals)
    o = top.outcome
    assert o is not None and o.resolved and o.verified and o.time_to_resolve_minutes is not None
    assert o.tried == ["Tried: restarted payments pods"]
    assert "Remediation: raised the pool size to 400" in o.worked
    assert o.overridden and "fail over payments-db" in o.overridden[0] and "raise the pool size" in o.overridden[0]
    assert "overrode" in top.summary and "raised the pool size" in top.summary
    assert similar_cases(ctx.store, old.id) == []  # nothing earlier than the first case


def test_human_verdicts_on_findings_reach_the_case_outcome(ctx: SharedContext) -> None:
    """A 👍 / `/verify` or 👎 / `/dispute` arrives as a human `note` with `attrs.verdict` (sharedctx.humans)."""
    case = pool_case(ctx, "payments", resolve=True)
    finding = next(e for e in case.timeline() if e.kind == "finding")
    case.record("note", "Verified by a human", "/verify", author="human:dana", ref=finding.id,
                attrs={"verdict": "verified"})
    doubted = case.record("finding", "cache stampede", "maybe the cache", author="partner:telemetry")
    case.record("note", "Disputed by a human", "/dispute it was the pool", author="human:erin", ref=doubted.id,
                attrs={"verdict": "disputed"})
    [top] = [c for c in ctx.search("connection pool payments").cases if c.case_id == case.id]
    assert top.outcome is not None
    # what the finding said, not only its title: "connection pool exhausted: payments-db: 100/100 …"
    assert [f.split(":")[0] for f in top.outcome.findings_verified] == ["connection pool exhausted"]
    assert [f.split(":")[0] for f in top.outcome.findings_disputed] == ["cache stampede"]
    assert "100/100" in top.outcome.findings_verified[0]


def test_index_rebuild_restores_results(ctx: SharedContext) -> None:
    case = pool_case(ctx, "payments", resolve=True)
    store = ctx.store
    before = [c.case_id for c in ctx.search("connection pool").cases]
    assert before == [case.id]
    if type(store).__name__ == "SQLiteStore":  # lose the index: empty the FTS5 table, then rebuild it
        with store._tx() as c:  # type: ignore[attr-defined]
            c.execute("INSERT INTO entries_fts(entries_fts) VALUES ('delete-all')")
        assert ctx.search("connection pool").cases == []
    else:  # the tsvector is a generated column; lose the GIN index itself, then rebuild
        with store._pool.connection() as conn:  # type: ignore[attr-defined]
            conn.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'entries_tsv'::regclass")
    assert store.rebuild_index() >= 5
    assert [c.case_id for c in ctx.search("connection pool").cases] == before


def test_cli_search_json_and_index_rebuild(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import json

    from typer.testing import CliRunner

    from sharedctx.cli import app

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    with SharedContext.open(worker=False) as ctx:
        pool_case(ctx, "payments", resolve=True)
    r = runner.invoke(app, ["search", 'pool service:payments "unbalanced', "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["cases"][0]["service"] == "payments" and "unmatched double quote" in data["notice"]
    r = runner.invoke(app, ["search", "connection pool"])
    assert r.exit_code == 0 and "payments" in r.stdout and "why:" in r.stdout
    r = runner.invoke(app, ["index", "rebuild"])
    assert r.exit_code == 0 and "rebuilt the search index" in r.stdout
