"""Every field has a limit and a format, checked at the one place every path goes through.

A refused value gets an `InvalidEntry` that names the field and the limit, never repeats the value, and
leaves nothing behind (no entry, no empty case).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sharedctx.config import parse_config
from sharedctx.context import SharedContext
from sharedctx.errors import InvalidEntry
from sharedctx.intake import service_slug as intake_slug
from sharedctx.model import (
    MAX_ATTRS_BYTES,
    MAX_DATA_BYTES,
    MAX_JSON_DEPTH,
    SERVICE_RE,
    service_slug,
)
from sharedctx.testing import FakeBackend

SECRETISH = "Zq8vK2mPx9LwT4"


@pytest.fixture
def ctx(tmp_path: Path) -> Any:
    config = parse_config({"store": "journal.db", "worker": {"enabled": False}}, base_dir=tmp_path)
    with SharedContext.open(config, worker=False, backends={"fake": FakeBackend("fake")}) as c:
        yield c


def _deep(n: int) -> dict[str, Any]:
    d: dict[str, Any] = {"leaf": 1}
    for _ in range(n):
        d = {"x": d}
    return d


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"title": "t" * 301}, "title is 301 characters; the limit is 300"),
        ({"body": "b" * (256 * 1024 + 1)}, "body is 262,145 bytes; the limit is 262,144"),
        ({"trace_id": "4BF92F3577B34DA6A3CE929D0E0E4736"}, "trace_id must be a W3C trace-id"),
        ({"trace_id": "0" * 32}, "trace_id must be a W3C trace-id"),
        ({"trace_id": f"password={SECRETISH}"}, "trace_id must be a W3C trace-id"),
        ({"attrs": {"blob": "a" * MAX_ATTRS_BYTES}}, f"attrs is {MAX_ATTRS_BYTES + 11:,} bytes as JSON; the limit"),
        ({"attrs": _deep(MAX_JSON_DEPTH)}, f"attrs is nested deeper than {MAX_JSON_DEPTH} levels"),
        ({"attrs": _deep(100_000)}, f"attrs is nested deeper than {MAX_JSON_DEPTH} levels"),
        ({"attrs": {"s": {1, 2}}}, "attrs must be plain JSON"),
        ({"attrs": {"nan": float("nan")}}, "attrs must be plain JSON"),
        ({"evidence": [{"type": "log", "source": "x", "data": {"d": "a" * MAX_DATA_BYTES}}]},
         "evidence[0].data is"),
        ({"evidence": [{"type": "log", "source": "s" * 201}]}, "evidence[0].source is 201 characters; the limit"),
        ({"evidence": [{"type": "log", "source": "x", "summary": "s" * 4097}]}, "evidence[0].summary is 4,097"),
        ({"evidence": [{"type": "link", "source": "x", "url": "u" * 4097}]}, "evidence[0].url is 4,097"),
        ({"evidence": [{"type": "log", "source": "x"}] * 101}, "evidence has 101 items; the limit is 100"),
        ({"evidence": [{"type": "log", "source": "x", "colour": SECRETISH}]}, "evidence[0].colour: unknown field"),
        ({"author": "partner:" + "n" * 201}, "name: String should have at most 200 characters"),
        ({"ref": f"password={SECRETISH}"}, "ref (not an entry id) is not an entry"),
    ],
)
def test_each_entry_limit_names_the_field_and_records_nothing(ctx: Any, kwargs: dict[str, Any], names: str) -> None:
    case = ctx.open_case("Limits", service="checkout")
    args = {"title": "x", **kwargs}
    with pytest.raises(InvalidEntry) as err:
        case.record("note", **args)
    assert names in str(err.value)
    assert SECRETISH not in str(err.value)
    assert case.timeline() == []


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"service": "Checkout API"}, "service must be a slug"),
        ({"service": f"password={SECRETISH}"}, "service must be a slug"),
        ({"service": "s" * 65}, "service must be a slug"),
        ({"severity": "x" * 33}, "severity is 33 characters; the limit is 32"),
        ({"fingerprint": "f" * 257}, "fingerprint is 257 characters; the limit is 256"),
        ({"labels": {f"k{i}": "v" for i in range(65)}}, "labels has 65 entries; the limit is 64"),
        ({"labels": {"job": "v" * 1025}}, "labels.job is 1,025 characters; the limit is 1,024"),
        ({"title": "t" * 301}, "invalid case: title is 301 characters; the limit is 300"),
    ],
)
def test_each_case_limit_names_the_field_and_opens_nothing(ctx: Any, kwargs: dict[str, Any], names: str) -> None:
    args = {"title": "Limits", **kwargs}
    with pytest.raises(InvalidEntry) as err:
        ctx.open_case(**args)
    assert names in str(err.value)
    assert SECRETISH not in str(err.value)
    assert ctx.cases() == []


def test_a_valid_trace_id_and_slug_are_kept(ctx: Any) -> None:
    case = ctx.open_case("Fine", service="checkout-api.v2")
    entry = case.record("note", "x", trace_id="4bf92f3577b34da6a3ce929d0e0e4736", attrs=_deep(MAX_JSON_DEPTH - 2))
    assert entry.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert case.info.service == "checkout-api.v2"


@pytest.mark.parametrize(
    ("raw", "slug"),
    [("Checkout API", "checkout-api"), ("  payments/ledger ", "payments-ledger"), ("node_exporter", "node_exporter"),
     ("--", ""), ("Ünïcode Svc", "unicode-svc"), ("__payments__", "payments__")],
)
def test_service_slug_normalises_free_text(raw: str, slug: str) -> None:
    assert service_slug(raw) == slug
    assert slug == "" or SERVICE_RE.match(slug)


@given(st.text(max_size=300))
def test_any_text_slugs_to_a_valid_service_or_nothing(text: str) -> None:
    """The model's slug and the intake's agree, and the journal accepts what either makes."""
    slug = service_slug(text)
    assert slug == "" or SERVICE_RE.match(slug)
    assert slug == intake_slug(text)
