"""A PagerDuty REST v2 double: incidents, incident notes, incident_key lookup, resolve.

Rejects what PagerDuty rejects: a bad `Authorization: Token token=...` (401), a write without a `From`
header (400, as with an account-level key), a wrong content type (415 from our double; PagerDuty answers
400/415), a note without content (400), notes on a deleted/merged incident (404), a second open incident
with the same incident_key (400).
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from typing import Any

import httpx

from .base import EXTRA_SPECS, ServiceDouble, now_iso

API = "https://api.pagerduty.com"


def _user_ref(uid: str, name: str) -> dict[str, Any]:
    return {"id": uid, "type": "user_reference", "summary": name, "self": f"{API}/users/{uid}",
            "html_url": f"https://acme.pagerduty.com/users/{uid}"}


@cache
def _example(path: str) -> dict[str, Any]:
    """PagerDuty's own example answer for GET `path` (official description), the base of the double's answer."""
    doc = json.loads((EXTRA_SPECS / "pagerduty.extra.json").read_text(encoding="utf-8"))
    value: dict[str, Any] = doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"][
        "examples"]["response"]["value"]
    return value


class PagerDutyDouble(ServiceDouble):
    service = "pagerduty"
    spec_name = "pagerduty"
    host_url = API
    # ServiceReference marks `id`/`type` readOnly, yet createIncident needs them (the description's own
    # request example sends {"service": {"id": ..., "type": "service_reference"}} and fails the same way).
    known_defects = (r"^incident/service/(id|type): Tried to write read-only property",)

    def __init__(self, *, token: str = "pd-test-token", validate: bool = True) -> None:
        super().__init__(validate=validate)
        self.token = token
        self.incidents: dict[str, dict[str, Any]] = {}
        self.notes: dict[str, list[dict[str, Any]]] = {}
        self.bot = _user_ref("PBOT001", "sharedctx bot")
        # setup-check state: the account's users (email -> (id, name, role)) and services (id -> status)
        self.users: dict[str, tuple[str, str, str]] = {"bot@acme.io": ("PBOT001", "sharedctx bot", "user"),
                                                       "alice@acme.io": ("PALICE1", "Alice Oncall", "user")}
        self.services: dict[str, str] = {"PSVC001": "active"}
        self.scoped_denied: set[str] = set()  # paths a scoped OAuth token may not read (403)

    def error(self, status: int, message: str) -> httpx.Response:
        return self.json_response(status, {"error": {"message": message, "code": 2000 + status}})

    def authorized(self, request: httpx.Request) -> bool:
        return request.headers.get("authorization") == f"Token token={self.token}"

    # ---- test helpers ----------------------------------------------------------------------------
    def add_incident(self, title: str = "db down", incident_key: str | None = None) -> str:
        return self._create({"title": title, "incident_key": incident_key, "service": {"id": "PSVC001"}})["id"]

    def add_human_note(self, incident_id: str, content: str, name: str = "Alice Oncall") -> dict[str, Any]:
        return self._note(incident_id, content, _user_ref("PALICE1", name))

    def delete_incident(self, incident_id: str) -> None:
        self.incidents.pop(incident_id, None)

    # ---- state -------------------------------------------------------------------------------------
    def _create(self, data: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            n = self.next_id()
            iid = f"PINC{n}"
            inc = {
                "id": iid, "type": "incident", "summary": f"[#{n}] {data['title']}", "self": f"{API}/incidents/{iid}",
                "html_url": f"https://acme.pagerduty.com/incidents/{iid}", "incident_number": n,
                "title": data["title"], "created_at": now_iso(), "updated_at": now_iso(), "status": "triggered",
                "incident_key": data.get("incident_key") or f"key-{n}", "urgency": data.get("urgency", "high"),
                "service": {"id": data["service"]["id"], "type": "service_reference", "summary": "payments",
                            "self": f"{API}/services/{data['service']['id']}"},
                "assignments": [],
            }
            self.incidents[iid] = inc
            self.notes[iid] = []
            return inc

    def _note(self, iid: str, content: str, user: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            note = {"id": f"PN{self.next_id()}", "user": user, "channel": {"summary": "The PagerDuty website or APIs"},
                    "content": content, "created_at": now_iso(), "updated_at": now_iso()}
            self.notes[iid].append(note)
            return note

    def _list_users(self, query: str) -> httpx.Response:
        """`query` matches names and email addresses, case-insensitively, as PagerDuty does."""
        page = copy.deepcopy(_example("/users"))
        template = page["users"][0]
        found = []
        for email, (uid, name, role) in self.users.items():
            if query.lower() in email.lower() or query.lower() in name.lower():
                found.append({**template, "id": uid, "name": name, "summary": name, "email": email, "role": role,
                              "self": f"{API}/users/{uid}", "html_url": f"https://acme.pagerduty.com/users/{uid}"})
        page.update(users=found, total=None, more=False)
        return self.json_response(200, page)

    def _service(self, sid: str) -> httpx.Response:
        if sid not in self.services:
            return self.error(404, "Not Found")
        svc = copy.deepcopy(_example("/services/{id}"))
        svc["service"].update(id=sid, name="payments", summary="payments", status=self.services[sid],
                              self=f"{API}/services/{sid}")
        return self.json_response(200, svc)

    # ---- routes ------------------------------------------------------------------------------------
    def route(self, request: httpx.Request) -> httpx.Response:
        m, path = request.method, request.url.path
        if m != "GET":
            if not request.headers.get("from"):
                return self.error(400, "You must specify a user's email address in the \"From\" header "
                                  "to perform this action")
            if request.headers.get("content-type", "").split(";")[0] != "application/json":
                return self.error(415, "Unsupported content type")
            try:
                body = json.loads(request.content)
            except ValueError:
                return self.error(400, "Invalid JSON")
        else:
            body = {}
        if m == "GET" and path in self.scoped_denied:
            return self.error(403, "Access Denied")
        if path == "/users" and m == "GET":
            return self._list_users(request.url.params.get("query", ""))
        ms = re.fullmatch(r"/services/([A-Z0-9]+)", path)
        if ms and m == "GET":
            return self._service(ms.group(1))
        if path == "/incidents" and m == "GET":
            key = request.url.params.get("incident_key")
            found = [i for i in self.incidents.values() if key is None or i["incident_key"] == key]
            return self.json_response(200, {"incidents": found, "limit": 25, "offset": 0, "more": False, "total": None})
        if path == "/incidents" and m == "POST":
            inc = body.get("incident") or {}
            if not inc.get("title") or not (inc.get("service") or {}).get("id"):
                return self.error(400, "Invalid Input Provided")
            key = inc.get("incident_key")
            if key and any(i["incident_key"] == key and i["status"] != "resolved" for i in self.incidents.values()):
                return self.error(400, "Open incident with matching dedup key already exists on this service")
            return self.json_response(201, {"incident": self._create(inc)})
        mi = re.fullmatch(r"/incidents/([A-Z0-9]+)(/notes)?", path)
        if not mi or mi.group(1) not in self.incidents:
            return self.error(404, "Not Found")
        iid = mi.group(1)
        if mi.group(2) and m == "POST":
            content = (body.get("note") or {}).get("content")
            if not isinstance(content, str) or not content:
                return self.error(400, "Invalid Input Provided")
            return self.json_response(200, {"note": self._note(iid, content, self.bot)})
        if mi.group(2):
            return self.json_response(200, {"notes": list(self.notes[iid])})
        if m == "PUT":
            status = (body.get("incident") or {}).get("status")
            with self.lock:
                if status:
                    self.incidents[iid]["status"] = status
                    if status == "resolved":
                        self.incidents[iid]["last_status_change_at"] = now_iso()
            return self.json_response(200, {"incident": self.incidents[iid]})
        return self.json_response(200, {"incident": self.incidents[iid]})
