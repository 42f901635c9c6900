"""A ServiceNow Table API double: `incident` records, journal writes through `work_notes`/`comments`, and
`sys_journal_field` reads with a small encoded-query engine (`=`, `!=`, `LIKE`, `ISNOTEMPTY`, `^`, `^OR`,
`ORDERBY`/`ORDERBYDESC`). Rejects bad basic/bearer auth (401), non-JSON content types (415), unknown
records (404 `No Record found`), all with ServiceNow's `{"error": {...}, "status": "failure"}` body.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from .base import ServiceDouble

HOST = "https://acme.service-now.com"
COND = re.compile(r"^(?P<f>[a-z_]+?)(?P<op>ISNOTEMPTY|ISEMPTY|!=|=|LIKE|STARTSWITH)(?P<v>.*)$")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _match(row: dict[str, Any], cond: str) -> bool:
    m = COND.match(cond)
    if not m:
        return True  # ServiceNow silently ignores invalid query parts
    val = str(row.get(m["f"], "") or "")
    op, want = m["op"], m["v"]
    return {"=": val == want, "!=": val != want, "LIKE": want.lower() in val.lower(),
            "STARTSWITH": val.startswith(want), "ISNOTEMPTY": val != "", "ISEMPTY": val == ""}[op]


def query(rows: list[dict[str, Any]], q: str) -> list[dict[str, Any]]:
    groups: list[list[str]] = []
    order: list[tuple[str, bool]] = []
    for term in filter(None, q.split("^")):
        if term.startswith("ORDERBYDESC"):
            order.append((term[11:], True))
        elif term.startswith("ORDERBY"):
            order.append((term[7:], False))
        elif term.startswith("OR") and groups:
            groups[-1].append(term[2:])
        else:
            groups.append([term])
    out = [r for r in rows if all(any(_match(r, c) for c in g) for g in groups)]
    for field, desc in reversed(order):
        out.sort(key=lambda r, f=field: str(r.get(f, "")), reverse=desc)
    return out


INCIDENT_CHOICES = {
    "state": {"1": "New", "2": "In Progress", "3": "On Hold", "6": "Resolved", "7": "Closed", "8": "Canceled"},
    "close_code": {v: v for v in ("Solved (Work Around)", "Solved (Permanently)", "Solved Remotely (Work Around)",
                                  "Solved Remotely (Permanently)", "Not Solved (Not Reproducible)",
                                  "Not Solved (Too Costly)", "Closed/Resolved by Caller")},
}


def _choices() -> list[dict[str, Any]]:
    """The out-of-the-box incident state and close code choices (sys_choice rows, all values strings)."""
    return [{"sys_id": uuid.uuid4().hex, "name": "incident", "element": element, "value": value, "label": label,
             "language": "en", "inactive": "false"}
            for element, values in INCIDENT_CHOICES.items() for value, label in values.items()]


class ServiceNowDouble(ServiceDouble):
    service = "servicenow"
    spec_name = "servicenow"
    host_url = HOST

    def __init__(self, *, user: str = "sharedctx.bot", password: str = "sn-test-pass", validate: bool = True) -> None:
        super().__init__(validate=validate)
        self.user, self.password = user, password
        self.tables: dict[str, list[dict[str, Any]]] = {"incident": [], "sys_journal_field": [],
                                                        "sys_choice": _choices()}
        self.denied_tables: set[str] = set()  # a table-level ACL refuses them: 403 User Not Authorized
        self._n = 10000

    def error(self, status: int, message: str, detail: str | None = None) -> httpx.Response:
        return self.json_response(status, {"error": {"message": message, "detail": detail}, "status": "failure"})

    def authorized(self, request: httpx.Request) -> bool:
        good = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return request.headers.get("authorization") == good

    # ---- test helpers --------------------------------------------------------------------------
    def add_incident(self, short_description: str = "db down", **fields: str) -> dict[str, Any]:
        return self._insert("incident", {"short_description": short_description, **fields})

    def add_human_note(self, sys_id: str, text: str, who: str = "alice.oncall", element: str = "comments") -> None:
        self._journal(sys_id, element, text, who)

    def delete_incident(self, sys_id: str) -> None:
        self.tables["incident"] = [r for r in self.tables["incident"] if r["sys_id"] != sys_id]

    def journal_of(self, sys_id: str) -> list[dict[str, Any]]:
        return [r for r in self.tables["sys_journal_field"] if r["element_id"] == sys_id]

    # ---- state -------------------------------------------------------------------------------------
    def _insert(self, table: str, fields: dict[str, Any], who: str = "sharedctx.bot") -> dict[str, Any]:
        with self.lock:
            row = {k: str(v) for k, v in fields.items() if k not in ("work_notes", "comments")}
            row.update(sys_id=uuid.uuid4().hex, sys_created_on=_now(), sys_updated_on=_now(), sys_created_by=who)
            if table == "incident":
                self._n += 1
                row.setdefault("number", f"INC{self._n:07d}")
                row.setdefault("state", "1")
            self.tables[table].append(row)
            for element in ("work_notes", "comments"):
                if fields.get(element):
                    self._journal(row["sys_id"], element, str(fields[element]), who)
            return row

    def _journal(self, sys_id: str, element: str, value: str, who: str) -> None:
        self.tables["sys_journal_field"].append({
            "sys_id": uuid.uuid4().hex, "element": element, "element_id": sys_id, "name": "incident",
            "value": value, "sys_created_on": _now(), "sys_created_by": who})

    # ---- routes ------------------------------------------------------------------------------------
    def route(self, request: httpx.Request) -> httpx.Response:
        m = re.fullmatch(r"/api/now/table/(\w+)(?:/(\w+))?", request.url.path)
        if not m or m.group(1) not in self.tables:
            return self.error(400, "Invalid table")
        table, sys_id = m.group(1), m.group(2)
        if table in self.denied_tables:
            return self.error(403, "User Not Authorized", "Failed API level ACL Validation")
        body: dict[str, Any] = {}
        if request.method in ("POST", "PATCH", "PUT"):
            if request.headers.get("content-type", "").split(";")[0] != "application/json":
                return self.error(415, "Unsupported Media Type", "Content-Type must be application/json")
            try:
                body = json.loads(request.content)
            except ValueError:
                return self.error(400, "Exception while reading request", "The payload is not valid JSON.")
        fields = request.url.params.get("sysparm_fields")

        def shape(row: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in row.items() if not fields or k in fields.split(",")}

        if sys_id is None and request.method == "GET":
            rows = query(self.tables[table], request.url.params.get("sysparm_query", ""))
            off = int(request.url.params.get("sysparm_offset", 0))
            lim = int(request.url.params.get("sysparm_limit", 10000))
            return self.json_response(200, {"result": [shape(r) for r in rows[off : off + lim]]},
                                      {"X-Total-Count": str(len(rows))})
        if sys_id is None and request.method == "POST":
            return self.json_response(201, {"result": shape(self._insert(table, body))})
        row = next((r for r in self.tables[table] if r["sys_id"] == sys_id), None)
        if row is None:
            return self.error(404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval")
        if request.method in ("PATCH", "PUT"):
            with self.lock:
                for k, v in body.items():
                    if k in ("work_notes", "comments"):
                        if v:
                            self._journal(sys_id, k, str(v), self.user)
                    else:
                        row[k] = str(v)
                row["sys_updated_on"] = _now()
        return self.json_response(200, {"result": shape(row)})
