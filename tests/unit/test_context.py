"""The Python API: validation, redaction, status, refs, async use, delivery behind record()."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sharedctx import Author, CaseNotFound, CaseStatus, InvalidEntry, SharedContext
from sharedctx.config import parse_config
from sharedctx.model import MAX_BODY_BYTES
from sharedctx.testing import FakeBackend


def test_record_returns_the_stored_entry_and_enqueues_delivery(ctx: SharedContext) -> None:
    case = ctx.open_case("Checkout 5xx spike", service="checkout", fingerprint="am:1")
    e = case.record("finding", "p99 up 8x", "since deploy 4411", author="primary:triage-bot",
                    evidence=[{"type": "metric", "source": "prometheus", "summary": "p99 8x"}])
    assert e.seq == 1 and e.author == Author(kind="primary", name="triage-bot")
    assert case.timeline() == [e]
    assert ctx.store.outbox_counts()["fake"]["pending"] == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "guess"}, "unknown entry kind 'guess'; valid kinds: alert, triage"),
        ({"title": "   "}, "non-empty title"),
        ({"title": "x" * 301}, "the limit is 300"),
        ({"body": "x" * (MAX_BODY_BYTES + 1)}, f"the limit is {MAX_BODY_BYTES:,} bytes"),
        ({"body": b"\xff\xfe bad"}, "not valid UTF-8"),
        ({"body": "lone \udc80 surrogate"}, "not valid UTF-8"),
        ({"evidence": [{"type": "tweet", "source": "x"}]}, "evidence\\[0\\].type"),
        ({"ref": "01NOSUCHENTRY"}, "is not an entry of this journal"),
    ],
)
def test_bad_input_is_refused_specifically_and_records_nothing(ctx: SharedContext, kwargs: dict, message: str) -> None:
    case = ctx.open_case("c")
    first = case.record("note", "kept")
    args = {"kind": "finding", "title": "t", "body": "b", **kwargs}
    with pytest.raises(InvalidEntry, match=message):
        case.record(args.pop("kind"), args.pop("title"), args.pop("body"), **args)
    assert case.timeline() == [first]


def test_a_ref_must_point_into_the_same_case(ctx: SharedContext) -> None:
    a, b = ctx.open_case("a"), ctx.open_case("b")
    finding = a.record("finding", "db pool exhausted")
    correction = a.record("correction", "it was the cache, not the db", ref=finding.id)
    assert correction.ref == finding.id and a.timeline()[0] == finding  # the original is untouched
    with pytest.raises(InvalidEntry, match="belongs to another case"):
        b.record("note", "x", ref=finding.id)


def test_secrets_are_redacted_before_they_are_stored(ctx: SharedContext) -> None:
    case = ctx.open_case("c")
    e = case.record("finding", "token ghp_" + "a1B2" * 9, "export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE")
    stored = case.timeline()[0]
    assert stored == e
    assert "ghp_" not in stored.title and "AKIAIOSFODNN7EXAMPLE" not in stored.body
    assert "[REDACTED:" in stored.title and "[REDACTED:" in stored.body


def test_resolve_closes_the_case_and_unknown_cases_are_named(ctx: SharedContext) -> None:
    case = ctx.open_case("c")
    case.resolve("rolled back deploy 4411")
    assert case.status == CaseStatus.RESOLVED
    with pytest.raises(CaseNotFound, match="01NOPE"):
        ctx.case("01NOPE")


def test_find_case_by_fingerprint_and_external_reference(ctx: SharedContext) -> None:
    case = ctx.open_case("c", fingerprint="am:abc", labels={"pagerduty.incident": "PXYZ123"})
    ctx.store.set_binding(case.id, "github", {"backend": "github", "id": "42", "url": "https://github.com/o/r/issues/42"})
    for ref in (case.id, "am:abc", "PXYZ123", "https://github.com/o/r/issues/42"):
        assert ctx.find_case(ref).id == case.id
    with pytest.raises(CaseNotFound):
        ctx.find_case("nothing-like-it")


def test_async_agents_record_without_blocking_the_loop(ctx: SharedContext) -> None:
    case = ctx.open_case("c")

    async def agent(n: int) -> None:
        for i in range(5):
            await case.arecord("note", f"agent {n} step {i}")

    async def main() -> None:
        await asyncio.gather(*(agent(n) for n in range(4)))

    asyncio.run(main())
    assert [e.seq for e in case.timeline()] == list(range(1, 21))
    assert case.verify().ok


def test_delivery_happens_behind_record(ctx: SharedContext, fake: FakeBackend) -> None:
    case = ctx.open_case("c")
    entries = [case.record("note", f"n{i}") for i in range(3)]
    assert fake.entries(case.id) == []  # record() did no delivery
    assert ctx.drain(5)
    assert fake.entries(case.id) == entries


def test_the_default_config_works_in_an_empty_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SHAREDCTX_CONFIG", raising=False)
    with SharedContext.open(worker=True) as ctx:
        case = ctx.open_case("Checkout 5xx spike")
        case.record("finding", "p99 up")
        assert ctx.drain(10)
    md = tmp_path / ".sharedctx" / "cases" / f"{case.id}.md"
    assert "p99 up" in md.read_text()


def test_the_local_backend_is_configured_by_path(tmp_path: Path) -> None:
    cfg = parse_config({"backends": [{"type": "local", "path": "out"}]}, base_dir=tmp_path)
    with SharedContext.open(cfg, worker=False) as ctx:
        case = ctx.open_case("x")
        case.record("note", "hello")
        assert ctx.drain(5)
    assert (tmp_path / "out" / f"{case.id}.jsonl").exists()
