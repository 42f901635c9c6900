"""A Jira double: Cloud REST v3 (ADF comment bodies, /search/jql) and Data Center-style v2 (wiki strings,
GET /search), sharing one set of issues. v3 traffic is checked against Atlassian's description; there is
no v2 description in shared/specs, so v2 requests are counted in `unchecked` instead (honest, not hidden).

Rejects what Jira rejects: bad auth (401); a v3 comment body that is not a valid ADF document (400, e.g.
a Markdown string, an empty text node, an unknown node type); a v2 body that is not a string (400); over
32,767 characters (400); comments on a deleted issue (404); an unavailable transition (400).
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from functools import cache
from typing import Any

import httpx

from .base import EXTRA_SPECS, ServiceDouble

SITE = "https://your-domain.atlassian.net"
MAX_BODY = 32_767
ADF_NODES = {"doc", "paragraph", "text", "heading", "bulletList", "orderedList", "listItem", "codeBlock",
             "hardBreak", "expand", "blockquote", "rule", "panel", "table", "tableRow", "tableCell", "mention"}
ADF_MARKS = {"strong", "em", "code", "link", "strike", "underline"}
DONE = {"self": f"{SITE}/rest/api/3/status/10001", "id": "10001", "name": "Done",
        "statusCategory": {"id": 3, "key": "done", "name": "Done", "colorName": "green"}}
TODO = {"self": f"{SITE}/rest/api/3/status/10000", "id": "10000", "name": "To Do",
        "statusCategory": {"id": 2, "key": "new", "name": "To Do", "colorName": "blue-gray"}}


def adf_problem(node: Any, top: bool = True) -> str | None:
    """Why Jira would refuse this ADF document, or None."""
    if not isinstance(node, dict):
        return "Comment body is not valid Atlassian Document Format" if top else "ADF nodes are objects"
    if top and (node.get("type") != "doc" or node.get("version") != 1 or not isinstance(node.get("content"), list)):
        return "Comment body is not valid Atlassian Document Format (need type=doc, version=1, content)"
    t = node.get("type")
    if t not in ADF_NODES:
        return f"unknown ADF node type {t!r}"
    if t == "text":
        if not isinstance(node.get("text"), str) or not node["text"]:
            return "ADF text nodes need non-empty text"
        for mark in node.get("marks") or []:
            if mark.get("type") not in ADF_MARKS:
                return f"unknown ADF mark {mark.get('type')!r}"
    for child in node.get("content") or []:
        if problem := adf_problem(child, top=False):
            return problem
    return None


@cache
def _example(path: str) -> dict[str, Any]:
    """Atlassian's own example answer for GET `path` (official description), the base of the double's answer."""
    doc = json.loads((EXTRA_SPECS / "jira.extra.json").read_text(encoding="utf-8"))
    value: dict[str, Any] = json.loads(doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"][
        "example"])
    return value


def _jira_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


class JiraDouble(ServiceDouble):
    service = "jira"
    spec_name = "jira"
    host_url = SITE
    # Jira sends times as `2021-01-17T12:34:00.000+0000` (the description's own examples too), which is not
    # RFC 3339 `date-time`; and doTransition answers 204 with no body although a JSON body is declared.
    known_defects = (r"(^|/)(created|updated|lastIssueUpdateTime): '[^']+[+-]\d{4}' is not a 'date-time'$",)

    def __init__(self, *, email: str = "bot@acme.io", api_token: str = "jira-test-token", project: str = "OPS",
                 validate: bool = True) -> None:
        super().__init__(validate=validate)
        self.email, self.api_token, self.project = email, api_token, project
        self.issues: dict[str, dict[str, Any]] = {}
        self.comments: dict[str, list[dict[str, Any]]] = {}
        self.unchecked = 0
        self._n = 0
        self.bot = self._user("bot-1", "sharedctx bot")
        # setup-check state (tests change these): the workflow's transitions from an open issue (id -> name),
        # the project's issue types, and the project permissions the user holds
        self.transitions = {"31": "Done"}
        self.issue_types = ["Task", "Bug", "Epic"]
        self.permissions = {"BROWSE_PROJECTS", "CREATE_ISSUES", "ADD_COMMENTS", "TRANSITION_ISSUES"}

    def _user(self, aid: str, name: str) -> dict[str, Any]:
        return {"accountId": aid, "displayName": name, "active": True,
                "self": f"{SITE}/rest/api/3/user?accountId={aid}"}

    def error(self, status: int, message: str) -> httpx.Response:
        return self.json_response(status, {"errorMessages": [message], "errors": {}})

    def authorized(self, request: httpx.Request) -> bool:
        good = "Basic " + base64.b64encode(f"{self.email}:{self.api_token}".encode()).decode()
        return request.headers.get("authorization") in (good, f"Bearer {self.api_token}")

    def check_request(self, request: httpx.Request) -> None:
        if "/rest/api/2/" in request.url.path:
            self.unchecked += 1
            return
        super().check_request(request)

    def check_response(self, request: httpx.Request, resp: httpx.Response) -> None:
        if "/rest/api/2/" in request.url.path:
            return
        if resp.status_code == 204 and request.url.path.endswith("/transitions"):
            self._log(request, "response", None)  # see known_defects: 204 has no body in reality
            return
        super().check_response(request, resp)

    # ---- test helpers ------------------------------------------------------------------------------
    def add_issue(self, summary: str = "existing", labels: list[str] | None = None) -> str:
        return self._create({"summary": summary, "labels": labels or []})["key"]

    def add_human_comment(self, key: str, text: str, name: str = "Alice Oncall") -> None:
        para = {"type": "paragraph", "content": [{"type": "text", "text": text}]}
        body = {"type": "doc", "version": 1, "content": [para]}
        self._comment(key, body, self._user("alice-1", name))

    def delete_issue(self, key: str) -> None:
        self.issues.pop(key, None)

    # ---- state ---------------------------------------------------------------------------------------
    def _create(self, fields: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self._n += 1
            key = f"{self.project}-{self._n}"
            issue = {"id": str(10000 + self._n), "key": key, "self": f"{SITE}/rest/api/3/issue/{10000 + self._n}",
                     "fields": {"summary": fields.get("summary", ""), "labels": list(fields.get("labels") or []),
                                "status": dict(TODO), "description": fields.get("description")}}
            self.issues[key] = issue
            self.comments[key] = []
            return issue

    def _comment(self, key: str, body: Any, user: dict[str, Any], v: int = 3) -> dict[str, Any]:
        with self.lock:
            self._n += 1
            cid = str(20000 + self._n)
            c = {"id": cid, "self": f"{SITE}/rest/api/{v}/issue/{key}/comment/{cid}", "author": user,
                 "updateAuthor": user, "body": body, "created": _jira_time(), "updated": _jira_time()}
            self.comments[key].append(c)
            return c

    def _jql(self, jql: str) -> list[dict[str, Any]]:
        out = list(self.issues.values())
        for m in re.finditer(r'(\w+)\s*(=|~)\s*"([^"]*)"', jql):
            field, _op, val = m.groups()
            if field == "project":
                out = [i for i in out if i["key"].startswith(val + "-")]
            elif field == "labels":
                out = [i for i in out if val in i["fields"]["labels"]]
            elif field == "text":
                out = [i for i in out if all(w.lower() in json.dumps(i["fields"]).lower() for w in val.split())]
        return out

    def _project(self) -> dict[str, Any]:
        proj = _example("/rest/api/3/project/{projectIdOrKey}")
        template = (proj.get("issueTypes") or [{}])[0]
        types = [{**template, "id": str(10000 + n), "name": name, "subtask": False, "self":
                  f"{SITE}/rest/api/3/issueType/{10000 + n}"} for n, name in enumerate(self.issue_types)]
        return {**proj, "key": self.project, "name": "Operations", "issueTypes": types}

    def _my_permissions(self, request: httpx.Request) -> httpx.Response:
        asked = [k for k in request.url.params.get("permissions", "").split(",") if k]
        if not asked:
            return self.error(400, "The permissions query parameter is required.")
        perms = {k: {"id": str(n), "key": k, "name": k.replace("_", " ").title(), "type": "PROJECT",
                     "description": k, "havePermission": k in self.permissions} for n, k in enumerate(asked)}
        return self.json_response(200, {"permissions": perms})

    # ---- routes --------------------------------------------------------------------------------------
    def route(self, request: httpx.Request) -> httpx.Response:
        m = re.fullmatch(r"/rest/api/(2|3)(/.*)", request.url.path)
        if not m:
            return self.error(404, "Not found")
        v, path, method = int(m.group(1)), m.group(2), request.method
        body: Any = {}
        if method in ("POST", "PUT"):
            if request.headers.get("content-type", "").split(";")[0] != "application/json":
                return self.error(415, "Unsupported Media Type")
            try:
                body = json.loads(request.content)
            except ValueError:
                return self.error(400, "Unexpected character in JSON")
        if path in ("/search/jql", "/search") and method in ("GET", "POST"):
            q = body if method == "POST" else request.url.params
            fields = q.get("fields") or []
            found = self._jql(q.get("jql", ""))[: int(q.get("maxResults", 50))]
            issues = [{"id": i["id"], "key": i["key"], "self": i["self"],
                       "fields": {"summary": i["fields"]["summary"], "labels": i["fields"]["labels"],
                                  **({"status": i["fields"]["status"]} if "status" in fields else {})}}
                      for i in found]
            return self.json_response(200, {"issues": issues, "isLast": True})
        if path == "/myself" and method == "GET":
            return self.json_response(200, {**_example("/rest/api/3/myself"), **self.bot})
        if path == f"/project/{self.project}" and method == "GET":
            return self.json_response(200, self._project())
        if path.startswith("/project/") and method == "GET":
            return self.error(404, f"No project could be found with key '{path.split('/')[2]}'.")
        if path == "/mypermissions" and method == "GET":
            return self._my_permissions(request)
        if path == "/issue" and method == "POST":
            fields = body.get("fields") or {}
            if not fields.get("summary") or (fields.get("project") or {}).get("key") != self.project:
                return self.json_response(400, {"errorMessages": [],
                                                "errors": {"project": "valid project is required"}})
            issue = self._create(fields)
            return self.json_response(201, {"id": issue["id"], "key": issue["key"], "self": issue["self"]})
        mi = re.fullmatch(r"/issue/([A-Z0-9]+-\d+)(/comment|/transitions)?", path)
        if not mi or mi.group(1) not in self.issues:
            return self.error(404, "Issue does not exist or you do not have permission to see it.")
        key, sub = mi.group(1), mi.group(2)
        issue = self.issues[key]
        if sub == "/comment" and method == "POST":
            b = body.get("body")
            problem = adf_problem(b) if v == 3 else (None if isinstance(b, str) and b else "body must be a string")
            if problem:
                return self.error(400, problem)
            if len(b if isinstance(b, str) else json.dumps(b)) > MAX_BODY:
                too_long = "The entered text is too long. It exceeds the allowed limit of 32,767 characters."
                return self.json_response(400, {"errorMessages": [], "errors": {"comment": too_long}})
            return self.json_response(201, self._comment(key, b, self.bot, v))
        if sub == "/comment":
            start = int(request.url.params.get("startAt", 0))
            size = int(request.url.params.get("maxResults", 50))
            all_c = self.comments[key]
            return self.json_response(200, {"comments": all_c[start : start + size], "startAt": start,
                                            "maxResults": size, "total": len(all_c)})
        if sub == "/transitions" and method == "GET":
            return self.json_response(200, {"transitions": [{"id": tid, "name": name, "to": DONE,
                                                             "hasScreen": False, "isAvailable": True}
                                                            for tid, name in self.transitions.items()]})
        if sub == "/transitions":
            if (body.get("transition") or {}).get("id") not in self.transitions:
                return self.error(400, "Transition id is not valid for this issue.")
            issue["fields"]["status"] = dict(DONE)
            return httpx.Response(204)
        fields = {"summary": issue["fields"]["summary"], "status": issue["fields"]["status"]}
        return self.json_response(200, {"id": issue["id"], "key": key, "self": issue["self"], "fields": fields})
