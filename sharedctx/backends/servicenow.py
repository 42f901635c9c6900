"""ServiceNow (Table API): a case is an `incident` record; each entry one journal entry in `work_notes`
(or `comments`, configurable), several numbered entries when long; read back from `sys_journal_field`.

Binding, in order: `case.bindings[<name>]`; `case.labels["servicenow.incident"]` (a sys_id or an incident
number like `INC0010001`); an incident whose `correlation_id` is the case id (so `bind` is safe to repeat
after an ambiguous create); otherwise a new incident with `correlation_id` = case id.

ServiceNow documents no per-entry journal limit for the Table API; journal fields default to a 4,000
character dictionary length on many instances, so parts are kept to `max_journal_chars` (default 4,000).
Reading `sys_journal_field` needs a role that may read it (e.g. `itil` plus an ACL on that table).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..config import BackendSettings
from ..errors import Rejected
from ..model import Author, CaseRecord, Entry, ExternalRef, format_ts, parse_ts
from ..render import (
    RESOLVED_MARK,
    CopyPart,
    TimeCursor,
    assemble,
    human_markdown,
    is_own_echo,
    parse_plain,
    plain_part,
    render_parts,
)
from .base import Check, Hit, HumanItem, ReadBack, ThreadRef
from .http import call, new_client, secret
from .setup_check import Stop, fetch, json_body, run, says

SERVICE = "ServiceNow"
AUTH_HINT = ("Check the user/password or OAuth token in the configured environment variables; the user needs "
             "the itil role (incident read/write) and read access to sys_journal_field.")
SYS_ID = re.compile(r"^[0-9a-f]{32}$")
PAGE = 500


class ServiceNowOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    instance_url: str = Field(pattern=r"^https?://", description="e.g. https://acme.service-now.com")
    username: str | None = None
    password: str | None = Field(None, description='basic auth secret reference, e.g. "env:SN_PASSWORD"')
    token: str | None = Field(None, description='OAuth bearer token reference, e.g. "env:SN_TOKEN"')
    journal_field: Literal["work_notes", "comments"] = "work_notes"
    max_journal_chars: int = Field(4_000, ge=1_000, le=1_000_000)
    resolved_state: str = Field("6", description="incident state value for Resolved")
    close_code: str = Field("Solved (Permanently)", description="close_code set on resolve (instance-specific)")
    urgency: str = "2"
    impact: str = "2"
    timeout: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _auth(self) -> ServiceNowOptions:
        if not self.token and not (self.username and self.password):
            # "<key>: ..." lets make_backend name `backends.<name>.<key>`
            missing = "username" if self.password else "password"
            raise ValueError(f"{missing}: set either `token`, or `username` and `password`")
        return self


class ServiceNowBackend:
    """Entries as ServiceNow journal entries, with the machine copy in a trailing marked block."""

    type: ClassVar[str] = "servicenow"
    Options = ServiceNowOptions

    def __init__(self, name: str, options: ServiceNowOptions, *, client: httpx.Client | None = None) -> None:
        self.name = name
        self.options = options
        self._client = client or new_client(options.timeout)
        self._owns_client = client is None
        self._base = options.instance_url.rstrip("/")

    @classmethod
    def from_settings(cls, settings: BackendSettings, *, client: httpx.Client | None = None) -> ServiceNowBackend:
        return cls(settings.name, ServiceNowOptions.model_validate(settings.options), client=client)

    def _call(self, method: str, table: str, sys_id: str = "", *, not_found: str | None = None, **kw: Any) -> Any:
        o = self.options
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if o.token:
            headers["Authorization"] = f"Bearer {secret(o.token, service=SERVICE)}"
        else:
            kw["auth"] = (o.username or "", secret(o.password or "", service=SERVICE))
        url = f"{self._base}/api/now/table/{table}" + (f"/{sys_id}" if sys_id else "")
        data = call(self._client, method, url, service=SERVICE, auth_hint=AUTH_HINT, not_found=not_found,
                    headers=headers, **kw)
        return (data or {}).get("result")

    def _gone(self, thread: ThreadRef) -> str:
        return f"incident {thread.id} no longer exists (deleted, or hidden by an ACL)"

    def _thread(self, rec: dict[str, Any]) -> ThreadRef:
        sid = rec["sys_id"]
        return ThreadRef(backend=self.name, id=sid, number=rec.get("number"),
                         url=f"{self._base}/nav_to.do?uri=incident.do?sys_id={sid}")

    def bind(self, case: CaseRecord) -> ThreadRef:
        bound = case.bindings.get(self.name)
        if bound and bound.get("id"):
            return ThreadRef.model_validate({"backend": self.name, **bound})
        given = case.labels.get("servicenow.incident")
        if given:
            msg = f"incident {given} given for case {case.id} does not exist"
            if SYS_ID.match(given):
                return self._thread(self._call("GET", "incident", given, not_found=msg))
            found = self._call("GET", "incident", params={"sysparm_query": f"number={_q(given)}", "sysparm_limit": 1})
            if not found:
                raise Rejected(f"{SERVICE}: {msg}")
            return self._thread(found[0])
        found = self._call("GET", "incident", params={"sysparm_query": f"correlation_id={_q(case.id)}",
                                                      "sysparm_limit": 1})
        if found:
            return self._thread(found[0])
        rec = self._call("POST", "incident", json={
            "short_description": f"[{case.severity}] {case.title}"[:160], "correlation_id": case.id,
            "description": f"sharedctx case {case.id} ({case.service or 'no service'}). Agents and people append "
                           "work notes to this incident.",
            "urgency": self.options.urgency, "impact": self.options.impact})
        return self._thread(rec)

    def render(self, entry: Entry) -> list[str]:
        return render_parts(entry, human_markdown(entry, plain=True), self.options.max_journal_chars, plain_part, len)

    def _journal(self, thread: ThreadRef, extra: str = "", *, humans_too: bool = False) -> list[dict[str, Any]]:
        element = f"element={self.options.journal_field}"
        if humans_too:
            element = "element=work_notes^ORelement=comments"
        query = f"element_id={thread.id}^{element}{extra}^ORDERBYsys_created_on"
        out: list[dict[str, Any]] = []
        while True:
            batch = self._call("GET", "sys_journal_field", params={
                "sysparm_query": query, "sysparm_limit": PAGE, "sysparm_offset": len(out),
                "sysparm_fields": "sys_id,element,element_id,name,value,sys_created_on,sys_created_by"}) or []
            out += batch
            if len(batch) < PAGE:
                return out

    def _parts(self, thread: ThreadRef, entry_id: str) -> dict[int, CopyPart]:
        found: dict[int, CopyPart] = {}
        for row in self._journal(thread, f"^valueLIKEsharedctx:entry:{entry_id}"):
            p = parse_plain(row.get("value") or "")
            if p and p[0] == entry_id:
                found.setdefault(p[1], CopyPart(*p, external_id=row["sys_id"], url=thread.url))
        return found

    def append(self, thread: ThreadRef, entry: Entry) -> ExternalRef:
        parts = self.render(entry)
        have = self._parts(thread, entry.id) if len(parts) > 1 else {}
        for k, text in enumerate(parts, 1):
            if k not in have:
                self._call("PATCH", "incident", thread.id, json={self.options.journal_field: text},
                           params={"sysparm_fields": "sys_id"}, not_found=self._gone(thread))
        # The PATCH answers with the incident, not the journal row; the entry's own id is its stable address.
        return ExternalRef(backend=self.name, id=f"{thread.id}:{entry.id}", url=thread.url, parts=len(parts))

    def lookup(self, thread: ThreadRef, entry_id: str) -> ExternalRef | None:
        found = self._parts(thread, entry_id)
        if not found or len(found) != next(iter(found.values())).total:
            return None
        return ExternalRef(backend=self.name, id=f"{thread.id}:{entry_id}", url=thread.url,
                           parts=[found[k].external_id for k in sorted(found)])

    def read_back(self, thread: ThreadRef, since: str | None = None) -> ReadBack:
        cursor = TimeCursor(since)
        parts: list[CopyPart] = []
        fresh: set[str] = set()
        humans: list[HumanItem] = []
        for row in self._journal(thread, humans_too=True):
            value, rid = row.get("value") or "", row["sys_id"]
            at = format_ts(parse_ts(_utc_text(row["sys_created_on"])))
            new = cursor.is_new(at, rid)
            p = parse_plain(value)
            if p:
                parts.append(CopyPart(*p, external_id=rid, url=thread.url, position=at))
                if new:
                    fresh.add(p[0])
            elif new and not is_own_echo(value):
                humans.append(HumanItem(backend=self.name, external_id=rid, at=at, text=value, url=thread.url,
                                        kind="comment" if row.get("element") == "comments" else "work_note",
                                        author=Author(kind="human", name=row.get("sys_created_by") or "unknown")))
        got = assemble(parts)
        return ReadBack(entries=[e for e in got.entries if e.id in fresh], humans=humans,
                        cursor=cursor.next() or since)

    def search(self, text: str, limit: int = 20) -> list[Hit]:
        t = _q(text)
        rows = self._call("GET", "incident", params={
            "sysparm_query": f"correlation_idISNOTEMPTY^short_descriptionLIKE{t}^ORdescriptionLIKE{t}",
            "sysparm_limit": max(1, min(limit, 100)),
            "sysparm_fields": "sys_id,number,short_description,description,correlation_id"}) or []
        return [Hit(backend=self.name, case_id=r.get("correlation_id") or None, thread_id=r["sys_id"],
                    title=r.get("short_description", ""), snippet=(r.get("description") or "")[:200],
                    url=self._thread(r).url) for r in rows[:limit]]

    def resolve(self, thread: ThreadRef, summary: Entry) -> None:
        rec = self._call("GET", "incident", thread.id, not_found=self._gone(thread),
                         params={"sysparm_fields": "sys_id,state"})
        if rec.get("state") in (self.options.resolved_state, "7", "8"):  # resolved, closed, canceled
            return
        self._call("PATCH", "incident", thread.id, not_found=self._gone(thread), json={
            "state": self.options.resolved_state, "close_code": self.options.close_code,
            "close_notes": f"{summary.title} (sharedctx entry {summary.id}) [{RESOLVED_MARK}:{summary.id}]"})

    # ---- Checkable (`sharedctx backends check`) ------------------------------------------------------
    def check(self) -> list[Check]:
        """Credentials, incident table, journal read-back, the resolved state and close code. Reads only.

        ServiceNow refuses a whole table with 403 but hides single rows or fields an ACL forbids (an empty
        answer, not an error): these checks catch the first; the second shows as entries never read back."""
        return run(self._check_steps)

    def _check_get(self, url: str, **kw: Any) -> httpx.Response:
        o = self.options
        kw["headers"] = {"Accept": "application/json"}
        if o.token:
            kw["headers"]["Authorization"] = f"Bearer {secret(o.token, service=SERVICE)}"
        else:
            kw["auth"] = (o.username or "", secret(o.password or "", service=SERVICE))
        return self._client.get(url, **kw)

    def _table(self, table: str, what: str, query: str, fields: str, limit: int = 1) -> httpx.Response:
        return fetch(self._check_get, f"{self._base}/api/now/table/{table}", what, params={
            "sysparm_query": query, "sysparm_fields": fields, "sysparm_limit": limit})

    def _check_steps(self, out: list[Check]) -> None:
        o = self.options
        who = f"the token in {o.token}" if o.token else f"user {o.username} with the password in {o.password}"
        inc = self._table("incident", "credentials", "ORDERBYDESCsys_created_on", "sys_id")
        if inc.status_code == 401:
            raise Stop(Check(what="credentials", ok=False, detail=(
                f"ServiceNow refused {who} {says(inc)}: check the user name and the secret, and that the user is "
                "active and not locked out")))
        if inc.status_code not in (200, 403):
            raise Stop(Check(what="credentials", ok=False, detail=f"GET /api/now/table/incident failed {says(inc)}"))
        out.append(Check(what="credentials", ok=True, detail=f"ServiceNow accepts {who}"))
        if inc.status_code == 403:
            raise Stop(Check(what="incident table", ok=False, detail=(
                f"{who} may not read the incident table {says(inc)}: give the user the itil role (or "
                "sn_incident_read and sn_incident_write)")))
        json_body(inc, "incident table")
        out.append(Check(what="incident table", ok=True, detail="may read incidents"))
        jf = o.journal_field
        journal = self._table("sys_journal_field", "journal", f"name=incident^element={jf}", "sys_id")
        if journal.status_code == 200:
            json_body(journal, "journal")  # a proxy's page with 200 is no proof
        out.append(Check(what="journal", ok=journal.status_code == 200, detail=(
            f"may read {jf} entries back from sys_journal_field" if journal.status_code == 200 else
            f"may not read sys_journal_field {says(journal)}: sharedctx could write {jf} but never read them back "
            "(no human replies, no check for a duplicate after a timeout). Grant read on sys_journal_field to a "
            "role the user has")))
        out.append(self._check_choice("state", o.resolved_state, "resolved_state"))
        out.append(self._check_choice("close_code", o.close_code, "close_code"))

    def _check_choice(self, element: str, want: str, setting: str) -> Check:
        """`resolved_state` and `close_code` are instance choices: a wrong one fails every resolve (data policy)."""
        what = "resolved state" if element == "state" else "close code"
        resp = self._table("sys_choice", what, f"name=incident^element={element}^inactive=false", "value,label", 200)
        if resp.status_code != 200:
            return Check(what=what, ok=False, detail=f"could not read the incident {element} choices (sys_choice) "
                         f"{says(resp)}, so {setting} = {want!r} is unchecked")
        choices = {str(r.get("value")): str(r.get("label")) for r in json_body(resp, what).get("result") or []}
        if want in choices:
            return Check(what=what, ok=True, detail=f"{setting} = {want!r} ({choices[want]})")
        listed = ", ".join(f"{v!r}={lb}" if v != lb else repr(v) for v, lb in list(choices.items())[:15]) or "none"
        return Check(what=what, ok=False, detail=(
            f"{setting} = {want!r} is not an incident {element} choice on this instance, so every resolve would be "
            f"refused or ignored. Choices: {listed}. Set {setting}"))

    def close(self) -> None:
        if self._owns_client:
            self._client.close()


def _q(value: str) -> str:
    """Keep user text from changing an encoded query: `^` separates terms, newlines end them."""
    return " ".join(value.replace("^", " ").split())


def _utc_text(value: str) -> str:
    """ServiceNow returns `YYYY-MM-DD HH:MM:SS` in UTC (sysparm_display_value=false): make that explicit."""
    value = value.strip().replace(" ", "T")
    return value if value.endswith("Z") or "+" in value[10:] else value + "Z"
