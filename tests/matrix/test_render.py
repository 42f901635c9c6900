"""Matrix rendering, fuzzed (no server): every entry splits into events within the byte budget, the parts
reassemble into the same entry, and what people see is only HTML a Matrix client may render."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sharedctx.backends.matrix import ENTRY_KEY, MatrixBackend, MatrixOptions, _copy_of, content_bytes, to_html
from sharedctx.model import GENESIS_HASH, Author, Entry, EntryKind, Evidence
from sharedctx.render import CopyPart, assemble

# What markdown-it (html off) may emit; a subset of the tags the Matrix spec lists for formatted_body.
ALLOWED_TAGS = {"p", "strong", "em", "code", "pre", "a", "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6",
                "blockquote", "hr", "br", "img", "table", "thead", "tbody", "tr", "th", "td"}
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=3000)
NASTY = st.sampled_from(["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "[x](javascript:alert(1))",
                         "```\n<b>\n", "\u202egnp.exe", "e\u0301\u0301", "🔥" * 50, "\x00\x07", "&amp;&lt;",
                         "|a|b|\n|-|-|"])


def backend(limit: int) -> MatrixBackend:
    return MatrixBackend("matrix", MatrixOptions(homeserver="https://hs.invalid", room_id="!r:hs", token="env:X",
                                                 max_event_bytes=limit))


def entry(title: str, body: str, evidence_summary: str) -> Entry:
    e = Entry(id="01J8ZZZZZZZZZZZZZZZZZZZZZZ", case_id="01J8YYYYYYYYYYYYYYYYYYYYYY", seq=1,
              ts=datetime(2026, 12, 3, 8, 0, tzinfo=UTC), author=Author(kind="partner", name="telemetry"),
              kind=EntryKind.FINDING, title=title, body=body, prev_hash=GENESIS_HASH,
              evidence=(Evidence(type="log", source="loki", summary=evidence_summary, url="https://l.example/?q=1"),))
    return e.model_copy(update={"hash": e.compute_hash()})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(title=st.text(min_size=1, max_size=300), body=st.one_of(TEXT, st.lists(st.one_of(TEXT, NASTY)).map("\n".join)),
       summary=st.one_of(TEXT, NASTY), limit=st.sampled_from([4_000, 9_000, 60_000]))
def test_any_entry_splits_within_the_budget_and_reassembles_exactly(title: str, body: str, summary: str,
                                                                     limit: int) -> None:
    e = entry(title, body, summary)
    parts = backend(limit).render(e)
    assert all(content_bytes(p) <= limit for p in parts)
    found = []
    for i, p in enumerate(parts):
        json.loads(json.dumps(p, ensure_ascii=False))  # plain JSON, as the homeserver stores it
        got = _copy_of(p)
        assert got is not None and got[:3] == (e.id, i + 1, len(parts))
        found.append(CopyPart(*got, external_id=f"$e{i}"))
    assert assemble(reversed(found)).entries == [e]  # order of arrival does not matter


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(TEXT, NASTY), max_size=8).map("\n".join))
def test_people_see_only_tags_a_matrix_client_renders_and_never_a_script(text: str) -> None:
    html = to_html(text)
    tags = {t.lower() for t in re.findall(r"<\s*/?\s*([a-zA-Z][a-zA-Z0-9]*)", html)}
    assert tags <= ALLOWED_TAGS
    assert not re.search(r"<[^>]*\son\w+\s*=", html)  # no event-handler attributes
    for url in re.findall(r'(?:href|src)="([^"]*)"', html):
        assert not re.match(r"\s*(javascript|vbscript|data):", url, re.I), url


def test_the_machine_copy_is_not_in_what_people_read() -> None:
    (p,) = backend(60_000).render(entry("p99 up", "pool exhausted", "x"))
    assert "sharedctx:entry" not in p["body"] + p["formatted_body"] and p[ENTRY_KEY]["data"]
