"""The store is the one choke point: whatever calls it, whatever field a model grows, nothing is written
unredacted. These call the store directly (no `SharedContext`), on SQLite and PostgreSQL."""

from __future__ import annotations

import enum
import itertools
import random
import re
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict

from sharedctx.model import Author, EntryDraft, Evidence
from sharedctx.redact import Redactor, default_redactor
from sharedctx.redact.detectors import may_hold_secret
from sharedctx.redact.redactor import _surely_clean
from sharedctx.store.base import Store

from .corpus import ENCODINGS, encode, make_secrets

GHP = "ghp_" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5"
BODY = GHP[4:]


def _everything(store: Store) -> str:
    """Every row of every table the store wrote, as text."""
    out: list[str] = []
    for case in store.list_cases(limit=1000):
        out.append(case.model_dump_json())
        out.extend(e.model_dump_json() for e in store.entries(case.id))
    out.extend(d.model_dump_json() for d in store.list_deliveries(limit=1000))
    out.append(store.get_backend_state("fake").model_dump_json())
    for case in store.list_cases(limit=1000):
        out.append(str(store.get_cursor("fake", case.id)))
    return "\n".join(out)


def test_every_store_write_is_sanitised_whoever_calls(store: Store) -> None:
    case, _ = store.open_case(title=f"leak {GHP}", service="checkout", severity="warning",
                              fingerprint=f"fp-{GHP}", labels={"token": "x" * 8 + BODY, f"k-{GHP}": "v"})  # fmt: skip
    draft = EntryDraft(
        case_id=case.id, kind="finding", title=f"t {GHP}", body=f"b {GHP}",
        author=Author(kind="partner", name=f"p {GHP}"),
        evidence=(Evidence(type="log", source=f"s {GHP}", summary=GHP, query=GHP, url=f"https://x/?t={GHP}",
                           data={"nested": [{"line": GHP}], GHP: 1}),),
        attrs={"deep": {"list": [GHP, (GHP,)]}, GHP: "key"},
    )  # fmt: skip
    entry = store.append(draft, ["fake"])
    [delivery] = store.claim("fake", "w1", 1, 30)
    store.reschedule(delivery.id, error=f"HTTP 500 echoing {GHP}", kind="retryable", delay=0)
    [delivery] = store.claim("fake", "w1", 1, 30)
    store.mark_delivered(delivery.id, {"backend": "fake", "id": "1", "url": f"https://x/{GHP}"})
    store.set_binding(case.id, "fake", {"id": "7", "url": f"https://x/issues/7?token={GHP}"})
    store.set_backend_state("fake", "stopped", f"401 for token {GHP}")
    store.set_cursor("fake", case.id, f"page?access_token={GHP}")
    assert store.find_open_case(f"fp-{GHP}") is not None  # looked up the way it was stored
    text = _everything(store)
    assert BODY[:12] not in text and BODY[-12:] not in text
    assert "[REDACTED:github-token]" in text
    assert entry.compute_hash() == entry.hash  # the chain covers the redacted text


class _Future(BaseModel):
    """A model with field types the walk was not written around."""

    model_config = ConfigDict(frozen=True, extra="allow")
    note: str
    tags: frozenset[str]
    pairs: tuple[tuple[str, int], ...]
    inner: Evidence
    mapping: dict[str, Any]


def test_a_new_field_of_any_shape_cannot_bypass_sanitize() -> None:
    m = _Future(note=GHP, tags=frozenset({GHP}), pairs=((GHP, 1),), inner=Evidence(type="log", source=GHP),
                mapping={"a": {"b": [{"c": GHP}]}}, surprise={"x": GHP})  # type: ignore[call-arg]
    out = default_redactor().sanitize(m)
    assert BODY[:12] not in repr(out) and BODY[:12] not in out.model_dump_json()
    clean = _Future(note="n", tags=frozenset(), pairs=(), inner=Evidence(type="log", source="s"), mapping={})
    assert default_redactor().sanitize(clean) is clean


# -- the whole-entry look ----------------------------------------------------------------------------
# `sanitize` first looks at every string of a model at once (joined with NUL) and returns the model untouched
# when even the whole cannot hold a secret. These check that shortcut against the string-by-string walk it
# skips, on strings built to sit on its edges: secrets from the independent corpus in every encoding, cut at
# random points and spread over fields, dict keys and list items, next to text with line breaks, backslashes,
# `%` and NULs of its own.
_SECRETS = make_secrets(random.Random(7))
_PIECES = [encode(s, e) for s in _SECRETS for e in ENCODINGS]
_NOISE = st.text(alphabet=st.sampled_from("ab Z_-.=:/@%\\\n\r\t\x00sk3A"), max_size=24)


@st.composite
def _strings(draw: st.DrawFn) -> list[str]:
    out: list[str] = []
    for _ in range(draw(st.integers(1, 6))):
        if draw(st.booleans()):
            piece = draw(st.sampled_from(_PIECES))
            cut = sorted(draw(st.lists(st.integers(0, len(piece)), max_size=2)))
            bounds = [0, *cut, len(piece)]
            out.extend(piece[a:b] for a, b in itertools.pairwise(bounds))
        else:
            out.append(draw(_NOISE))
    return out


