"""W3C traceparent: parse what the spec allows, ignore what it says to ignore, never fail a call."""

from __future__ import annotations

import pytest

from sharedctx.channel.trace import child_traceparent, new_traceparent, parse_traceparent

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_valid_traceparent_parses_and_prints_back_unchanged() -> None:
    parsed = parse_traceparent(VALID)
    assert parsed is not None
    assert (parsed.trace_id, parsed.parent_id, parsed.flags) == (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7",
        "01",
    )
    assert str(parsed) == VALID


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero span id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # v00 has four fields
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # short trace id
    ],
)
def test_invalid_values_are_ignored(value: str | None) -> None:
    assert parse_traceparent(value) is None


def test_a_future_version_with_more_fields_is_accepted() -> None:
    assert parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-next") is not None


def test_a_child_keeps_the_trace_and_gets_a_new_span() -> None:
    child = parse_traceparent(child_traceparent(VALID))
    assert child is not None
    assert child.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert child.parent_id != "00f067aa0ba902b7"


def test_a_child_of_garbage_is_a_fresh_root_and_roots_differ() -> None:
    assert parse_traceparent(child_traceparent("garbage")) is not None
    assert new_traceparent() != new_traceparent()
