"""`sharedctx backends check` for Redmine: what a wrong setting would otherwise do silently.

Redmine quietly substitutes or ignores what it does not like (an unknown tracker becomes the default one,
a filter on an unknown custom field is dropped and every issue is listed, a status the workflow refuses is
ignored with 204), so each check looks for exactly that and says which setting to change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from ...errors import BackendError
from ..base import Check

if TYPE_CHECKING:
    from .backend import RedmineBackend


def run_checks(b: RedmineBackend) -> list[Check]:
    """Credentials, project (and tracker), closed status, External ID field; stops after bad credentials."""
    me, out = _probe("credentials", lambda: b._call("GET", "/users/current.json")["user"])
    if me is None:
        return out
    out.append(Check(what="credentials", ok=True, detail=f"API key of {me.get('login')} (id {me.get('id')})"))
    out += _project(b) + _closed_status(b)
    if b.options.private_notes:
        out += _private_notes(b, me)
    if b.options.external_id_field is not None:
        out += _external_id_field(b)
    return out


def _probe(what: str, fn: Callable[[], Any]) -> tuple[Any, list[Check]]:
    """(result, []) or (None, [the failed Check saying why]): `check()` never raises."""
    try:
        return fn(), []
    except (BackendError, httpx.HTTPError, KeyError, TypeError) as exc:
        detail = str(exc) if isinstance(exc, BackendError) else f"{type(exc).__name__}: {exc}"
        return None, [Check(what=what, ok=False, detail=detail)]


def _project(b: RedmineBackend) -> list[Check]:
    o = b.options
    proj, failed = _probe("project", lambda: b._call("GET", f"/projects/{o.project}.json", params={
        "include": "trackers"}, not_found=b._no_project())["project"])
    if proj is None:
        return failed
    out = [Check(what="project", ok=True, detail=f"{proj.get('name')} (id {proj.get('id')})")]
    trackers = {int(t["id"]): str(t.get("name")) for t in proj.get("trackers") or []}
    if o.tracker_id in trackers:
        out.append(Check(what="tracker", ok=True, detail=f"tracker {o.tracker_id} = {trackers[o.tracker_id]}"))
    elif o.tracker_id is not None:
        enabled = ", ".join(f"{i}={n}" for i, n in trackers.items()) or "none"
        out.append(Check(what="tracker", ok=False, detail=f"tracker {o.tracker_id} is not enabled in the project "
                         f"(Redmine would silently use its default); enabled: {enabled} (set tracker_id)"))
    return out


def _closed_status(b: RedmineBackend) -> list[Check]:
    want = b.options.closed_status_id
    got, failed = _probe("closed status", lambda: b._call("GET", "/issue_statuses.json")["issue_statuses"])
    if got is None:
        return failed
    statuses = {int(s["id"]): s for s in got}
    if (statuses.get(want) or {}).get("is_closed"):
        return [Check(what="closed status", ok=True, detail=f"status {want} = {statuses[want].get('name')}")]
    closed = ", ".join(f"{i}={s.get('name')}" for i, s in statuses.items() if s.get("is_closed")) or "none"
    return [Check(what="closed status", ok=False, detail=f"status {want} is not a closed status; closed statuses: "
                  f"{closed} (set closed_status_id)")]


def _external_id_field(b: RedmineBackend) -> list[Check]:
    """Filter on a value no issue has: anything listed means Redmine dropped the filter (unknown field)."""
    field, what = b.options.external_id_field, "external id field"
    probe, failed = _probe(what, lambda: b._list_issues({"limit": 1, f"cf_{field}": "sharedctx-check-none"}))
    if probe is None:
        return failed
    if int(probe.get("total_count") or 0) > 0:
        return [Check(what=what, ok=False, detail=f"custom field {field} is not an issue field this project can "
                      "filter on (Redmine ignored the filter); make it a filterable issue custom field for the "
                      "project's trackers, or unset external_id_field")]
    return [Check(what=what, ok=True, detail=f"custom field {field} filters issues of the project")]


def _private_notes(b: RedmineBackend, me: dict[str, Any]) -> list[Check]:
    """Without "Set notes as private", Redmine stores a note asked to be private as a public one."""
    what = "private notes"
    if me.get("admin"):
        return [Check(what=what, ok=True, detail=f"{me.get('login')} is an administrator")]
    got, failed = _probe(what, lambda: (
        b._call("GET", f"/projects/{b.options.project}.json", not_found=b._no_project())["project"]["id"],
        b._call("GET", "/users/current.json", params={"include": "memberships"})["user"].get("memberships") or []))
    if got is None:
        return failed
    project_id, memberships = got
    roles = [r for m in memberships if (m.get("project") or {}).get("id") == project_id for r in m.get("roles") or []]
    for role in roles:
        def permissions(role_id: Any = role.get("id")) -> Any:
            return b._call("GET", f"/roles/{role_id}.json")["role"]["permissions"]

        perms, failed = _probe(what, permissions)
        if perms is None:
            return failed
        if "set_notes_private" in perms:
            return [Check(what=what, ok=True, detail=f"role {role.get('name')} may set notes private")]
    held = ", ".join(str(r.get("name")) for r in roles) or "none (not a member)"
    return [Check(what=what, ok=False, detail=f"{me.get('login')}'s roles in the project ({held}) lack 'Set notes "
                  "as private': Redmine would store every note public. Grant it, or set private_notes = false")]
