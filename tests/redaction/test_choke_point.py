"""The store is the one choke point: whatever calls it, whatever field a model grows, nothing is written
unredacted. These call the store directly (no `SharedContext`), on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from sharedctx.model import Author, EntryDraft, Evidence
from sharedctx.redact import default_redactor
from sharedctx.store.base import Store

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
