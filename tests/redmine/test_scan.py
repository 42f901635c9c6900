"""The `updated_on` change scan against a listing that behaves like Redmine's `/issues.json` (whole-second
`>=` filter, ascending sort, limit/offset pages), including issues that change while we page."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sharedctx.backends.redmine.scan import ChangeScan

T0 = datetime(2026, 12, 3, 8, 0, 0, tzinfo=UTC)


def stamp(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


class Listing:
    """Issues with updated_on; `on_page(n, listing)` runs before page n is answered (to change things)."""

    def __init__(self, updated: dict[str, float], on_page: Callable[[int, Listing], None] | None = None) -> None:
        self.updated = dict(updated)
        self.on_page = on_page
        self.pages = 0

    def __call__(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.on_page:
            self.on_page(self.pages, self)
        self.pages += 1
        since = params["updated_on"].removeprefix(">=")
        rows = sorted(((stamp(t), int(i)) for i, t in self.updated.items() if stamp(t) >= since))
        page = rows[params["offset"]: params["offset"] + params["limit"]]
        return {"issues": [{"id": i, "updated_on": u} for u, i in page], "total_count": len(rows)}


def test_repeats_of_the_same_second_are_dropped_and_a_new_update_is_not() -> None:
    listing = Listing({"1": 0.2, "2": 0.7})
    scan = ChangeScan(listing, every=5)
    seen: set[tuple[str, str]] = set()
    assert scan.changed_since(T0, seen=seen) == {"1": stamp(0), "2": stamp(0)}
    assert scan.changed_since(T0, seen=seen) == {}
    listing.updated["2"] = 3.1
    assert scan.changed_since(T0, seen=seen) == {"2": stamp(3)}


def test_an_issue_updated_mid_listing_pushes_no_other_issue_past_us() -> None:
    def bump(page: int, listing: Listing) -> None:
        if page == 1:  # between page 1 and page 2, two issues from page 1 change (they move to the end)
            listing.updated["5"] = listing.updated["7"] = 400.0

    listing = Listing({str(i): float(i) for i in range(1, 251)}, on_page=bump)
    got = ChangeScan(listing, every=5).changed_since(T0)
    assert set(got) == {str(i) for i in range(1, 251)}
    assert got["5"] == got["7"] == stamp(400)


def test_more_than_a_page_within_one_second_is_paged_without_looping() -> None:
    listing = Listing({str(i): 0.5 for i in range(1, 231)})
    got = ChangeScan(listing, every=5).changed_since(T0)
    assert len(got) == 230 and listing.pages == 3


def test_quiet_needs_a_read_clear_of_the_blur_and_a_listing_after_it() -> None:
    now = [T0.timestamp() + 100]
    listing = Listing({"1": 10.0, "2": 99.5})
    scan = ChangeScan(listing, every=5, clock=lambda: now[0])
    assert not scan.quiet("1")  # never read in full
    scan.note_read("1", stamp(10), now[0])
    scan.note_read("2", stamp(99), now[0])  # changed within 2 s of the read: can't tell before from after
    now[0] += 1
    assert scan.quiet("1") and not scan.quiet("2")
    assert listing.pages == 1  # one listing answered for both
    listing.updated["1"] = 102.0  # a person writes; the listing is reused for `every` seconds, then redone
    now[0] += 6
    assert not scan.quiet("1") and listing.pages == 2
    assert ChangeScan(listing, every=0).quiet("1") is False  # 0 turns the scan off
