"""The GitHub double, plus what humans do on GitHub: reactions, closing an issue, repository permissions,
and conditional requests (ETag / If-None-Match -> 304). Still spec-checked: every request and response goes
through the base double's OpenAPI validation (304 is HTTP-level, like the base's undeclared error statuses).

Also: signed webhook payloads for all four services, built the way each service signs them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from typing import Any

import httpx

from tests.doubles.base import now_iso
from tests.doubles.github import API, GitHubDouble, _user

ROLES = {"admin": "admin", "maintain": "write", "write": "write", "triage": "read", "read": "read"}


class HumanGitHubDouble(GitHubDouble):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.reactions: dict[int, list[dict[str, Any]]] = {}  # comment id -> reactions
        self.roles: dict[str, str] = {}  # login -> role (collaborators only)
        self.not_modified = 0
        self.full_answers = 0  # 2xx answers to GETs: what counts against the primary rate limit
        self.etags = True
        self._uids: dict[str, int] = {}

    # ---- what people do ------------------------------------------------------------------------------
    def user(self, login: str) -> dict[str, Any]:
        uid = self._uids.setdefault(login, 100 + len(self._uids))
        return _user(login, uid)

    def comment_as(self, number: int, body: str, login: str) -> dict[str, Any]:
        return self._create_comment(number, body, self.user(login))

    def react(self, comment_id: int, content: str, login: str) -> dict[str, Any]:
        with self.lock:
            rid = self.next_id()
            r = {"id": rid, "node_id": f"REA_{rid}", "user": self.user(login), "content": content,
                 "created_at": now_iso()}
            self.reactions.setdefault(comment_id, []).append(r)
            self.comments[comment_id]["updated_at"] = now_iso()
            return r

    def close_as(self, number: int, login: str) -> None:
        with self.lock:
            issue = self.issues[number]
            issue.update(state="closed", state_reason="completed", closed_at=now_iso(), closed_by=self.user(login),
                         updated_at=now_iso())

    def comment_for_entry(self, number: int, entry_id: str) -> dict[str, Any]:
        for c in self.comments_of(number):
            if f"sharedctx:entry:{entry_id} part 1/" in c["body"]:
                return c
        raise KeyError(entry_id)

    # ---- representation ------------------------------------------------------------------------------
    def _public(self, obj: dict[str, Any]) -> dict[str, Any]:
        out = super()._public(obj)
        if "_issue" in obj:  # a comment: GitHub includes the reaction rollup
            rs = self.reactions.get(obj["id"], [])
            counts = {k: sum(1 for r in rs if r["content"] == k)
                      for k in ("+1", "-1", "laugh", "confused", "heart", "hooray", "eyes", "rocket")}
            out["reactions"] = {"url": f"{API}/repos/{self.repo}/issues/comments/{obj['id']}/reactions",
                                "total_count": len(rs), **counts}
        return out

    # ---- routes --------------------------------------------------------------------------------------
    def route(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        prefix = f"/repos/{self.repo}"
        if request.method == "GET" and (m := re.fullmatch(prefix + r"/issues/comments/(\d+)/reactions", path)):
            cid = int(m.group(1))
            if cid not in self.comments:
                return self.error(404, "Not Found")
            return self.json_response(200, self.reactions.get(cid, []))
        if request.method == "GET" and (m := re.fullmatch(prefix + r"/collaborators/([\w-]+)/permission", path)):
            login = m.group(1)
            role = self.roles.get(login)
            if role is None:
                return self.error(404, "Not Found")
            perms = {"pull": True, "triage": role != "read", "push": role in ("write", "maintain", "admin"),
                     "maintain": role in ("maintain", "admin"), "admin": role == "admin"}
            user = {**self.user(login), "permissions": perms, "role_name": role}
            return self.json_response(200, {"permission": ROLES[role], "role_name": role, "user": user})
        if request.method == "PATCH" and re.fullmatch(prefix + r"/issues/\d+", path):
            resp = super().route(request)
            number = int(path.rsplit("/", 1)[1])
            if self.issues[number].get("state") == "closed" and not self.issues[number].get("closed_by"):
                self.issues[number]["closed_by"] = self.bot
                resp = self.json_response(resp.status_code, self._public(self.issues[number]))
            return resp
        return super().route(request)

    def handle(self, request: httpx.Request) -> httpx.Response:
        resp = super().handle(request)
        if request.method != "GET" or resp.status_code != 200:
            return resp
        if not self.etags:
            self.full_answers += 1
            return resp
        tag = '"' + hashlib.sha1(resp.content).hexdigest() + '"'
        if request.headers.get("if-none-match") == tag:
            self.not_modified += 1
            return httpx.Response(304, headers={"etag": tag})
        self.full_answers += 1
        resp.headers["etag"] = tag
        return resp


# ---- signed webhook deliveries ---------------------------------------------------------------------------
def github_hook(secret: str, event: str, payload: dict[str, Any], *, delivery: str | None = None,
                forge: bool = False) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    sig = hmac.new((secret + ("x" if forge else "")).encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
                  "X-Hub-Signature-256": f"sha256={sig}", "Content-Type": "application/json"}


def github_comment_payload(double: HumanGitHubDouble, number: int, comment: dict[str, Any]) -> dict[str, Any]:
    return {"action": "created", "issue": double._public(double.issues[number]), "comment": double._public(comment),
            "repository": {"full_name": double.repo}, "sender": comment["user"]}


def pagerduty_hook(secret: str, event: dict[str, Any], *, forge: bool = False) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"event": event}).encode()
    sig = hmac.new((secret + ("x" if forge else "")).encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-PagerDuty-Signature": f"v1=deadbeef,v1={sig}", "Content-Type": "application/json"}


def pagerduty_annotated(incident_id: str, content: str, *, user_id: str = "PALICE1", name: str = "Alice Oncall",
                        occurred_at: str | None = None) -> dict[str, Any]:
    return {"id": f"01{uuid.uuid4().hex[:24].upper()}", "event_type": "incident.annotated", "resource_type": "incident",
            "occurred_at": occurred_at or now_iso(),
            "agent": {"id": user_id, "type": "user_reference", "summary": name,
                      "html_url": f"https://acme.pagerduty.com/users/{user_id}"},
            "client": None,
            "data": {"incident": {"id": incident_id, "type": "incident_reference",
                                  "html_url": f"https://acme.pagerduty.com/incidents/{incident_id}"},
                     "content": content, "trimmed": False, "type": "incident_note"}}


def jira_hook(secret: str, payload: dict[str, Any], *, forge: bool = False) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    sig = hmac.new((secret + ("x" if forge else "")).encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-Hub-Signature": f"sha256={sig}", "X-Atlassian-Webhook-Identifier": str(uuid.uuid4()),
                  "Content-Type": "application/json"}


def jira_comment_payload(key: str, comment: dict[str, Any], *, timestamp: float | None = None) -> dict[str, Any]:
    return {"timestamp": int((timestamp or time.time()) * 1000), "webhookEvent": "comment_created",
            "comment": comment, "issue": {"id": "10001", "key": key, "self": f"https://acme.atlassian.net/rest/api/3/issue/{key}"}}


def servicenow_hook(secret: str, payload: dict[str, Any], *, ts: float | None = None, b64: bool = False,
                    forge: bool = False) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    stamp = str(int(ts if ts is not None else time.time()))
    mac = hmac.new((secret + ("x" if forge else "")).encode(), stamp.encode() + b"." + body, hashlib.sha256).digest()
    sig = base64.b64encode(mac).decode() if b64 else mac.hex()
    return body, {"X-Sharedctx-Timestamp": stamp, "X-Sharedctx-Signature": f"sha256={sig}",
                  "X-Sharedctx-Delivery": str(uuid.uuid4()), "Content-Type": "application/json"}
