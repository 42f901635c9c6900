"""Decoded views: a secret is found however it was escaped, and replaced where it sits in the original."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharedctx.redact import default_redactor
from sharedctx.redact.decode import views

R = default_redactor()
PW = "Zq8vK2mPx9LwT4"


@pytest.mark.parametrize(
    "text",
    [
        json.dumps({"log": json.dumps({"password": PW})}),  # JSON inside a JSON string
        json.dumps({"a": json.dumps({"log": json.dumps({"password": PW})})}),  # three levels
        "callback?state=" + quote(json.dumps({"password": PW}), safe=""),  # percent-encoded
        "callback?state=" + quote(quote(f"password={PW}", safe=""), safe=""),  # twice
        f"password={PW[:6]}\n{PW[6:]}",  # wrapped
        f"password={PW[:6]}\\\n    {PW[6:]} next",  # shell continuation, indented
        json.dumps({"msg": f"password={PW[:6]}\n{PW[6:]}"}),  # wrapped, then JSON-escaped
        json.dumps({"m": "ok"})[:-1] + r', "x": "\ud800 password=' + PW + '"}',  # a lone surrogate escape
    ],
)
def test_encoded_secrets_are_replaced_in_place(text: str) -> None:
    out = R.redact(text)
    assert PW[:6] not in out and PW[6:] not in out, out
    assert "[REDACTED:password]" in out


def test_ordinary_lines_are_not_joined() -> None:
    """YAML keys, log fields and prose keep their line breaks; only a token broken mid-way is joined."""
    text = "password: hunter2x\nhost: db1\nport=5432\nsha256 9f86d081884c7d65\n9a2feaa0c55ad015 ok"
    assert R.redact(text) == text.replace("hunter2x", "[REDACTED:password]")


def test_text_without_escapes_builds_no_view() -> None:
    assert list(views("checkout p99 up 8x after deploy 4411; rollback started")) == []


@settings(max_examples=300, deadline=None)
@given(prefix=st.text(max_size=40), suffix=st.text(max_size=40), depth=st.integers(0, 2), url=st.booleans())
def test_a_view_maps_every_finding_back_onto_the_original(prefix: str, suffix: str, depth: int, url: bool) -> None:
    """Whatever surrounds it and however deep it is escaped, no piece of the value is left."""
    text = f"token={PW}"
    for _ in range(depth):
        text = json.dumps({"m": text})
    if url:
        text = quote(text, safe="")
    out = R.redact(prefix + " " + text + " " + suffix)
    assert PW not in out and PW[:7] not in out and PW[7:] not in out
    assert "[REDACTED:" in out
