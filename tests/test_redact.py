"""Redaction: no secret of the corpus survives, look-alikes mostly do, logs are clean, and it is fast.

The corpus (`tests/data/secrets_corpus.py`) is shared with the end-to-end checks, so a secret type added
there is checked here first, where a failure points at the detector rather than at a transport.
"""

from __future__ import annotations

import io
import json
import logging
import re
import statistics
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sharedctx.errors import ConfigError
from sharedctx.model import EntryDraft, EntryKind, Evidence
from sharedctx.redact import (
    RedactingFilter,
    Redactor,
    classify_key,
    default_redactor,
    install_log_redaction,
    placeholder,
)
from tests.data.secrets_corpus import LOOKALIKES, SAMPLES, SECRETS, leaked

R = default_redactor()


# ------------------------------------------------------------------------------------------- the corpus


def test_corpus_is_big_and_varied() -> None:
    """The acceptance asks for 50+ secrets of 15+ types; the brief for 60+."""
    assert len(SECRETS) >= 60
    assert len({kind for kind, _ in SECRETS}) >= 15
    assert len(LOOKALIKES) >= 40
    assert len({v for _, v in SECRETS}) == len(SECRETS), "corpus values must be distinct"


@pytest.mark.parametrize(("kind", "value", "text"), SAMPLES, ids=[f"{i}-{s[0]}" for i, s in enumerate(SAMPLES)])
def test_each_secret_is_redacted_with_its_type(kind: str, value: str, text: str) -> None:
    out = R.redact(text)
    assert not leaked(value, out), out
    assert placeholder(kind) in out, out


def _embed(i: int, text: str) -> EntryDraft:
    """Put sample `i` in one of the places an entry can carry text (round-robin over all of them)."""
    where = i % 8
    ev: dict[str, Any] = {"type": "log", "source": "loki"}
    draft: dict[str, Any] = {"case_id": "C1", "kind": EntryKind.FINDING, "title": "finding"}
    if where == 0 and len(text) <= 280:  # a title holds 300 characters at most
        draft["title"] = f"leaked credential: {text}"
    elif where == 0:
        draft["body"] = text
    elif where == 1:
        draft["body"] = f"## What we saw\n\n{text}\n\nNext: rotate."
    elif where == 2:
        ev["summary"] = text
    elif where == 3:
        ev["query"] = text
    elif where == 4:
        ev["url"] = text
    elif where == 5:
        ev["data"] = {"lines": [{"ts": "2024-06-11T10:15:00Z", "line": text}], "count": 1}
    elif where == 6:
        draft["attrs"] = {"excerpt": text, "tags": ("auth", text)}
    else:
        draft["body"] = text
        ev["data"] = {"raw": text}
    if len(ev) > 2:
        draft["evidence"] = (Evidence(**ev),)
    return EntryDraft(**draft)


def test_no_secret_survives_redact_draft_in_any_field() -> None:
    """Catch rate over the whole corpus, each sample embedded in a different field; must be 1.0."""
    caught = 0
    failures = []
    for i, (kind, value, text) in enumerate(SAMPLES):
        out = R.redact_draft(_embed(i, text)).model_dump_json()
        # JSON escapes quotes and newlines; compare against the decoded strings too
        decoded = json.dumps(json.loads(out), ensure_ascii=False)
        ok = not leaked(value, out) and not leaked(value, decoded) and placeholder(kind) in out
        caught += ok
        if not ok:
            failures.append((kind, out[:300]))
    rate = caught / len(SAMPLES)
    print(f"\nsecret catch rate: {rate:.3f} ({caught}/{len(SAMPLES)})")
    assert rate == 1.0, failures


def test_lookalikes_are_left_mostly_intact() -> None:
    """Hashes, ids, queries and plain URLs are the substance of incident notes: at least 90% must survive."""
    intact = [x for x in LOOKALIKES if R.redact(x) == x]
    rate = len(intact) / len(LOOKALIKES)
    secret_rate = sum(not leaked(v, R.redact(t)) for _, v, t in SAMPLES) / len(SAMPLES)
    print(f"\nsecret catch rate: {secret_rate:.3f}; look-alikes left intact: {rate:.3f} "
          f"({len(intact)}/{len(LOOKALIKES)}); changed: {[x for x in LOOKALIKES if x not in intact]}")
    assert rate >= 0.9
    assert secret_rate == 1.0


