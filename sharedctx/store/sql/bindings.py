"""The bindings index: which case a thread, an external reference or a label belongs to, without a scan.

`cases.bindings` (JSON) stays the record of each case's threads, as `bind` returned them; the `bindings`
table (migration 0016) is its index, one row per part of a thread that names it (`THREAD_PARTS`).
`set_binding` writes both in one transaction (`index_binding`), `open_case` writes a new case's labels
into `case_labels` (`index_labels`), and the migration backfilled both from what was stored before.
Webhooks, the poller and `find_case` read only through the queries below, each an index lookup, so
their cost follows the number of matching cases, not the size of the journal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ...model import CaseRecord, format_ts
from .common import CASE_COLS, Conn, SQLBase, _json

# The parts of a thread dict that name the thread: what a webhook or a poll calls it (its id; ServiceNow's
# INC number; a Jira key) and, for `find_case`, its URL. Anything else in the dict (repo, channel,
# room) says where the thread lives, which is its `scope`, not its name.
THREAD_KEYS = ("id", "number", "key")
THREAD_PARTS = (*THREAD_KEYS, "url")
SCOPE_PARTS = ("repo", "channel", "room")

# Longer values are not indexed: PostgreSQL refuses a btree entry over ~2.7 kB, and a failed index write
# would fail the binding (or the case) itself. Thread ids, numbers and keys are far shorter; a URL or a
# label value past this is simply not something `find_case` can be given.
MAX_INDEXED_CHARS = 512

# -- writing the index (inside the caller's transaction) --------------------------------------------

# A (re)binding replaces what the index held for that case on that backend.
FORGET_BINDING = "DELETE FROM bindings WHERE case_id = :case_id AND backend = :backend"

# One part of a bound thread.
INDEX_BINDING = """
INSERT INTO bindings (case_id, backend, part, value, scope)
VALUES (:case_id, :backend, :part, :value, :scope)"""

# One label of a new case (labels never change after the case opens).
INDEX_LABEL = "INSERT INTO case_labels (case_id, name, value) VALUES (:case_id, :name, :value)"

# -- reading it -------------------------------------------------------------------------------------

# A webhook: the case a backend's thread belongs to, by the id / number / key the service names it with,
# within the scope the event names ({scope}: nothing, `IN_SCOPE` or `IN_SCOPE_OR_UNSCOPED`). The scope is
# part of the query, not a filter over its first rows: any number of cases bound to the same number in
# other repos cannot push ours out. Two cases bound to one thread (two alerts attached to one incident):
# the live one hears the human, then the newest.
CASE_OF_THREAD = """
SELECT b.case_id
FROM bindings b JOIN cases c ON c.id = b.case_id
WHERE b.value = :key AND b.backend = :backend AND b.part IN ('id', 'number', 'key'){scope}
ORDER BY c.status = 'resolved', b.case_id DESC
LIMIT 1"""
IN_SCOPE = " AND lower(b.scope) = :scope"
IN_SCOPE_OR_UNSCOPED = " AND (lower(b.scope) = :scope OR b.scope = '')"

# A poll round: the live cases bound to one backend, with every case's bindings JSON. Live is open or
# mitigated, or resolved since :since (answers that arrive soon after resolving still count). Driven
# from the cases' (status, resolved_at) index, with the binding found by its primary key: the round
# reads only live cases, however many resolved ones the journal holds. (CROSS JOIN fixes that order
# on SQLite; PostgreSQL plans it the same way by itself.)
LIVE_BOUND_CASES = """
SELECT c.id, c.bindings
FROM cases c CROSS JOIN bindings b
WHERE c.status IN ('open', 'mitigated')
  AND b.case_id = c.id AND b.backend = :backend AND b.part = 'id'
UNION ALL
SELECT c.id, c.bindings
FROM cases c CROSS JOIN bindings b
WHERE c.status = 'resolved' AND c.resolved_at >= :since
  AND b.case_id = c.id AND b.backend = :backend AND b.part = 'id'
