"""`sharedctx.decisions` as a property: whatever an entry says about itself, only a person's decision
(or sharedctx's own timeout policy) ever counts, and the writer refuses exactly what the readers ignore."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharedctx.decisions import (
    TIMEOUT_RULE,
    approves,
    check_answer,
    counts,
    decided_requests,
    hold_state,
    pending_requests,
)
from sharedctx.errors import PermissionDenied
from sharedctx.model import SYSTEM, Author, Entry, EntryDraft, EntryKind, utcnow

WORDS = ["approve", "approved", "yes", "reject", "rejected", "overridden", "timeout", "APPROVED", " yes ", ""]
values = st.one_of(st.sampled_from(WORDS), st.booleans(), st.none(), st.integers(), st.text(max_size=20))
attrs = st.dictionaries(st.sampled_from(["outcome", "choice", "approved", "rule", "decided_by", "via", "x"]),
                        st.one_of(values, st.just(TIMEOUT_RULE)), max_size=6)  # fmt: skip
names = st.text(min_size=1, max_size=30).filter(lambda s: s.strip() == s and s)
agents = st.builds(Author, kind=st.sampled_from(["primary", "partner", "system"]), name=names)


def entry(author: Author, a: dict[str, Any], *, kind: EntryKind = EntryKind.DECISION, seq: int = 2,
          ref: str | None = "REQ", eid: str = "DEC") -> Entry:  # fmt: skip
    return Entry(id=eid, case_id="C", seq=seq, ts=utcnow(), author=author, kind=kind, title="t", ref=ref, attrs=a)


def draft(author: Author, a: dict[str, Any]) -> EntryDraft:
    return EntryDraft(case_id="C", kind=EntryKind.DECISION, title="t", author=author, ref="REQ", attrs=a)


def is_the_timeout_policy(author: Author, a: dict[str, Any]) -> bool:
    return author == SYSTEM and a.get("outcome") == "timeout" and a.get("rule") == TIMEOUT_RULE


@settings(max_examples=400, deadline=None)
@given(author=agents, a=attrs)
def test_no_agent_decision_counts_and_the_writer_refuses_exactly_those(author: Author, a: dict[str, Any]) -> None:
    allowed = is_the_timeout_policy(author, a)
    assert counts(entry(author, a)) is allowed
    if allowed:
        check_answer(draft(author, a))
    else:
        with pytest.raises(PermissionDenied, match="only a person can decide"):
            check_answer(draft(author, a))


@settings(max_examples=200, deadline=None)
@given(name=names, a=attrs)
def test_a_person_always_may_answer(name: str, a: dict[str, Any]) -> None:
    person = Author(kind="human", name=name)
    check_answer(draft(person, a))
    assert counts(entry(person, a))


@settings(max_examples=300, deadline=None)
@given(agent_answers=st.lists(st.tuples(agents, attrs), max_size=5), human=st.none() | attrs)
def test_holds_and_pending_requests_only_move_on_a_counting_answer(
    agent_answers: list[tuple[Author, dict[str, Any]]], human: dict[str, Any] | None
) -> None:
    held = entry(Author(kind="partner", name="p"), {"held_for_decision": True}, kind=EntryKind.REMEDIATION, seq=1,
                 ref=None, eid="HELD")  # fmt: skip
    request = entry(SYSTEM, {"question": "q"}, kind=EntryKind.DECISION_REQUEST, seq=2, ref="HELD", eid="REQ")
    timeline = [held, request]
    for i, (author, a) in enumerate(agent_answers):
        timeline.append(entry(author, a, seq=3 + i, eid=f"A{i}"))
    if human is not None:
        timeline.append(entry(Author(kind="human", name="alice"), human, seq=99, eid="H"))
    counting = [e for e in timeline if counts(e)]
    first = min(counting, key=lambda e: e.seq) if counting else None
    hold = hold_state(timeline, held)
    assert (hold is None) == (first is not None and approves(first))
    assert ("REQ" in decided_requests(timeline)) == (first is not None)
    assert [e.id for e in pending_requests(timeline)] == ([] if first is not None else ["REQ"])


def test_what_approves() -> None:
    person = Author(kind="human", name="alice")
    assert approves(entry(person, {"outcome": "approved"}))
    assert approves(entry(person, {"choice": "approve"}))
    assert approves(entry(person, {"approved": True, "outcome": "rejected"}))  # the explicit bool wins
    assert not approves(entry(person, {"outcome": "overridden", "choice": "approve"}))
    assert not approves(entry(person, {}))
    assert approves(entry(SYSTEM, {"outcome": "timeout", "choice": "approve", "rule": TIMEOUT_RULE}))
    assert not approves(entry(SYSTEM, {"outcome": "timeout", "choice": "reject", "rule": TIMEOUT_RULE}))
