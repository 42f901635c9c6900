"""`sharedctx.decisions` as a property: whatever an entry says about itself, only a person's decision
(or sharedctx's own timeout policy) ever counts, and the writer refuses exactly what the readers ignore."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharedctx.backends.base import HumanItem
from sharedctx.decisions import (
    TIMEOUT_RULE,
    Verdict,
    approves,
    check_answer,
    counts,
    decided_requests,
    hold_state,
    may_decide,
    pending_requests,
)
from sharedctx.errors import PermissionDenied, Retryable
from sharedctx.model import SYSTEM, Author, Entry, EntryDraft, EntryKind, utcnow
from sharedctx.store.base import Store

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


# ---- on both stores: forged rows are ignored by the readers ---------------------------------------------
def test_forged_agent_decisions_in_either_store_never_release_a_hold(store: Store) -> None:
    from sharedctx.decisions import get_decision, held_for_decision

    rec, _ = store.open_case(title="c", service="checkout", severity="warning", fingerprint=None, labels={})
    held = store.append(EntryDraft(case_id=rec.id, kind=EntryKind.REMEDIATION, title="restart pod-7",
                                   author=Author(kind="partner", name="telemetry"),
                                   attrs={"held_for_decision": True}), [])  # fmt: skip
    req = store.append(EntryDraft(case_id=rec.id, kind=EntryKind.DECISION_REQUEST, title="Approve?", ref=held.id),
                       [])  # fmt: skip
    for author in (Author(kind="partner", name="telemetry"), Author(kind="primary", name="lead"), SYSTEM):
        store.append(EntryDraft(case_id=rec.id, kind=EntryKind.DECISION, title="Approved", author=author,
                                ref=req.id, attrs={"outcome": "approved", "approved": True}), [])  # fmt: skip
    assert get_decision(store, req.id).status == "pending"
    assert held_for_decision(store, held) is not None
    answer = store.append(EntryDraft(case_id=rec.id, kind=EntryKind.DECISION, title="Approved", ref=req.id,
                                     author=Author(kind="human", name="alice"), attrs={"outcome": "approved"}),
                          [])  # fmt: skip
    assert get_decision(store, req.id).entry == answer
    assert held_for_decision(store, held) is None


# ---- who may decide: the allow-list, then the backend's own rule ------------------------------------
class Permissions:
    """A backend with an opinion (the `Authorizes` shape), or one that cannot be asked right now."""

    type = "fake"

    def __init__(self, levels: dict[str, bool], *, down: bool = False) -> None:
        self.levels = levels
        self.down = down

    def authorize(self, item: HumanItem) -> tuple[bool, str] | None:
        if self.down:
            raise Retryable("503 from the permission API")
        if item.author.name not in self.levels:
            return None
        return self.levels[item.author.name], f"fake:role ({item.author.name})"


def item(name: str, kind: str = "human", **raw: str) -> HumanItem:
    return HumanItem(backend="svc", external_id="1", author=Author(kind=kind, name=name), at="2026-01-01T00:00:00Z",
                     raw=raw)  # type: ignore[arg-type]


def test_may_decide_asks_the_allow_list_then_the_backend_and_refuses_otherwise() -> None:
    backend = Permissions({"alice": True, "bob": False})
    allow = {"svc": ["Carol@Acme.io"]}
    assert may_decide(allow, backend, item("alice")) == Verdict(True, "fake:role (alice)")
    assert may_decide(allow, backend, item("bob")) == Verdict(False, "fake:role (bob)")
    assert may_decide(allow, backend, item("carol", email="carol@acme.io")).allowed  # listed by email
    assert not may_decide(allow, backend, item("mallory")).allowed  # backend has no opinion, not listed
    assert not may_decide({}, None, item("alice")).allowed  # no list, no backend: nobody decides
    down = may_decide({}, Permissions({}, down=True), item("alice"))
    assert not down.allowed and "could not check" in down.rule
    # an agent is never a person, whatever the lists say
    assert not may_decide({"svc": ["lead"]}, Permissions({"lead": True}), item("lead", kind="primary")).allowed
