"""PagerDuty: a case is an incident (given by the alert, found by `incident_key`, or created); each entry
one incident note, or several numbered notes when long.

Binding, in order: `case.bindings[<name>]`; `case.labels["pagerduty.incident"]` (an incident id such as
`PABC123`, e.g. from the alert); an incident whose `incident_key` is the case id (so `bind` is safe to
repeat after an ambiguous create); otherwise a new incident on `service_id` with `incident_key` = case id.

Every request carries `From` (a user's email): PagerDuty requires it on writes with an account-level token.
Note size: PagerDuty documents no note length limit in its API description (only "2000 notes per
incident"), so parts are kept to a conservative `max_note_chars` (24,000). PagerDuty has no text search
over incidents, so `search` returns [] and callers fall back to the local index.

Rate limits: PagerDuty allows 960 REST requests a minute per account API key (per user for user keys),
reads and writes alike, and answers 429 beyond it, with `ratelimit-reset` (seconds) saying how long to
wait. Every request goes through a pacer (`per_minute`, 900 by default for headroom); with a store it is
counted there, one budget per API host and key, shared by every process; a 429 holds that budget.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

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
from .http import budget_key, call, make_pacer, new_client, parse_retry_after, rate_scale, secret
from .setup_check import Stop, fetch, json_body, run, says

if TYPE_CHECKING:
    from ..store.base import RateLimits

SERVICE = "PagerDuty"
AUTH_HINT = ("Check the API key in the configured environment variable (a REST API key, or a scoped OAuth "
             "token with incidents.read and incidents.write) and that `from_email` is a user of the account.")


class PagerDutyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(description='REST API key reference, e.g. "env:PAGERDUTY_TOKEN"')
    from_email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$", description="a user of the account (the From header)")
    base_url: str = Field("https://api.pagerduty.com", description="EU accounts: https://api.eu.pagerduty.com")
    service_id: str | None = Field(None, description="service for incidents sharedctx creates itself")
    urgency: Literal["high", "low"] = "high"
    max_note_chars: int = Field(24_000, ge=2_000, le=65_000)
    per_minute: int = Field(900, ge=1, description="REST requests per minute for this key (PagerDuty allows 960)")
    max_block: float = Field(2.0, ge=0, description="longest pacing wait spent blocking; longer -> Retryable")
    timeout: float = Field(30.0, gt=0)


class PagerDutyBackend:
    """Entries as PagerDuty incident notes, with the machine copy in a trailing marked block."""

    type: ClassVar[str] = "pagerduty"
    Options = PagerDutyOptions
    shares_budgets: ClassVar[bool] = True  # make_backend passes the store as `limits`

    def __init__(self, name: str, options: PagerDutyOptions, *, client: httpx.Client | None = None,
                 limits: RateLimits | None = None) -> None:
        """`limits`: the store that counts the key's budget for every process (None: this process only)."""
        self.name = name
        self.options = options
        self._client = client or new_client(options.timeout)
        self._owns_client = client is None
        self._api = options.base_url.rstrip("/")
        self.pacer = make_pacer([(options.per_minute, 60.0)], store=limits, key=self._budget_key,
                                max_block=options.max_block)
        self._time_scale = rate_scale()  # PagerDuty's waits are in its seconds; the worker's are real ones

    @classmethod
    def from_settings(cls, settings: BackendSettings, *, client: httpx.Client | None = None) -> PagerDutyBackend:
        return cls(settings.name, PagerDutyOptions.model_validate(settings.options), client=client)

    def _budget_key(self) -> str:
        return budget_key("pagerduty", "rest", self._api, secret(self.options.token, service=SERVICE))

    def _rate_limited(self, resp: httpx.Response) -> float | None:
        """A 429: wait `ratelimit-reset` seconds (PagerDuty's header; `Retry-After` if present), else a
        minute, and make every process using this key wait too."""
        if resp.status_code != 429:
            return None
        wait = parse_retry_after(resp.headers.get("retry-after") or resp.headers.get("ratelimit-reset"))
        wait = 60.0 if wait is None else wait
        self.pacer.hold(wait, f"PagerDuty answered 429 to {resp.request.method}")
        return wait / self._time_scale

    def _call(self, method: str, path: str, *, not_found: str | None = None, **kw: Any) -> Any:
        self.pacer.acquire()
        headers = {
            "Authorization": f"Token token={secret(self.options.token, service=SERVICE)}",
            "Accept": "application/vnd.pagerduty+json;version=2",
            "Content-Type": "application/json",
            "From": self.options.from_email,
        }
        return call(self._client, method, self._api + path, service=SERVICE, auth_hint=AUTH_HINT,
                    not_found=not_found, is_rate_limited=self._rate_limited, headers=headers, **kw)

    @staticmethod
    def _gone(thread: ThreadRef) -> str:
        return f"incident {thread.id} no longer exists (deleted or merged into another incident)"

    def _thread(self, inc: dict[str, Any]) -> ThreadRef:
        return ThreadRef(backend=self.name, id=inc["id"], url=inc.get("html_url"))

    def bind(self, case: CaseRecord) -> ThreadRef:
        bound = case.bindings.get(self.name)
        if bound and bound.get("id"):
            return ThreadRef.model_validate({"backend": self.name, **bound})
        given = case.labels.get("pagerduty.incident")
        if given:
            inc = self._call("GET", f"/incidents/{given}", not_found=f"incident {given} given for case {case.id} "
                             "does not exist")["incident"]
            return self._thread(inc)
        found = self._call("GET", "/incidents", params={"incident_key": case.id, "limit": 1})
        if found.get("incidents"):
            return self._thread(found["incidents"][0])
        if not self.options.service_id:
            raise Rejected(f"case {case.id} has no PagerDuty incident (label pagerduty.incident) and backend "
                           f"{self.name!r} has no service_id to create one on")
        inc = self._call("POST", "/incidents", json={"incident": {
            "type": "incident", "title": f"[{case.severity}] {case.title}"[:1024], "incident_key": case.id,
            "urgency": self.options.urgency,
            "service": {"id": self.options.service_id, "type": "service_reference"}}})["incident"]
        return self._thread(inc)

    def render(self, entry: Entry) -> list[str]:
        return render_parts(entry, human_markdown(entry, plain=True), self.options.max_note_chars, plain_part, len)

    def _notes(self, thread: ThreadRef) -> list[dict[str, Any]]:
        data = self._call("GET", f"/incidents/{thread.id}/notes", not_found=self._gone(thread))
        return list(data.get("notes") or [])

    def _parts(self, thread: ThreadRef, entry_id: str) -> dict[int, CopyPart]:
        found: dict[int, CopyPart] = {}
        for note in self._notes(thread):
            p = parse_plain(note.get("content") or "")
            if p and p[0] == entry_id:
                found.setdefault(p[1], CopyPart(*p, external_id=str(note["id"]), url=thread.url))
        return found

    def append(self, thread: ThreadRef, entry: Entry) -> ExternalRef:
        parts = self.render(entry)
        have = self._parts(thread, entry.id) if len(parts) > 1 else {}
        ids = []
        for k, content in enumerate(parts, 1):
            if k in have:
                ids.append(have[k].external_id)
                continue
            note = self._call("POST", f"/incidents/{thread.id}/notes", json={"note": {"content": content}},
                              not_found=self._gone(thread))["note"]
            ids.append(str(note["id"]))
        return ExternalRef(backend=self.name, id=ids[0], url=thread.url, parts=ids)

    def lookup(self, thread: ThreadRef, entry_id: str) -> ExternalRef | None:
        found = self._parts(thread, entry_id)
        if not found or len(found) != next(iter(found.values())).total:
            return None
        ids = [found[k].external_id for k in sorted(found)]
        return ExternalRef(backend=self.name, id=ids[0], url=thread.url, parts=ids)

    def read_back(self, thread: ThreadRef, since: str | None = None) -> ReadBack:
        cursor = TimeCursor(since)
        parts: list[CopyPart] = []
        fresh: set[str] = set()
        humans: list[HumanItem] = []
        for note in self._notes(thread):
            nid, content = str(note["id"]), note.get("content") or ""
            at = format_ts(parse_ts(note["created_at"]))
            new = cursor.is_new(at, nid)
            p = parse_plain(content)
            if p:
                parts.append(CopyPart(*p, external_id=nid, url=thread.url, position=at))
                if new:
                    fresh.add(p[0])
            elif new and not is_own_echo(content):
                who = (note.get("user") or {}).get("summary") or "unknown"
                humans.append(HumanItem(backend=self.name, external_id=nid, author=Author(kind="human", name=who),
                                        at=note["created_at"], kind="note", text=content, url=thread.url,
                                        raw={"user_id": (note.get("user") or {}).get("id")}))
        got = assemble(parts)
        return ReadBack(entries=[e for e in got.entries if e.id in fresh], humans=humans,
                        cursor=cursor.next() or since)

    def search(self, text: str, limit: int = 20) -> list[Hit]:
        return []  # PagerDuty has no full-text search over incidents or notes

    def resolve(self, thread: ThreadRef, summary: Entry) -> None:
        inc = self._call("GET", f"/incidents/{thread.id}", not_found=self._gone(thread))["incident"]
        if inc.get("status") == "resolved":
            return
        mark = f"[{RESOLVED_MARK}:{summary.id}]"
        if not any(mark in (n.get("content") or "") for n in self._notes(thread)):
            self._call("POST", f"/incidents/{thread.id}/notes",
                       json={"note": {"content": f"Resolved - {summary.title} (sharedctx entry {summary.id}) {mark}"}})
        self._call("PUT", f"/incidents/{thread.id}", not_found=self._gone(thread),
                   json={"incident": {"type": "incident_reference", "status": "resolved"}})

    # ---- Checkable (`sharedctx backends check`) ------------------------------------------------------
    def check(self) -> list[Check]:
        """API key, the `From` user (exists, may write), the service, incident access. Reads only.

        A `From` that is not a user of the account makes PagerDuty refuse every write: it must fail here, at
        set-up, not with the first incident note at 2 AM."""
        return run(self._check_steps)

    def _check_get(self, url: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Token token={secret(self.options.token, service=SERVICE)}",
                   "Accept": "application/vnd.pagerduty+json;version=2", "From": self.options.from_email}
        return self._client.get(url, headers=headers, **kw)

    def _check_steps(self, out: list[Check]) -> None:
        o = self.options
        users = fetch(self._check_get, f"{self._api}/users", "credentials", params={"query": o.from_email})
        if users.status_code == 401:
            raise Stop(Check(what="credentials", ok=False, detail=(
                f"PagerDuty refused the API key in {o.token} {says(users)}: it is wrong or was revoked. Create a "
                "REST API key (Integrations -> API Access Keys) and put it in that variable")))
        if users.status_code == 403:
            raise Stop(Check(what="credentials", ok=False, detail=(
                f"the key may not list users {says(users)}, so the From address cannot be checked: use a REST API "
                "key, or a scoped OAuth token with users.read, incidents.read and incidents.write")))
        if users.status_code != 200:
            raise Stop(Check(what="credentials", ok=False, detail=f"GET /users failed {says(users)}"))
        out.append(Check(what="credentials", ok=True, detail=f"the API key in {o.token} works"))
        found = [u for u in json_body(users, "credentials").get("users") or []
                 if str(u.get("email", "")).lower() == o.from_email.lower()]
        out.append(self._check_from(found[0] if found else None))
        out.append(self._check_service())
        inc = fetch(self._check_get, f"{self._api}/incidents", "incidents", params={"limit": 1})
        if inc.status_code == 200:
            json_body(inc, "incidents")  # a proxy's page with 200 is no proof
        out.append(Check(what="incidents", ok=inc.status_code == 200, detail=(
            "the key may read incidents" if inc.status_code == 200 else
            f"the key may not read incidents {says(inc)}: give it incidents.read and incidents.write")))

    def _check_from(self, user: dict[str, Any] | None) -> Check:
        o = self.options
        if user is None:
            return Check(what="from", ok=False, detail=(
                f"the From address {o.from_email} is not a user of this PagerDuty account: PagerDuty would refuse "
                "every note, new incident and resolve sharedctx sends. Set from_email to the login email of a "
                "PagerDuty user (People -> Users), e.g. a dedicated sharedctx user"))
        role = str(user.get("role") or "")
        if role in ("observer", "read_only_user", "read_only_limited_user"):
            return Check(what="from", ok=False, detail=(
                f"{o.from_email} ({user.get('name')}) has the read-only role {role!r}: PagerDuty would refuse its "
                "notes and resolves. Give it the Responder (limited_user) role or higher"))
        return Check(what="from", ok=True, detail=f"{o.from_email} is the PagerDuty user {user.get('name')} "
                     f"({user.get('id')}, role {role or 'unknown'})")

    def _check_service(self) -> Check:
        sid = self.options.service_id
        if not sid:
            return Check(what="service", ok=True, detail=(
                "no service_id: sharedctx writes only to incidents an alert names (label pagerduty.incident); set "
                "service_id to let it open incidents itself"))
        resp = fetch(self._check_get, f"{self._api}/services/{sid}", "service")
        if resp.status_code == 404:
            return Check(what="service", ok=False, detail=(
                f"service {sid} does not exist in this account {says(resp)}: set service_id to the id at the end "
                "of the service's URL (Services -> Service Directory)"))
        if resp.status_code != 200:
            return Check(what="service", ok=False, detail=f"GET /services/{sid} failed {says(resp)}")
        svc = json_body(resp, "service").get("service") or {}
        if svc.get("status") == "disabled":
            return Check(what="service", ok=False, detail=(
                f"service {sid} ({svc.get('name')}) is disabled: PagerDuty refuses new incidents on it. Enable it "
                "or set another service_id"))
        return Check(what="service", ok=True, detail=f"service {sid} is {svc.get('name')} ({svc.get('status')})")

    def close(self) -> None:
        if self._owns_client:
            self._client.close()
