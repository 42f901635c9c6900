"""A GitHub REST double: issues, issue comments, issue search, and the secondary content-creation limit.

Rejects what GitHub rejects: missing/wrong token (401), non-JSON body (400/415), a comment body over
65,536 characters or empty (422), comments on a deleted issue (404). With `enforce_secondary=True` it
counts content-creating requests in sliding windows (80/min, 500/h) and answers 403 "secondary rate limit"
with `retry-after` when exceeded, counting each in `secondary_violations` (the bench wants zero).
`attempts` logs the `clock` time of every content-creating request it judged (admitted or not), so a bench
can count what all its clients together sent in any window. On a scaled `clock` (bench/fleet_parts/limit.py)
the windows and `retry_after` are in the same scaled seconds.
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections import deque
from functools import cache
from typing import Any

import httpx

from .base import EXTRA_SPECS, ServiceDouble, now_iso

API = "https://api.github.com"
MAX_BODY = 65_536


def _user(login: str, uid: int, kind: str = "User") -> dict[str, Any]:
    base = f"{API}/users/{login}"
    return {
        "login": login, "id": uid, "node_id": f"U_{uid}", "avatar_url": f"https://avatars.example/{uid}",
        "gravatar_id": "", "url": base, "html_url": f"https://github.com/{login}", "followers_url": base + "/followers",
        "following_url": base + "/following{/other_user}", "gists_url": base + "/gists{/gist_id}",
        "starred_url": base + "/starred{/owner}{/repo}", "subscriptions_url": base + "/subscriptions",
        "organizations_url": base + "/orgs", "repos_url": base + "/repos", "events_url": base + "/events{/privacy}",
        "received_events_url": base + "/received_events", "type": kind, "site_admin": False,
    }


@cache
def _example(name: str) -> dict[str, Any]:
    """GitHub's own example of a response (from the official description), the base of the double's answer."""
    doc = json.loads((EXTRA_SPECS / "github.extra.json").read_text(encoding="utf-8"))
    value: dict[str, Any] = doc["components"]["examples"][name]["value"]
    return value


class GitHubDouble(ServiceDouble):
    service = "github"
    spec_name = "github"
    host_url = API

    def __init__(self, *, token: str = "gh-test-token", repo: str = "acme/payments", validate: bool = True,
                 enforce_secondary: bool = False, per_minute: int = 80, per_hour: int = 500,
                 clock: Any = time.monotonic, retry_after: float = 60.0) -> None:
        super().__init__(validate=validate)
        self.token, self.repo = token, repo
        self.bot = _user("sharedctx-bot", 1, "Bot")
        self.issues: dict[int, dict[str, Any]] = {}
        self.comments: dict[int, dict[str, Any]] = {}  # id -> comment (with private "_issue")
        self.enforce_secondary = enforce_secondary
        self.limits = [(per_minute, 60.0), (per_hour, 3600.0)]
        self.clock = clock
        self.created_times: deque[float] = deque()
        self.attempts: list[float] = []
        self.retry_after = retry_after
        self.secondary_violations = 0
        self.content_created = 0
        self._issue_seq = 0
        # setup-check state: what GET /repos/{repo} and GET /user say (tests flip these)
        self.permission = "push"  # the token user's role: admin, maintain, push, triage, pull
        self.private = True
        self.archived = False
        self.has_issues = True
        self.scopes: str | None = "repo"  # X-OAuth-Scopes of a classic token; None: fine-grained token
        self.renamed_to: str | None = None  # GET /repos/{repo} answers 301 to this repo

    def error(self, status: int, message: str) -> httpx.Response:
        return self.json_response(status, {"message": message, "documentation_url": "https://docs.github.com/rest"})

    def authorized(self, request: httpx.Request) -> bool:
        return request.headers.get("authorization") in (f"Bearer {self.token}", f"token {self.token}")

    # ---- test helpers --------------------------------------------------------------------------
    def add_issue(self, title: str = "existing", body: str = "", labels: list[str] | None = None) -> int:
        return self._create_issue({"title": title, "body": body, "labels": labels or []})["number"]

    def add_human_comment(self, number: int, body: str, login: str = "alice") -> dict[str, Any]:
        return self._create_comment(number, body, _user(login, 7))

    def delete_issue(self, number: int) -> None:
        self.issues.pop(number, None)

    def comments_of(self, number: int) -> list[dict[str, Any]]:
        with self.lock:  # served from several threads (PortServer) while comments are being created
            return [c for c in self.comments.values() if c["_issue"] == number]

    # ---- state -------------------------------------------------------------------------------------
    def _public(self, obj: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in obj.items() if not k.startswith("_")}

    def _create_issue(self, data: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self._issue_seq += 1
            number = self._issue_seq
            iid = self.next_id()
            base = f"{API}/repos/{self.repo}/issues/{number}"
            labels = [{"id": i + 1, "node_id": f"L{i}", "url": f"{API}/repos/{self.repo}/labels/{n}", "name": n,
                       "description": None, "color": "ededed", "default": False}
                      for i, n in enumerate(data.get("labels") or [])]
            issue = {
                "id": iid, "node_id": f"I_{iid}", "url": base, "repository_url": f"{API}/repos/{self.repo}",
                "labels_url": base + "/labels{/name}", "comments_url": base + "/comments",
                "events_url": base + "/events",
                "html_url": f"https://github.com/{self.repo}/issues/{number}", "number": number, "state": "open",
                "title": data["title"], "body": data.get("body"), "user": self.bot,
                "labels": labels, "assignee": None, "milestone": None, "locked": False, "comments": 0,
                "closed_at": None, "created_at": now_iso(), "updated_at": now_iso(), "author_association": "NONE",
            }
            self.issues[number] = issue
            return issue

    def _create_comment(self, number: int, body: str, user: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            cid = self.next_id()
            c = {
                "id": cid, "node_id": f"IC_{cid}", "url": f"{API}/repos/{self.repo}/issues/comments/{cid}",
                "html_url": f"https://github.com/{self.repo}/issues/{number}#issuecomment-{cid}", "body": body,
                "user": user, "created_at": now_iso(), "updated_at": now_iso(),
                "issue_url": f"{API}/repos/{self.repo}/issues/{number}", "author_association": "NONE",
                "_issue": number,
            }
            self.comments[cid] = c
            self.issues[number]["comments"] += 1
            return c

    def _secondary_limited(self) -> httpx.Response | None:
        """Sliding-window count of content creation, as GitHub's guidance describes it."""
        if not self.enforce_secondary:
            return None
        with self.lock:
            now = self.clock()
            self.attempts.append(now)
            while self.created_times and now - self.created_times[0] > 3600:
                self.created_times.popleft()
            for cap, period in self.limits:
                recent = sum(1 for t in self.created_times if now - t < period)
                if recent >= cap:
                    self.secondary_violations += 1
                    resp = self.error(403, "You have exceeded a secondary rate limit. Please wait a few minutes.")
                    resp.headers["retry-after"] = f"{self.retry_after:g}"
                    return resp
            self.created_times.append(now)
            self.content_created += 1
        return None

    # ---- routes ------------------------------------------------------------------------------------
    def route(self, request: httpx.Request) -> httpx.Response:
        path, m = request.url.path, request.method
        prefix = f"/repos/{self.repo}"
        if m != "GET" and request.headers.get("content-type", "").split(";")[0] != "application/json":
            return self.error(415, "Unsupported Media Type")
        try:
            body = json.loads(request.content) if request.content else {}
        except ValueError:
            return self.error(400, "Problems parsing JSON")
        if path == "/search/issues":
            return self._search(request)
        if path == "/user" and m == "GET":
            return self._scoped(self.json_response(200, self._me()))
        if path == f"/repos/{self.repo}" and m == "GET":
            return self._scoped(self._repository())
        if not path.startswith(prefix):
            return self.error(404, "Not Found")
        rest = path[len(prefix):]
        if rest == "/issues" and m == "POST":
            if not body.get("title"):
                return self.error(422, "Validation Failed")
            if limited := self._secondary_limited():
                return limited
            return self.json_response(201, self._public(self._create_issue(body)))
        if rest == "/issues" and m == "GET":
            want = set(filter(None, request.url.params.get("labels", "").split(",")))
            with self.lock:
                found = [i for i in self.issues.values() if want <= {lb["name"] for lb in i["labels"]}]
            found.sort(key=lambda i: i["number"], reverse=True)
            per_page = int(request.url.params.get("per_page", 30))
            return self.json_response(200, [self._public(i) for i in found[:per_page]])
        mi = re.fullmatch(r"/issues/(\d+)(/comments)?", rest)
        if not mi:
            return self.error(404, "Not Found")
        number = int(mi.group(1))
        issue = self.issues.get(number)
        if issue is None:
            return self.error(404, "Not Found")
        if mi.group(2) and m == "POST":
            text = body.get("body")
            if not isinstance(text, str) or not text.strip() or len(text) > MAX_BODY:
                return self.json_response(422, {"message": "Validation Failed", "errors": [
                    {"resource": "IssueComment", "code": "custom", "field": "body",
                     "message": "body is too long (maximum is 65536 characters)"}],
                    "documentation_url": "https://docs.github.com/rest"})
            if limited := self._secondary_limited():
                return limited
            return self.json_response(201, self._public(self._create_comment(number, text, self.bot)))
        if mi.group(2):
            per_page = int(request.url.params.get("per_page", 30))
            page = int(request.url.params.get("page", 1))
            items = sorted(self.comments_of(number), key=lambda c: c["id"])
            chunk = items[(page - 1) * per_page : page * per_page]
            return self.json_response(200, [self._public(c) for c in chunk])
        if m == "PATCH":
            with self.lock:
                for key in ("state", "state_reason", "title", "body"):
                    if key in body:
                        issue[key] = body[key]
                if body.get("state") == "closed":
                    issue["closed_at"] = now_iso()
            return self.json_response(200, self._public(issue))
        return self.json_response(200, self._public(issue))

    def _scoped(self, resp: httpx.Response) -> httpx.Response:
        if self.scopes is not None:  # GitHub sends the header on every answer to a classic token
            resp.headers["x-oauth-scopes"] = self.scopes
        return resp

    def _me(self) -> dict[str, Any]:
        me = copy.deepcopy(_example("private-user-response-with-public-and-private-profile-information"))
        me.update({k: v for k, v in self.bot.items() if k in me})
        me["user_view_type"] = "private"  # GitHub sends it (the schema's discriminator); the example predates it
        return me

    def _repository(self) -> httpx.Response:
        if self.renamed_to is not None:
            return self.json_response(301, {"message": "Moved Permanently",
                                            "url": f"{API}/repos/{self.renamed_to}",
                                            "documentation_url": "https://docs.github.com/rest"},
                                      {"location": f"{API}/repos/{self.renamed_to}"})
        repo = copy.deepcopy(_example("full-repository-default-response"))
        for fork_of in ("parent", "source", "template_repository"):  # the example's own copies miss `language`
            repo.pop(fork_of, None)
        repo.setdefault("language", None)  # required (nullable); the example leaves it out
        owner, name = self.repo.split("/")
        levels = ["pull", "triage", "push", "maintain", "admin"]
        have = levels.index(self.permission)
        repo.update(name=name, full_name=self.repo, private=self.private, archived=self.archived,
                    has_issues=self.has_issues, url=f"{API}/repos/{self.repo}",
                    html_url=f"https://github.com/{self.repo}",
                    permissions={lv: i <= have for i, lv in enumerate(levels)})
        repo["owner"] = {**repo["owner"], "login": owner}
        return self.json_response(200, repo)

    def _search(self, request: httpx.Request) -> httpx.Response:
        q = request.url.params.get("q", "")
        words = [w for w in q.split() if ":" not in w]
        items = []
        for i in self.issues.values():
            texts = [i["title"], i.get("body") or ""] + [c["body"] for c in self.comments_of(i["number"])]
            hay = " ".join(texts).lower()
            if all(w.lower().strip('"') in hay for w in words):
                items.append({**self._public(i), "score": 1.0})
        return self.json_response(200, {"total_count": len(items), "incomplete_results": False, "items": items,
                                        "search_type": "lexical"})
