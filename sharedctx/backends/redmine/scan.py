"""Which of a project's issues changed: Redmine 5 has no webhooks, so the poller would read every live
case back each round. One `updated_on>=` listing for the whole project says which issues changed, and the
quiet ones keep their cursor without a read: N quiet cases cost one request, not N.

`updated_on` has whole seconds, and `>=` on it repeats the previous second (Redmine stores fractions), so:
listings drop (issue, updated_on) pairs already seen; pages are keyed on `updated_on`, not an offset (an
issue updated mid-listing moves to the end and would push another past an offset); and an issue that
changed within 2 s of our last full read is never trusted to be quiet.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ...model import parse_ts

BLUR = 2.0  # seconds around a read in which updated_on cannot tell before from after
PAGE = 100  # Redmine's largest page


class ChangeScan:
    """`quiet(issue)` from one shared listing, refreshed at most every `every` seconds (0: never quiet)."""

    def __init__(self, list_issues: Callable[[dict[str, Any]], dict[str, Any]], every: float,
                 clock: Callable[[], float] = time.time) -> None:
        self._list = list_issues
        self.every = every
        self._clock = clock
        self._read: dict[str, tuple[str, float]] = {}  # issue id -> (its updated_on, when we read it in full)
        self._latest: dict[str, str] = {}  # issue id -> newest updated_on the listings have shown
        self._seen: set[tuple[str, str]] = set()
        self._at = clock() - 1.0  # the first listing covers everything since this scan was made
        self.listings = 0

    def changed_since(self, since: datetime, *, seen: set[tuple[str, str]] | None = None) -> dict[str, str]:
        """{issue id: updated_on} updated at or after `since`, without the pairs in `seen` (updated in place)."""
        seen = set() if seen is None else seen
        stamp, offset, out = _second(since), 0, {}
        while True:
            page = self._list({"updated_on": f">={stamp}", "sort": "updated_on:asc,id", "limit": PAGE,
                               "offset": offset})
            self.listings += 1
            batch = page.get("issues") or []
            for issue in batch:
                key = (str(issue["id"]), str(issue.get("updated_on")))
                if key not in seen:
                    seen.add(key)
                    out[key[0]] = key[1]
            if len(batch) < PAGE:
                return out
            newest = str(batch[-1].get("updated_on"))
            stamp, offset = (stamp, offset + len(batch)) if newest == stamp else (newest, 0)

    def note_read(self, issue_id: str, updated_on: str, read_at: float) -> None:
        """A full read of the issue, and the `updated_on` it showed (from the same answer)."""
        self._read[issue_id] = (updated_on, read_at)

    def quiet(self, issue_id: str) -> bool:
        """True when the issue has certainly not changed since our last full read of it."""
        last = self._read.get(issue_id)
        if last is None or not self.every:
            return False
        updated_on, read_at = last
        try:
            if parse_ts(updated_on).timestamp() > read_at - BLUR:
                return False
        except ValueError:
            return False
        now = self._clock()
        if self._at < read_at or now - self._at > self.every:
            window = datetime.fromtimestamp(min(self._at, read_at) - BLUR, tz=UTC)
            self._latest.update(self.changed_since(window, seen=self._seen))
            self._at = now
        return self._latest.get(issue_id, updated_on) <= updated_on


def _second(when: datetime) -> str:
    """Redmine's filter format: UTC, whole seconds."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
