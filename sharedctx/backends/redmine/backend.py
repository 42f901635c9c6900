"""Redmine (5.x REST): a case is an issue in a configured project; each entry one note (journal), several
numbered notes when long; resolving sets a configured closed status.

Notes are rendered in the server's text formatting (`text_format`: Redmine's default Textile, or
Markdown). The machine copy sits at the end of each note in a `{{collapse(sharedctx:entry:<id> part k/n)}}`
macro, which Redmine shows folded in both formats, so people see the text and the copy stays out of the way.

Binding, in order: `case.bindings[<name>]`; `case.labels["redmine.issue"]` (an issue number or URL); an
issue of the project whose External ID custom field (`external_id_field`) is the case id, or, without that
field, whose description carries `sharedctx:case:<id>` (so `bind` is safe to repeat after an ambiguous
create); otherwise a new issue.

Redmine's quirks, and how each is met here (see trackers/redmine/NOTES.md):
- a note write answers 204 with no journal id, and a write Redmine will not apply (no "Add notes"
  permission, or no `Content-Type: application/json`) is *also* a 204: every `append` reads the journals
  back after writing, takes the ids from there, and refuses (`Rejected`) a write that did not land;
- `append` looks for the entry's marker before writing, so it is exactly-once on its own, whatever the
  worker remembers about an earlier ambiguous attempt;
- a status the workflow does not allow is ignored with 204: `resolve` reads the status back and says which
  statuses are allowed when it did not change;
- `/issues.json` lists only open issues unless `status_id=*`, which every listing here passes;
- no webhooks in Redmine 5: people's notes are read back by polling (`read_back`, cursor = the last journal
  id, which Redmine assigns in increasing order); a project-wide `updated_on>=` scan (`scan.py`) lets
  quiet issues skip the read.

Package layout: `backend.py` the connector, `text.py` how a note reads (Textile / Markdown + the copy),
`scan.py` the `updated_on` change scan, `check.py` `sharedctx backends check`.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any, ClassVar, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from ...config import BackendSettings
from ...errors import Ambiguous, Rejected, Retryable
from ...model import Author, CaseRecord, Entry, ExternalRef, format_ts, parse_ts
from ...render import (
    CASE_MARK,
    RESOLVED_MARK,
    CopyPart,
    assemble,
    human_markdown,
    is_own_echo,
    parse_text,
    render_parts,
)
from ..base import Check, Hit, HumanItem, ReadBack, ThreadRef
from ..http import call, new_client, secret
from .check import run_checks
from .scan import ChangeScan
from .text import COPY, note_part

SERVICE = "Redmine"
AUTH_HINT = ("Check the API key (token) in the configured environment variable (My account → API access key; "
             "the REST API must be on in Administration → Settings → API) and that its user may view and add "
             "issues and add notes in the project.")
ISSUE_URL = re.compile(r"/issues/(\d+)/?(?:#.*)?$")


class RedmineOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(pattern=r"^https?://", description="e.g. https://redmine.example.com")
    api_key: str = Field(description='secret reference, e.g. "env:REDMINE_API_KEY"')
    project: str = Field(min_length=1, description="project identifier (or numeric id)")
    tracker_id: int | None = Field(None, description="tracker of new issues; None: the project's default")
    priority_id: int | None = Field(None, description="priority of new issues; None: the default priority")
    external_id_field: int | None = Field(None, description="id of an issue custom field that holds the case id")
    text_format: Literal["textile", "markdown"] = Field("textile", description="the server's text formatting")
    private_notes: bool = Field(False, description="write entries as private notes")
    closed_status_id: int = Field(5, description="status set on resolve (Redmine's default Closed is 5)")
    deciders: list[str] = Field(default_factory=list, description="Redmine logins or user ids who may decide "
                                "(/approve, /reject, /override); empty: only [humans.allow] decides")
    max_note_chars: int = Field(30_000, ge=2_000, le=1_000_000, description="UTF-8 bytes per note")
    poll_scan_seconds: float = Field(5.0, ge=0, description="reuse one project-wide `updated_on` scan this long "
                                     "to skip reading quiet issues back; 0: read every issue back each poll")
    timeout: float = Field(30.0, gt=0)


class RedmineBackend:
    """Entries as Redmine notes, each carrying its machine copy in a collapsed macro."""

    type: ClassVar[str] = "redmine"
    Options = RedmineOptions

    def __init__(self, name: str, options: RedmineOptions, *, client: httpx.Client | None = None) -> None:
        self.name = name
        self.options = options
        self._client = client or new_client(options.timeout)
        self._owns_client = client is None
        self._site = options.url.rstrip("/")
        self._me: int | None = None
        self._logins: dict[int, str] = {}
        self._statuses: dict[int, tuple[str, bool]] | None = None  # id -> (name, is_closed)
        self._scan = ChangeScan(self._list_issues, options.poll_scan_seconds)

    @classmethod
    def from_settings(cls, settings: BackendSettings, *, client: httpx.Client | None = None) -> RedmineBackend:
        return cls(settings.name, RedmineOptions.model_validate(settings.options), client=client)

    # ---- HTTP -------------------------------------------------------------------------------------
    def _call(self, method: str, path: str, *, not_found: str | None = None, **kw: Any) -> Any:
        # Content-Type on every request: Redmine silently ignores a write without it.
        headers = {"X-Redmine-API-Key": secret(self.options.api_key, service=SERVICE),
                   "Accept": "application/json", "Content-Type": "application/json"}
        return call(self._client, method, self._site + path, service=SERVICE, auth_hint=AUTH_HINT,
                    not_found=not_found, headers=headers, **kw)

    def _gone(self, thread: ThreadRef) -> str:
        return f"issue #{thread.id} no longer exists (deleted, moved, or no longer visible to this user)"

    def _no_project(self) -> str:
        return (f"project {self.options.project!r} does not exist or this user cannot see it "
                "(set `project` to its identifier)")

    def _thread(self, issue_id: Any) -> ThreadRef:
        return ThreadRef(backend=self.name, id=str(issue_id), url=f"{self._site}/issues/{issue_id}")

    def _issue(self, thread: ThreadRef, include: str = "journals") -> dict[str, Any]:
        data = self._call("GET", f"/issues/{thread.id}.json", params={"include": include},
                          not_found=self._gone(thread))
        return dict((data or {}).get("issue") or {})

    def _journals(self, thread: ThreadRef) -> list[dict[str, Any]]:
        return list(self._issue(thread).get("journals") or [])

    def me(self) -> int:
        """The id of the API key's user: its own journals (status changes, resolution) are never a person's."""
        if self._me is None:
            self._me = int(self._call("GET", "/users/current.json")["user"]["id"])
        return self._me

    def _login(self, user_id: int) -> str | None:
        """A user's login (what allow-lists name), cached; None when this key may not see the user."""
        if user_id not in self._logins:
            try:
                user = self._call("GET", f"/users/{user_id}.json")["user"]
            except (Rejected, KeyError, TypeError):
                return None
            self._logins[user_id] = str(user.get("login") or "")
        return self._logins[user_id] or None

    def _status(self, status_id: Any) -> tuple[str, bool]:
        """(name, is_closed) of a status id, from `/issue_statuses.json` (fetched once)."""
        if self._statuses is None:
            data = self._call("GET", "/issue_statuses.json")
            self._statuses = {int(s["id"]): (str(s.get("name")), bool(s.get("is_closed")))
                              for s in data.get("issue_statuses") or []}
        sid = int(status_id) if str(status_id).isdigit() else 0
        return self._statuses.get(sid, (f"status {status_id}", False))

    # ---- Backend ----------------------------------------------------------------------------------
    def bind(self, case: CaseRecord) -> ThreadRef:
        bound = case.bindings.get(self.name)
        if bound and bound.get("id"):
            return ThreadRef.model_validate({"backend": self.name, **bound})
        given = case.labels.get("redmine.issue")
        if given:
            m = ISSUE_URL.search(given)
            number = m.group(1) if m else given.strip().lstrip("#")
            if not number.isdigit():
                raise Rejected(f"label redmine.issue={given!r} is neither an issue number nor an issue URL")
            data = self._call("GET", f"/issues/{number}.json",
                              not_found=f"issue #{number} given for case {case.id} does not exist")
            return self._thread(data["issue"]["id"])
        mark = f"{CASE_MARK}:{case.id}"
        o = self.options
        query: dict[str, Any] = {"limit": 25}
        if o.external_id_field:
            query[f"cf_{o.external_id_field}"] = case.id
        else:
            query["description"] = f"~{mark}"
        for issue in self._list_issues(query).get("issues") or []:
            # Redmine ignores a filter on a field it does not know and lists everything: check the value.
            values = {str(f.get("value")) for f in issue.get("custom_fields") or []
                      if f.get("id") == o.external_id_field}
            if mark in (issue.get("description") or "") or case.id in values:
                return self._thread(issue["id"])
        fields: dict[str, Any] = {
            "project_id": o.project, "subject": f"[{case.severity}] {case.title}"[:255],
            "description": (f"Incident case {case.id} ({case.severity}, {case.service or 'no service'}), opened "
                            f"by sharedctx. Agents and people add notes to this issue.\n\n{mark}"),
        }
        if o.tracker_id:
            fields["tracker_id"] = o.tracker_id
        if o.priority_id:
            fields["priority_id"] = o.priority_id
        if o.external_id_field:
            fields["custom_fields"] = [{"id": o.external_id_field, "value": case.id}]
        created = self._call("POST", "/issues.json", json={"issue": fields})
        return self._thread(created["issue"]["id"])

    def render(self, entry: Entry) -> list[str]:
        fmt = self.options.text_format

        def part(e: Entry, k: int, n: int, human: str, data: str) -> str:
            return note_part(e, k, n, human, data, fmt)

        return render_parts(entry, human_markdown(entry), self.options.max_note_chars, part,
                            lambda s: len(s.encode("utf-8")))

    def _url(self, thread: ThreadRef, journal_id: Any) -> str:
        return f"{self._site}/issues/{thread.id}#change-{journal_id}"

    def _parts(self, thread: ThreadRef, entry_id: str,
               journals: list[dict[str, Any]] | None = None) -> dict[int, CopyPart]:
        found: dict[int, CopyPart] = {}
        for j in self._journals(thread) if journals is None else journals:
            p = parse_text(j.get("notes") or "", COPY)
            if p and p[0] == entry_id:
                found.setdefault(p[1], CopyPart(*p, external_id=str(j["id"]), url=self._url(thread, j["id"])))
        return found

    def _ref(self, thread: ThreadRef, found: dict[int, CopyPart]) -> ExternalRef:
        ids = [found[k].external_id for k in sorted(found)]
        return ExternalRef(backend=self.name, id=ids[0], url=self._url(thread, ids[0]), parts=ids)

    def append(self, thread: ThreadRef, entry: Entry) -> ExternalRef:
        parts = self.render(entry)
        have = self._parts(thread, entry.id)  # exactly-once on its own: never write a part that is there
        for k, body in enumerate(parts, 1):
            if k not in have:
                self._call("PUT", f"/issues/{thread.id}.json", not_found=self._gone(thread),
                            json={"issue": {"notes": body, "private_notes": self.options.private_notes}})
        try:
            landed = self._parts(thread, entry.id)
        except Retryable as exc:  # the notes were written: the next attempt must reconcile, not re-send
            raise Ambiguous(f"{SERVICE}: wrote entry {entry.id} to #{thread.id} but could not read it back "
                            f"({exc}); reconcile before re-sending") from exc
        missing = sorted(set(range(1, len(parts) + 1)) - set(landed))
        if missing:
            raise Rejected(f"{SERVICE} answered 204 to the note(s) of entry {entry.id} on #{thread.id} but did not "
                           f"store part(s) {missing}: the API key's user probably lacks the 'Add notes' (or "
                           "'Set notes as private') permission in the project")
        return self._ref(thread, landed)

    def lookup(self, thread: ThreadRef, entry_id: str) -> ExternalRef | None:
        found = self._parts(thread, entry_id)
        if not found or len(found) != next(iter(found.values())).total:
            return None  # none, or only some parts: `append` sends the missing ones
        return self._ref(thread, found)

    def read_back(self, thread: ThreadRef, since: str | None = None) -> ReadBack:
        after = int(since) if since and since.isdigit() else 0
        if since is not None and self._scan.quiet(thread.id):
            return ReadBack(cursor=since)
        read_at = time.time()
        issue = self._issue(thread)
        self._scan.note_read(thread.id, str(issue.get("updated_on")), read_at)
        parts: list[CopyPart] = []
        humans: list[HumanItem] = []
        last = after
        for j in issue.get("journals") or []:
            jid, notes = int(j["id"]), j.get("notes") or ""
            last = max(last, jid)
            if is_own_echo(notes):  # ends with our copy or our resolution marker: never a person's
                if p := parse_text(notes, COPY):
                    parts.append(CopyPart(*p, external_id=str(jid), url=self._url(thread, jid), position=jid))
            elif jid > after:
                humans += self._human(thread, j)
        got = assemble(parts)
        entries = [e for e in got.entries if max(int(p.external_id) for p in got.refs[e.id]) > after]
        return ReadBack(entries=entries, humans=humans, cursor=str(last))  # "0": read, nothing in it yet

    def _human(self, thread: ThreadRef, journal: dict[str, Any]) -> list[HumanItem]:
        """A person's note and/or status change (closing it resolves the case; any other move is a note).
        Our own user's journals never are (the resolve status change, and a private note's split-off
        field change, carry no marker)."""
        user = journal.get("user") or {}
        uid = int(user.get("id") or 0)
        notes = journal.get("notes") or ""
        if uid == self.me():
            return []
        login = self._login(uid) if uid else None
        who = Author(kind="human", name=(login or user.get("name") or f"user {uid}")[:200])
        jid, at, url = journal["id"], format_ts(parse_ts(journal["created_on"])), self._url(thread, journal["id"])
        raw = {"user_id": str(uid), "login": login, "name": user.get("name"), "private": journal.get("private_notes")}
        out = []
        if notes.strip():
            out.append(HumanItem(backend=self.name, external_id=f"journal:{jid}", author=who, at=at, text=notes,
                                 url=url, raw=raw))
        for d in journal.get("details") or []:
            if d.get("property") != "attr" or d.get("name") != "status_id":
                continue
            (new, closed), (old, _) = self._status(d.get("new_value")), self._status(d.get("old_value"))
            if closed:  # a person closed it: a human resolution
                out.append(HumanItem(backend=self.name, external_id=f"status:{jid}", kind="status", text="closed",
                                     author=who, at=at, url=url, raw={**raw, "status_id": d.get("new_value")}))
            else:  # any other move (In Progress, Feedback, a reopen) is recorded as what it is, a note
                out.append(HumanItem(backend=self.name, external_id=f"status:{jid}", author=who, at=at, url=url,
                                     text=f"set the status to {new} (was {old})",
                                     raw={**raw, "status_id": d.get("new_value")}))
        return out

    def changed_since(self, since: datetime, *, seen: set[tuple[str, str]] | None = None) -> dict[str, str]:
        """{issue id: updated_on} of the project's issues updated at or after `since` (see `ChangeScan`)."""
        return self._scan.changed_since(since, seen=seen)

    def _list_issues(self, params: dict[str, Any]) -> dict[str, Any]:
        query = {"project_id": self.options.project, "status_id": "*", **params}  # status_id=*: closed ones too
        return dict(self._call("GET", "/issues.json", params=query, not_found=self._no_project()) or {})

    def search(self, text: str, limit: int = 20) -> list[Hit]:
        data = self._call("GET", f"/projects/{self.options.project}/search.json",
                          params={"q": text, "issues": 1, "limit": max(1, min(limit, 100))}) or {}
        hits = []
        for r in (data.get("results") or [])[:limit]:
            if not str(r.get("type", "")).startswith("issue"):
                continue
            m = re.search(rf"{CASE_MARK}:(\S+)", r.get("description") or "")
            hits.append(Hit(backend=self.name, case_id=m.group(1) if m else None, thread_id=str(r["id"]),
                            title=r.get("title", ""), snippet=(r.get("description") or "")[:200], url=r.get("url")))
        return hits

    def resolve(self, thread: ThreadRef, summary: Entry) -> None:
        issue = self._issue(thread)
        if (issue.get("status") or {}).get("is_closed"):
            return
        want = self.options.closed_status_id
        change: dict[str, Any] = {"status_id": want}
        mark = f"{RESOLVED_MARK}:{summary.id}"
        if not any(mark in (j.get("notes") or "") for j in issue.get("journals") or []):
            change["notes"] = f"Resolved — {summary.title} (sharedctx entry {summary.id}) [{mark}]"
            change["private_notes"] = self.options.private_notes
        self._call("PUT", f"/issues/{thread.id}.json", json={"issue": change}, not_found=self._gone(thread))
        after = self._issue(thread, include="allowed_statuses")
        status = after.get("status") or {}
        if int(status.get("id") or 0) != want and not status.get("is_closed"):
            allowed = ", ".join(f"{s.get('id')}={s.get('name')}" for s in after.get("allowed_statuses") or [])
            raise Rejected(f"{SERVICE} ignored status {want} on #{thread.id} (still {status.get('name')!r}): the "
                           f"workflow does not allow it for this tracker and role. Allowed: {allowed or 'none'}; "
                           "set closed_status_id")

    # ---- Authorizes / Checkable ----------------------------------------------------------------------
    def authorize(self, item: HumanItem) -> tuple[bool, str] | None:
        """Deciders named by login or user id in `deciders`; None (no opinion) when the list is empty."""
        allow = {d.strip().lower() for d in self.options.deciders if d.strip()}
        if not allow:
            return None
        who = {str(item.raw.get(k) or "").lower() for k in ("login", "user_id")} - {"", "none"}
        hit = sorted(who & allow)
        if hit:
            return True, f"redmine:deciders ({hit[0]})"
        return False, f"redmine:deciders ({item.author.name} is not on it)"

    def check(self) -> list[Check]:
        """Credentials, project (and tracker), closed status, External ID field (see `check.py`)."""
        return run_checks(self)

    def close(self) -> None:
        if self._owns_client:
            self._client.close()