def test_no_detect_secrets_format_detector_fires_on_redacted_corpus() -> None:
    """An independent oracle: detect-secrets' own format plugins find nothing left after redaction."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.plugins.base import RegexBasedDetector

    skip = {"Secret Keyword", "Base64 High Entropy String", "Hex High Entropy String", "Public IP (ipv4)"}
    mapping: dict[str, Any] = dict(get_mapping_from_secret_type_to_class())
    plugins = [cls() for name, cls in mapping.items() if name not in skip and issubclass(cls, RegexBasedDetector)]
    assert len(plugins) >= 15
    for kind, _value, text in SAMPLES:
        out = R.redact(text)
        for plugin in plugins:
            hits = [h for h in plugin.analyze_string(out) if h]
            assert not hits, (kind, plugin.secret_type, hits, out)


# ------------------------------------------------------------------------------------ values and drafts


def test_values_under_secret_keys_are_redacted_whole() -> None:
    """In structured data the key is the only context: `{"password": "hunter2"}` has no `password=`."""
    data = {
        "password": "hunter2",
        "db": {"api_key": "k3y-0f-the-day", "pin_password": 123456, "user": "ro"},
        "secrets": ["ghp_" + "a1B2c3D4" * 4 + "e5F6", "plain"],
        "secret_name": "checkout-db-credentials",
        "max_tokens": 4096,
        "token": None,
        "enabled": True,
        "note": "rolled back 3f786850e387",
    }
    out = R.redact_value(data)
    assert out["password"] == "[REDACTED:password]"
    assert out["db"] == {"api_key": "[REDACTED:api-key]", "pin_password": "[REDACTED:password]", "user": "ro"}
    assert out["secrets"][0] == "[REDACTED:github-token]"
    assert out["secret_name"] == "checkout-db-credentials"
    assert out["max_tokens"] == 4096 and out["token"] is None and out["enabled"] is True
    assert out["note"] == data["note"]
    assert data["password"] == "hunter2", "the input is not mutated"


def test_redact_value_keeps_container_types_and_identity_when_clean() -> None:
    clean = {"a": [1, "two", ("three",)], "b": {"c": "d"}}
    assert R.redact_value(clean) is clean
    dirty = {"t": ("x", "Authorization: Bearer abcdef0123456789abcdef")}
    out = R.redact_value(dirty)
    assert isinstance(out["t"], tuple) and out["t"][1] == "Authorization: Bearer [REDACTED:bearer-token]"


def test_clean_draft_is_returned_as_is() -> None:
    draft = EntryDraft(case_id="C1", kind=EntryKind.NOTE, title="p99 up", body="rolled back 3f786850e387",
                       evidence=(Evidence(type="metric", source="prometheus", query="up{job='api'}"),))
    assert R.redact_draft(draft) is draft


def test_redact_draft_covers_every_field() -> None:
    tok = "ghp_" + "Zx9" * 12
    draft = EntryDraft(
        case_id="C1", kind=EntryKind.ACTION, title=f"t {tok}", body=f"b {tok}", ref=f"https://u:{tok}@h/x",
        attrs={"k": tok},
        evidence=(Evidence(type="link", source=f"s {tok}", summary=f"s {tok}", query=f"q {tok}",
                           url=f"https://h/x?token={tok}", data={"d": [tok]}),),
    )
    out = R.redact_draft(draft)
    assert tok not in out.model_dump_json()
    assert out.title == "t [REDACTED:github-token]"
    assert out.evidence[0].url == "https://h/x?token=[REDACTED:github-token]"
    assert out.case_id == "C1" and out.kind is EntryKind.ACTION


# ----------------------------------------------------------------------------------------- idempotence


@pytest.mark.parametrize("text", [t for _, _, t in SAMPLES] + LOOKALIKES)
def test_redacting_twice_equals_redacting_once(text: str) -> None:
    once = R.redact(text)
    assert R.redact(once) == once


def test_placeholders_are_not_redacted_again() -> None:
    for text in ["[REDACTED:jwt]", "password=[REDACTED:password]", "postgres://u:[REDACTED:password]@h/db",
                 "Authorization: Bearer [REDACTED:bearer-token]", '{"token": "[REDACTED:github-token]"}',
                 "password: [REDACTED:password]  # rotated", "Cookie: [REDACTED:cookie]"]:
        assert R.redact(text) == text
    draft = _embed(1, SAMPLES[0][2])
    once = R.redact_draft(draft)
    assert R.redact_draft(once) == once


# ----------------------------------------------------------------------------------------- properties

SAFE = "abcdefghijklmnopqrstuvwxyz0123456789 \n,()!?"


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=SAFE, max_size=2000))
def test_text_without_secrets_is_unchanged(text: str) -> None:
    assert R.redact(text) == text


FRAGMENTS = [
    "password", "PASSWORD", "token", "api_key", "secret", "Secret_Name", "key", "=", ": ", ":", "\n", " ",
    '"', "'", "AKIA", "ghp_", "sk-", "eyJ", "-----BEGIN RSA PRIVATE KEY-----", "://", "@", "Bearer ",
    "Authorization: ", "basic ", "sig=", "--password ", "<password>", "</password>", "xoxb-", "AccountKey=",
    "[REDACTED:jwt]", "0123456789", "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ", "Zm9vOmJhcg==", ";", "&",
]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=12), max_size=40).map("".join))
def test_precheck_never_hides_a_finding(text: str) -> None:
    """The fast path is sound: with and without the precheck, the detectors find the same secrets."""
    assert R.find(text) == R.find(text, precheck=False)


@pytest.mark.parametrize("text", [t for _, _, t in SAMPLES] + LOOKALIKES)
def test_precheck_agrees_with_full_scan_on_corpus(text: str) -> None:
    assert R.find(text) == R.find(text, precheck=False)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=12), max_size=40).map("".join))
def test_redaction_is_idempotent_on_random_fragments(text: str) -> None:
    once = R.redact(text)
    assert R.redact(once) == once



@pytest.mark.parametrize(
    "text",
    [
        "-----BEGIN RSA PRIVATE KEY-------password password",  # found by hypothesis: `--password` after a placeholder
        "-----BEGIN RSA PRIVATE KEY-----Authorization: password",
        "://-----BEGIN RSA PRIVATE KEY-----password@",  # a URL password that would start inside a placeholder
    ],
)
def test_a_placeholder_that_exposes_a_secret_is_redacted_in_the_same_call(text: str) -> None:
    once = R.redact(text)
    assert R.redact(once) == once
    assert "password" not in once.rsplit("]", 1)[-1]  # what followed the key block is gone too
    assert re.fullmatch(r"[^\[\]]*(?:\[REDACTED:[a-z0-9-]+\][^\[\]]*)+", once), once  # whole placeholders only

# ---------------------------------------------------------------------------------------- user patterns


def test_user_patterns_named_and_bare() -> None:
    r = Redactor(["acme-key=ACME-[0-9a-f]{32}", r"employee (?P<secret>\d{6})", r"x-internal: (\w+)"])
    out = r.redact(f"key ACME-{'ab12' * 8} for employee 123456 with x-internal: s3cr3tval")
    assert out == "key [REDACTED:acme-key] for employee [REDACTED:custom] with x-internal: [REDACTED:custom]"
    assert Redactor.from_config({"patterns": ["acme-key=ACME-[0-9a-f]{32}"]}).redact(
        "ACME-" + "0" * 32
    ) == "[REDACTED:acme-key]"


def test_bad_user_pattern_is_a_config_error_that_says_how() -> None:
    with pytest.raises(ConfigError, match="name=regex"):
        Redactor(["broken=(unclosed"])
    with pytest.raises(ConfigError, match="list of strings"):
        Redactor.from_config({"patterns": "ACME-.*"})


def test_classify_key_names_and_skips() -> None:
    assert classify_key("PGPASSWORD") == "password"
    assert classify_key("aws_secret_access_key") == "aws-secret-key"
    assert classify_key("DD-APPLICATION-KEY") == "datadog-key"
    assert classify_key("routing_key") == "pagerduty-key"
    assert classify_key("X-Api-Key") == "api-key"
    assert classify_key("vault_secret_id") == "secret"
    for key in ("secretName", "password_file", "max_tokens", "private_key_id", "next_page_token", "monkey"):
        assert classify_key(key) is None, key


# ------------------------------------------------------------------------------------------------- logs


def _logger(name: str) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger(name)
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


def test_log_filter_redacts_msg_and_args() -> None:
    logger, stream = _logger("sharedctx.test.redact.args")
    pw, tok = "hunter2hunter2", "ghp_" + "Q7w" * 12
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep()
    keep.addFilter(RedactingFilter())
    logger.addHandler(keep)
    logger.info("connecting with password=%s token %s to %s", pw, tok, "postgres://app:" + pw + "@db/x")
    logger.warning("headers: %r", {"Authorization": "Bearer " + "abc123" * 5})
    out = stream.getvalue()
    assert pw not in out and tok not in out and "abc123abc123" not in out
    assert "password=[REDACTED:password]" in out and "[REDACTED:github-token]" in out
    assert records[0].args is None and pw not in records[0].getMessage()


def test_log_filter_redacts_exception_text() -> None:
    logger, stream = _logger("sharedctx.test.redact.exc")
    key = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"
    try:
        raise RuntimeError(f"stripe said no to {key}")
    except RuntimeError:
        logger.exception("delivery failed")
    out = stream.getvalue()
    assert key not in out and "[REDACTED:stripe-key]" in out and "Traceback" in out


def test_install_log_redaction_attaches_once_to_root_handlers() -> None:
    root = logging.getLogger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    try:
        first = install_log_redaction()
        second = install_log_redaction()
        assert first is second
        assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
        logging.getLogger("sharedctx.some.child").info("token: %s", "glpat-" + "Ab3" * 7)
        assert "glpat-" not in stream.getvalue() and "[REDACTED:gitlab-token]" in stream.getvalue()
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        for h in [*root.handlers, logging.lastResort]:
            if h is not None:
                for f in [f for f in h.filters if isinstance(f, RedactingFilter)]:
                    h.removeFilter(f)


# ------------------------------------------------------------------------------------------ performance

TYPICAL_BODY = (
    "Checkout p99 latency rose from 180ms to 2.4s at 10:02 UTC after deploy 3f786850e387 of checkout-api. "
    "Prometheus: histogram_quantile(0.99, sum(rate(http_request_duration_seconds_bucket{service=\"checkout\"}"
    "[5m])) by (le)). Pods checkout-api-7d9f8b6c5d-x2v4q and checkout-api-7d9f8b6c5d-kq2lm show connection "
    "pool exhaustion against orders-db (max 50, in use 50, waiting 212). Trace 4bf92f3577b34da6a3ce929d0e0e4736 "
    "shows 2.1s in OrdersRepo.find. Hypothesis: the release removed the statement timeout; long queries hold "
    "connections. Next: roll back to a1b2c3d4 and watch the burn rate for 15 minutes. Grafana: "
    "https://grafana.acme.io/d/abc123/checkout?orgId=1&from=now-6h. Related case 01HZX3V9KQ7M2N8P4R6T0W5Y1A "
    "had the same signature in March; the key question is whether the index survived the migration. "
) * 2


def _median_us(fn: Any, n: int = 300) -> float:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6


def test_redact_is_fast_on_clean_text() -> None:
    """`redact()` runs inside `record()`; a clean 1 KB body must take tens of µs, not milliseconds."""
    body = TYPICAL_BODY[:1024]
    assert R.redact(body) == body
    clean = _median_us(lambda: R.redact(body))
    dirty_body = body[:900] + " password=hunter2 " + SAMPLES[0][2]
    dirty = _median_us(lambda: R.redact(dirty_body))
    print(f"\nredact 1 KB clean: {clean:.1f} µs; 1 KB with secrets: {dirty:.1f} µs")
    assert clean < 250  # generous for slow CI machines; typically ~30 µs
