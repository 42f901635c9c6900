"""The held-out search data keeps the format promised in briefs/heldout-format.md and the size issue 12 needs.

A broken reference (a query pointing at a case that does not exist, a "similar" item about a resolved case) would
not crash an evaluation; it would quietly lower or raise a score. These checks make such edits fail instead.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.heldout import NOW, SETS, load
from bench.heldout.postmortems import build as pm_build
from bench.heldout.synthetic import generate

# (cases, queries, similar) that issue 12's targets are measured on; the data must not shrink below them.
MINIMUM = {"synthetic": (400, 60, 40), "postmortems": (150, 60, 0)}


@pytest.fixture(params=SETS)
def data(request: pytest.FixtureRequest):
    return request.param, *load(request.param)


def test_sizes_meet_the_targets(data) -> None:
    name, cases, queries, similar = data
    min_cases, min_queries, min_similar = MINIMUM[name]
    assert len(cases) >= min_cases
    assert len(queries) >= min_queries
    assert len(similar) >= min_similar


def test_ids_are_unique_and_well_formed(data) -> None:
    _, cases, queries, similar = data
    case_ids = [c.id for c in cases]
    assert len(case_ids) == len(set(case_ids))
    assert len({q.id for q in queries}) == len(queries)
    assert len({s.case for s in similar}) == len(similar)
    assert all(re.fullmatch(r"[a-z]+-\d{3,4}", i) for i in case_ids + [q.id for q in queries])


def test_every_case_has_text_to_find_and_a_utc_time_before_now(data) -> None:
    _, cases, _, _ = data
    for c in cases:
        assert c.title.strip() and c.service.strip(), c.id
        assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", c.service), c.service
        assert c.entries and all(e.text.strip() and e.author.strip() for e in c.entries), c.id
        assert c.opened_at.utcoffset() is not None and c.opened_at.utcoffset().total_seconds() == 0
        assert c.opened_at < NOW, c.id
        assert not any(e.kind == "human" and e.author.startswith(("primary:", "partner:")) for e in c.entries), c.id


def test_relevant_cases_exist_and_queries_are_not_empty(data) -> None:
    _, cases, queries, _ = data
    ids = {c.id for c in cases}
    for q in queries:
        assert q.query.strip() and q.style.strip(), q.id
        assert q.relevant, q.id
        assert set(q.relevant) <= ids, (q.id, set(q.relevant) - ids)


def test_similar_items_ask_about_open_cases_and_point_at_other_existing_cases(data) -> None:
    _, cases, _, similar = data
    by_id = {c.id: c for c in cases}
    for s in similar:
        assert by_id[s.case].is_open, s.case
        assert s.similar and s.case not in s.similar
        assert set(s.similar) <= by_id.keys()


def test_queries_are_not_copies_of_what_they_should_find() -> None:
    """A known-item query that repeats its case's title measures string matching, not search."""
    cases, queries, _ = load("postmortems")
    titles = {c.id: c.title.lower() for c in cases}
    for q in queries:
        assert all(q.query.lower() not in titles[r] and titles[r] not in q.query.lower() for r in q.relevant), q.id


def test_synthetic_time_queries_have_answers_inside_their_window() -> None:
    cases, queries, _ = load("synthetic")
    by_id = {c.id: c for c in cases}
    windows = {phrase: (start, end) for phrase, start, end in generate.TIME_WINDOWS}
    time_queries = [q for q in queries if q.style == "time"]
    assert len(time_queries) >= 5
    for q in time_queries:
        phrase = next(p for p in windows if p in q.query)
        start, end = windows[phrase]
        assert all(start <= by_id[r].opened_at < end for r in q.relevant), q.id


def test_committed_files_are_what_the_generators_produce() -> None:
    """The data is reproducible from its source: the seeded generator and the hand-written source.txt."""
    for module, here in ((generate, generate.OUT), (pm_build, pm_build.HERE)):
        for name, text in module.build().items():
            assert (Path(here) / name).read_text() == text, f"{module.__name__}: {name} is stale, re-run it"


def test_unknown_set_names_are_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="choose one of synthetic, postmortems"):
        load("syntetic")


def test_synthetic_service_queries_only_count_cases_on_the_service_they_name() -> None:
    cases, queries, _ = load("synthetic")
    by_id = {c.id: c for c in cases}
    service_queries = [q for q in queries if q.style == "service"]
    assert len(service_queries) >= 10
    for q in service_queries:
        said = q.query.lower()
        for r in q.relevant:
            svc = by_id[r].service
            assert svc in said or svc.replace("-", " ") in said or re.search(rf"\b{svc.split('-')[0]}\b", said), q.id
