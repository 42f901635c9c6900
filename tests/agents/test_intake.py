"""Alert intake: what is accepted, and how a refusal says what is wrong."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sharedctx.agents.demo import demo_payload
from sharedctx.intake import IntakeError, expression_from_generator_url, parse_alertmanager, parse_generic


def am(**changes: Any) -> bytes:
    payload = demo_payload("firing", "2026-01-01T10:00:00Z")
    payload.update(changes)
    return json.dumps(payload).encode()


def refusal(fn: Any, body: bytes, **kw: Any) -> IntakeError:
    with pytest.raises(IntakeError) as info:
        fn(body, **kw)
    return info.value


def test_an_alertmanager_v4_payload_becomes_typed_alerts() -> None:
    [alert] = parse_alertmanager(am())
    assert (alert.status, alert.name, alert.service, alert.severity) == (
        "firing", "CheckoutHighErrorRate", "checkout", "critical")  # fmt: skip
    assert alert.fingerprint == "alertmanager:5ac0ffee00c0ffee"
    assert alert.title == "Checkout 5xx ratio above 5%"
    assert alert.starts_at is not None and alert.ends_at is None  # Go's zero time means "not ended"
    # the query that fired, from generatorURL, without its threshold
    assert alert.query == (
        'sum(rate(http_requests_total{service="checkout",code=~"5.."}[1m])) / '
        'sum(rate(http_requests_total{service="checkout"}[1m]))'
    )


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"", 400, "empty"),
        (b"\xff\xfe{}", 400, "not UTF-8"),
        (b"[1, 2]", 422, "JSON object"),
        (json.dumps({"status": "firing", "alerts": []}).encode(), 422, "missing `version`"),
        (am(version="3"), 422, "version '3' is not supported"),
        (am(alerts=[]), 422, "alerts: List should have at least 1 item"),
        (am(status="exploded"), 422, "status: Input should be 'firing' or 'resolved'"),
        (am(alerts=[{"status": "firing", "labels": {}}]), 422, "alerts[0].labels"),
        (am(alerts=[{"status": "firing", "labels": {"a": "b"}, "startsAt": "yesterday"}]), 422, "alerts[0].startsAt"),
    ],
)
def test_a_bad_alertmanager_payload_is_refused_with_the_reason(body: bytes, status: int, says: str) -> None:
    exc = refusal(parse_alertmanager, body)
    assert exc.status == status
    assert says in exc.message


def test_an_oversized_payload_is_refused_before_parsing() -> None:
    exc = refusal(parse_alertmanager, am(), max_bytes=100)
    assert exc.status == 413
    assert "the limit is 100 bytes" in exc.message


def test_a_generic_alert_needs_only_a_title_and_gets_a_stable_fingerprint() -> None:
    [a] = parse_generic(b'{"title": "Disk almost full", "service": "db"}')
    [b] = parse_generic(b'{"service": "db", "title": "Disk almost full"}')
    [c] = parse_generic(b'{"title": "Disk almost full", "service": "cache"}')
    assert (a.status, a.severity, a.case_title) == ("firing", "warning", "Disk almost full (db)")
    assert a.fingerprint == b.fingerprint != c.fingerprint
    [d] = parse_generic(b'{"title": "x", "fingerprint": "disk-db"}')
    assert d.fingerprint == "generic:disk-db"


def test_a_generic_list_is_several_alerts_and_each_error_is_located() -> None:
    assert len(parse_generic(b'[{"title": "a"}, {"title": "b", "status": "resolved"}]')) == 2
    exc = refusal(parse_generic, b'[{"title": "a"}, {"title": "", "severity": "apocalyptic", "colour": 1}]')
    assert exc.status == 422
    locs = {e.split(":")[0] for e in exc.errors}
    assert locs == {"[1].title", "[1].severity", "[1].colour"}
    assert "[1].severity: Input should be 'critical', 'warning' or 'info'" in exc.message


def test_the_threshold_is_dropped_from_a_generator_url_expression() -> None:
    url = "http://p:9090/graph?g0.expr=rate%28x%5B1m%5D%29+%3E+0.05&g0.tab=1"
    assert expression_from_generator_url(url) == "rate(x[1m])"
    assert expression_from_generator_url("http://p:9090/graph") is None
    assert expression_from_generator_url("") is None