ORDER BY 1 DESC"""

# find_case: cases one of whose threads, on any backend, is named :ref or :bare (the ref without a
# trailing slash): an issue URL, an incident id or number, a Jira key. Live first, then newest.
CASES_BY_THREAD = f"""
SELECT {CASE_COLS} FROM cases
WHERE id IN (SELECT case_id FROM bindings WHERE value IN (:ref, :bare))
ORDER BY status = 'resolved', id DESC
LIMIT :limit"""

# find_case: cases with a label whose value is :ref (`pagerduty.incident = PXYZ123`, set before any
# backend bound the case).
CASES_BY_LABEL = f"""
SELECT {CASE_COLS} FROM cases
WHERE id IN (SELECT case_id FROM case_labels WHERE value = :ref)
ORDER BY status = 'resolved', id DESC
LIMIT :limit"""

# find_case: cases opened with fingerprint :ref, resolved ones included (the open one, if any, is
# `find_open_case`'s).
CASES_BY_FINGERPRINT = f"""
SELECT {CASE_COLS} FROM cases
WHERE fingerprint = :ref
ORDER BY status = 'resolved', id DESC
LIMIT :limit"""

# find_case: cases whose id starts with a prefix, as the range [:low, :high) of the primary key (ids are
# ULIDs, upper-case Crockford base32, so the range holds exactly the ids with that prefix).
CASES_BY_ID_PREFIX = f"""
SELECT {CASE_COLS} FROM cases
WHERE id >= :low AND id < :high
ORDER BY id DESC
LIMIT :limit"""

# What can be the start of a case id (or the whole id, typed in lower case): 4 to 26 Crockford base32
# characters.
_ID_PREFIX = re.compile(r"[0-9A-HJKMNP-TV-Z]{4,26}")


def _scalar(value: Any) -> str | None:
    """A JSON scalar as the index holds it (the same text the migration's backfill writes); None for
    anything that does not name a thread (null, booleans, objects, empty or over-long strings)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    text = str(value)
    return text if 0 < len(text) <= MAX_INDEXED_CHARS else None


def binding_rows(case_id: str, backend: str, thread: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The index rows of one bound thread: one per part in `THREAD_PARTS` that it has."""
    scope = next((str(thread[k]) for k in SCOPE_PARTS if isinstance(thread.get(k), str)), "")
    rows = []
    for part in THREAD_PARTS:
        value = _scalar(thread.get(part))
        if value is not None:
            rows.append({"case_id": case_id, "backend": backend, "part": part, "value": value, "scope": scope})
    return rows


def index_binding(c: Conn, case_id: str, backend: str, thread: Mapping[str, Any]) -> None:
    """Re-index `case_id`'s thread on `backend`, in the caller's transaction (`set_binding`'s)."""
    c.execute(FORGET_BINDING, {"case_id": case_id, "backend": backend})
    rows = binding_rows(case_id, backend, thread)
    if rows:
        c.executemany(INDEX_BINDING, rows)


def index_labels(c: Conn, case_id: str, labels: Mapping[str, Any]) -> None:
    """Index a new case's labels, in the caller's transaction (`open_case`'s)."""
    rows = [{"case_id": case_id, "name": name, "value": value} for name, raw in labels.items()
            if (value := _scalar(raw)) is not None]  # fmt: skip
    if rows:
        c.executemany(INDEX_LABEL, rows)


def id_prefix_range(ref: str) -> tuple[str, str] | None:
    """[low, high) holding every case id that starts with `ref`; None when `ref` cannot start one."""
    prefix = ref.upper()
    if not _ID_PREFIX.fullmatch(prefix):
        return None
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


class BindingsSQL(SQLBase):
    """Lookups through the bindings index (see the module docstring); the writes are `index_binding`
    and `index_labels`, called inside `set_binding` and `open_case`."""

    def _case(self, r: Sequence[Any]) -> CaseRecord:  # JournalSQL's, earlier in SQLStore's bases
        raise NotImplementedError

    def case_of_thread(self, backend: str, key: str, scope: str | None = None, home: str | None = None) -> str | None:
        """The case bound to `backend`'s thread named `key` (an issue number, incident id, Jira key,
        ServiceNow sys_id or number, Slack ts, Matrix event id); None when no case is bound to it.

        `scope` is where the event says the thread lives (a GitHub repo, a Slack channel). An issue number
        names a thread only within its repo: an organisation webhook delivers issue #7 of every repo, and
        only a binding in the same scope (compared case-insensitively, as GitHub does) is that thread.
        None: the event names no scope, and any binding matches.

        `home` is where the backend itself takes a binding that recorded no scope to live (its configured
        repo / channel: `GitHubBackend._repo_of` falls back to it). Such a binding matches only an event
        from there; with no `home` known it matches any scope."""
        key = self._clean(str(key)) or str(key)  # stored redacted, so looked up redacted
        params: dict[str, Any] = {"key": key, "backend": backend}
        where = ""
        if scope is not None:
            params["scope"] = (self._clean(scope) or scope).lower()  # as SQL's lower(): ASCII names alike
            unscoped = home is None or (self._clean(home) or home).lower() == params["scope"]
            where = IN_SCOPE_OR_UNSCOPED if unscoped else IN_SCOPE
        rows = self._q(CASE_OF_THREAD.format(scope=where), params)
        return str(rows[0][0]) if rows else None

    def live_bindings(self, backend: str, resolved_since: datetime) -> list[tuple[str, dict[str, Any]]]:
        """(case id, thread) of every case bound to `backend` that is open, mitigated, or was resolved
        at or after `resolved_since`, newest case first: what one poll round reads back."""
        rows = self._q(LIVE_BOUND_CASES, {"backend": backend, "since": format_ts(resolved_since)})
        return [(str(r[0]), dict(_json(r[1]).get(backend) or {})) for r in rows]

    def cases_matching(self, ref: str, limit: int = 10) -> list[tuple[str, CaseRecord]]:
        """(how, case) for every case `ref` names other than by its full id or an open case's
        fingerprint: a thread's id / number / key / URL on any backend, a label value, the fingerprint of
        a resolved case, an id prefix. At most `limit` cases per kind, live ones first, each case once."""
        ref = self._clean(ref) or ref
        params = {"ref": ref, "bare": ref.rstrip("/") or ref, "limit": limit}
        found: dict[str, tuple[str, CaseRecord]] = {}
        lookups = [("thread", CASES_BY_THREAD, params), ("label", CASES_BY_LABEL, params),
                   ("fingerprint", CASES_BY_FINGERPRINT, params)]  # fmt: skip
        span = id_prefix_range(ref)
        if span is not None:
            lookups.append(("id prefix", CASES_BY_ID_PREFIX, {"low": span[0], "high": span[1], "limit": limit}))
        for how, sql, values in lookups:
            for r in self._q(sql, values):
                rec = self._case(r)
                found.setdefault(rec.id, (how, rec))
        return list(found.values())