@settings(max_examples=400, deadline=None)
@given(parts=_strings())
def test_a_joined_text_is_clean_only_if_each_of_its_strings_is(parts: list[str]) -> None:
    if _surely_clean("\x00".join(parts)):
        assert all(_surely_clean(p) for p in parts)
        assert all(default_redactor().redact(p) == p for p in parts)


@settings(max_examples=300, deadline=None)
@given(parts=_strings(), where=st.lists(st.integers(0, 4), min_size=6, max_size=6))
def test_the_whole_entry_look_changes_exactly_what_the_walk_changes(parts: list[str], where: list[int]) -> None:
    slots: list[list[str]] = [[] for _ in range(5)]
    for i, p in enumerate(parts):
        slots[where[i % len(where)]].append(p)
    note, tag, key, item, extra = ("".join(s) for s in slots)
    m = _Future(note=note, tags=frozenset({tag}), pairs=((item, 1),), inner=Evidence(type="log", source=note or "s"),
                mapping={key: [item, {"k": extra}]}, surprise=extra)  # type: ignore[call-arg]
    r = Redactor()
    fast, walked = r.sanitize(m), r._value(m, None)
    assert fast == walked
    assert (fast is m) == (walked is m)


class _Kind(enum.StrEnum):
    TOKEN = "ghp_aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5"  # a str, but an Enum: the walk leaves enums alone


class _Level(enum.IntEnum):
    HIGH = 12345678


class _Text(str):
    """A `str` subclass: the walk redacts it like a str; the whole-entry look must leave it to the walk."""


# `re`'s IGNORECASE matches 'ſ' (long s) to 's' but `str.lower()` keeps it: `classify_key` calls this key secret
# while no string of the entry passes the precheck. Only the walk's key rule redacts its value.
_LONG_S = "pa\u017f\u017fword"
_SK = "sk-" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5hJ7k"  # a secret that the precheck sees only at a string's start


@pytest.mark.parametrize("value", [
    [_SK], ["clean", _SK], {"note": _SK}, {_SK: "v"}, {("k", _SK): "v"}, {1: [_SK]},
    {"x": Evidence(type="log", source=_SK)}, {"token": _Kind.TOKEN}, {"password": _Level.HIGH},
    {"password": 12345678}, {"secret": True}, {"n": _Text(GHP)}, {_LONG_S: "hunter2x"},
    {"outer": {_LONG_S: {"v": "hunter2x"}}}, [_Text("clean"), "x"], frozenset({("a", _SK)}),
    ({"k": ({"k": (_SK,)},)},), _Kind.TOKEN, b"bytes " + GHP.encode(),
    _Future(note="n", tags=frozenset({_SK}), pairs=(), inner=Evidence(type="log", source="s"), mapping={}),
    _Future(note="n", tags=frozenset(), pairs=(), inner=Evidence(type="log", source="s"), mapping={},
            api_key=_Level.HIGH, token=_Kind.TOKEN, password=None, secret=12345678),  # type: ignore[call-arg]
    _Future(note="n", tags=frozenset(), pairs=(), inner=Evidence(type="log", source="s"), mapping={},
            **{_LONG_S: "hunter2x"}),
], ids=repr)  # fmt: skip
def test_the_whole_entry_look_agrees_with_the_walk_on_every_shape_the_walk_treats_specially(value: Any) -> None:
    """Enums that are strs, str subclasses, non-str keys, numbers and enums under secret-named keys or extra
    fields, a secret at the very start of a string (`sk-`: the precheck's `startswith`): the shortcut returns
    exactly what the walk returns, and the same object exactly when the walk does."""
    r = Redactor()
    fast, walked = r.sanitize(value), r._value(value, None)
    assert fast == walked
    assert (fast is value) == (walked is value)


def test_the_whole_entry_look_is_linear_in_the_entry_not_quadratic() -> None:
    """The precheck's `user:pass@` branch (`://[^\\s/@]*:[^\\s/]*@`) backtracked over every `:` of a run with no
    space, `/` or `@`: quadratic. NUL is none of those, so joining an entry's strings let one `://` in the title
    run it over a colon-filled body: 64 KB took seconds (a 256 KB body minutes) where the walk takes
    milliseconds. The branch now stops at the first `:` (the same texts match; see rules.py).

    A liveness bound, not a timing assertion: 200 KB of colons took over a minute before the fix and takes
    milliseconds after it, so 30 s separates the two on any machine."""
    draft = EntryDraft(case_id="c", kind="note", title="see x://host", body=":" * 200_000)
    r = Redactor()
    started = time.perf_counter()
    assert r.sanitize(draft) is draft
    assert r.redact("x://" + ":" * 200_000) is not None  # one string alone was quadratic too
    assert time.perf_counter() - started < 30.0


_QUADRATIC_URL = re.compile(r"://[^\s/@]*:[^\s/]*@")  # the precheck's old `user:pass@` branch


@settings(max_examples=500, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(":/@ a\x00\n\t"), max_size=24).map(lambda s: "://" + s))
def test_the_linear_url_precheck_lets_through_every_text_the_old_one_did(text: str) -> None:
    assert may_hold_secret(text) or _QUADRATIC_URL.search(text) is None
