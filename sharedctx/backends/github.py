"""GitHub Issues: a case is an issue, each entry one comment (or several numbered comments when long).

Binding, in order: the thread already recorded in `case.bindings[<name>]`; `case.labels["github.issue"]`
(an issue number or URL, e.g. given by the alert); an issue we created earlier for this case (found by the
hidden `<!-- sharedctx:case:<id> -->` marker among recent issues carrying our labels, so `bind` is safe to
repeat after an ambiguous create); otherwise a new issue with the configured labels.

Rate limits: content-creating requests (issue, comment, edits) go through a sliding-window pacer sized to
GitHub's guidance (80/min, 500/h). With a store (`make_backend(..., limits=store)`, as `SharedContext`
builds backends) the budget is counted in the store, one per API host and token, so every process on that
store shares it. A secondary-limit answer (403/429 + `retry-after`, else >= 60 s) or an exhausted primary
budget (`x-ratelimit-remaining: 0` until `x-ratelimit-reset`) raises `Retryable(retry_after=...)` and holds
the budget, so every thread and process using this token backs off too.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from ..config import BackendSettings
from ..errors import Rejected
from ..model import Author, CaseRecord, Entry, ExternalRef
from ..render import (
    CASE_MARK,
    RESOLVED_MARK,
    CopyPart,
    assemble,
    github_part,
    human_markdown,
    is_own_echo,
    parse_github,
    render_parts,
)
from .base import Check, Hit, HumanItem, ReadBack, ThreadRef
from .http import (
    budget_key,
    call,
    check,
    json_of,
    make_pacer,
    new_client,
    parse_retry_after,
    rate_scale,
    secret,
    send,
)
from .setup_check import Stop, fetch, json_body, run, says

if TYPE_CHECKING:
    from ..store.base import RateLimits

SERVICE = "GitHub"
AUTH_HINT = (
    "Check that the token in the configured environment variable is valid and may write issues in the repo "
    "(fine-grained token: Issues read/write, Metadata read; classic: `repo` or `public_repo`)."
)
# An issue URL, on github.com or the API (`.../repos/owner/name/issues/N`): the repo it names, and its number
ISSUE_URL = re.compile(r"/(?:repos/)?([\w.-]+/[\w.-]+)/issues/(\d+)/?$")
# What a repo recorded in a binding may be before it becomes part of a URL: owner/name, no dot segment
REPO_NAME = re.compile(r"(?!\.\.?/)[A-Za-z0-9_.-]+/(?!\.\.?$)[A-Za-z0-9_.-]+")
PERMISSION_LEVELS = {"none": 0, "read": 1, "triage": 2, "write": 3, "maintain": 4, "admin": 5}


class GitHubOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    repo: str = Field(pattern=r"^[\w.-]+/[\w.-]+$", description="owner/name")
    token: str = Field(description='secret reference, e.g. "env:GITHUB_TOKEN"')
    base_url: str = Field("https://api.github.com", description="GitHub Enterprise: https://HOST/api/v3")
    labels: list[str] = Field(default_factory=lambda: ["sharedctx", "incident"])
    max_comment_chars: int = Field(65_000, ge=2_000, le=65_536, description="GitHub's limit is 65,536")
    per_minute: int = Field(80, ge=1, description="content-creating requests per minute (GitHub guidance)")
    per_hour: int = Field(500, ge=1, description="content-creating requests per hour (GitHub guidance)")
    max_block: float = Field(2.0, ge=0, description="longest pacing wait spent blocking; longer -> Retryable")
    pacing_margin: float = Field(1.0, ge=0, description="seconds added to each pacing window: requests reach GitHub "
                                 "a variable time after the pacer admits them, and may arrive out of order")
    timeout: float = Field(30.0, gt=0)
    read_reactions: bool = Field(True, description="read 👍/👎 on our comments back (humans in the loop)")
    read_status: bool = Field(True, description="read a human closing the issue back as a resolution")
    permission_ttl: float = Field(300.0, ge=0, description="seconds a collaborator's permission is cached")
    decide_permission: Literal["triage", "write", "maintain", "admin"] = Field(
        "write", description="the repository permission a person needs to answer a decision request")


class GitHubBackend:
    """Entries as GitHub issue comments; the hidden HTML comment carries the machine copy."""

    type: ClassVar[str] = "github"
    Options = GitHubOptions
    shares_budgets: ClassVar[bool] = True  # make_backend passes the store as `limits`

    def __init__(self, name: str, options: GitHubOptions, *, client: httpx.Client | None = None,
                 limits: RateLimits | None = None, clock: Callable[[], float] | None = None,
                 sleep: Callable[[float], None] | None = None) -> None:
        """`limits`: the store that counts the shared budget (None: this process only). `clock`/`sleep`
        drive the pacer (a bench runs it on a scaled clock; by default `SHAREDCTX_RATE_SCALE` decides)."""
        self.name = name
        self.options = options
        self._client = client or new_client(options.timeout)
        self._owns_client = client is None
        self._api = f"{options.base_url.rstrip('/')}/repos/{options.repo}"
        margin = options.pacing_margin
        # GitHub's own waits (retry-after) are in its seconds; on a scaled clock, in real ones for the worker
        self._time_scale = 1.0 if clock is not None else rate_scale()
        self.pacer = make_pacer([(options.per_minute, 60.0 + margin), (options.per_hour, 3600.0 + margin)],
                                store=limits, key=self._budget_key, max_block=options.max_block,
                                clock=clock, sleep=sleep)
        self._etags: dict[str, tuple[str, Any]] = {}  # url?query -> (ETag, body) for conditional reads
        self._perms: dict[str, tuple[float, str]] = {}
        # the account(s) our token writes as, learned from what we post and read back: never a person
        self.own_logins: set[str] = set()
        self.conditional_hits = 0  # 304 answers: free against the primary rate limit

    @classmethod
    def from_settings(cls, settings: BackendSettings, *, client: httpx.Client | None = None) -> GitHubBackend:
        return cls(settings.name, GitHubOptions.model_validate(settings.options), client=client)

    # ---- HTTP -------------------------------------------------------------------------------------
    def _budget_key(self) -> str:
        """GitHub counts secondary limits per account; one token is one account (two tokens of one
        account would share GitHub's budget but not ours: keep one token per account)."""
        return budget_key("github", "content", self.options.base_url.rstrip("/"),
                          secret(self.options.token, service=SERVICE))

    def _rate_limited(self, resp: httpx.Response) -> float | None:
        if resp.status_code not in (403, 429):
            return None
        wait = parse_retry_after(resp.headers.get("retry-after"))
        if wait is None and resp.headers.get("x-ratelimit-remaining") == "0":
            wait = max(1.0, float(resp.headers.get("x-ratelimit-reset", "0") or 0) - time.time())
        if wait is None and (resp.status_code == 429 or "rate limit" in resp.text.lower()):
            wait = 60.0  # GitHub: without retry-after, wait at least one minute
        if wait is None:
            return None
        self.pacer.hold(wait, f"GitHub answered {resp.status_code} (rate limit) to {resp.request.method}")
        return wait / self._time_scale

    def _call(self, method: str, path: str, *, not_found: str | None = None, **kw: Any) -> Any:
        headers = {
            "Authorization": f"Bearer {secret(self.options.token, service=SERVICE)}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }
        if method != "GET":
            self.pacer.acquire()
        url = path if path.startswith("http") else self._api + path
        # A renamed or transferred repo answers its old name with a redirect (301, 307 for writes), and the
        # cases bound before keep that name (`_repo_of`): follow it, as GitHub asks clients to. httpx drops
        # the token on a redirect to another host. (`check` reads without following, to report the rename.)
        return call(self._client, method, url, service=SERVICE, auth_hint=AUTH_HINT, not_found=not_found,
                    is_rate_limited=self._rate_limited, headers=headers, follow_redirects=True, **kw)

    @property
    def home_scope(self) -> str:
        """Where a thread whose binding recorded no repo lives (`_repo_of`'s fallback): the webhook receiver
        scopes such bindings, and events that name no repo, to it."""
        return self.options.repo

    def _repo_of(self, thread: ThreadRef) -> str:
        """The repo a thread lives in: the one recorded when the case was bound. After `repo` changes in the
        config, new cases open in the new repo, while the older cases' issues stay where they are; issue
        numbers are per repo, so the configured repo would name another issue (or none)."""
        # only a plain owner/name: `../user` or `a/b?x=` would send our token's writes to another API path
        return thread.lives_in("repo", REPO_NAME.fullmatch, self.options.repo)

    def _in_repo(self, thread: ThreadRef, path: str) -> str:
        """The URL of `path` in the repo a bound thread lives in."""
        return f"{self.options.base_url.rstrip('/')}/repos/{self._repo_of(thread)}{path}"

    def _issue(self, thread: ThreadRef, tail: str = "") -> str:
        return self._in_repo(thread, f"/issues/{thread.id}{tail}")

    def _gone(self, thread: ThreadRef) -> str:
        return f"issue #{thread.id} in {self._repo_of(thread)} no longer exists (deleted, transferred or hidden)"

    def _get_cached(self, path: str, *, not_found: str | None = None, params: dict[str, Any] | None = None) -> Any:
        """A conditional GET: send the last ETag; on 304 reuse the body we have. Polling an unchanged thread
        then costs no rate-limit budget (GitHub does not count 304s against the primary limit)."""
        url = path if path.startswith("http") else self._api + path
        key = url + "?" + "&".join(f"{k}={v}" for k, v in sorted((params or {}).items()))
        headers = {
            "Authorization": f"Bearer {secret(self.options.token, service=SERVICE)}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }
        cached = self._etags.get(key)
        if cached:
            headers["If-None-Match"] = cached[0]
        resp = send(self._client, "GET", url, service=SERVICE, headers=headers, params=params,
                    follow_redirects=True)  # a renamed repo: see `_call`
        if resp.status_code == 304 and cached:
            self.conditional_hits += 1
            return cached[1]
        check(resp, service=SERVICE, auth_hint=AUTH_HINT, not_found=not_found, is_rate_limited=self._rate_limited)
        data = json_of(resp, service=SERVICE) if resp.content else None
        if resp.headers.get("etag"):
            if len(self._etags) > 4096:
                self._etags.clear()
            self._etags[key] = (resp.headers["etag"], data)
        return data

    def permission(self, login: str) -> str:
        """The user's permission on the repo (admin, maintain, write, triage, read, none), cached briefly.

        Humans in the loop use it to decide who may approve: the REST endpoint answers `permission`
        (legacy admin/write/read/none) and `role_name` (adds maintain/triage); the finer one is used.
        A user who is not a collaborator gets 404 here, which means "none"."""
        now = time.monotonic()
        hit = self._perms.get(login)
        if hit and now - hit[0] < self.options.permission_ttl:
            return hit[1]
        try:
            data = self._call("GET", f"/collaborators/{login}/permission", not_found=f"{login} is not a collaborator")
            level = str(data.get("role_name") or data.get("permission") or "none")
        except Rejected:
            level = "none"
        self._perms[login] = (now, level)
        return level

    def _learn(self, posted: dict[str, Any] | None) -> None:
        login = ((posted or {}).get("user") or {}).get("login")
        if login:
            self.own_logins.add(str(login))

    def authorize(self, item: HumanItem) -> tuple[bool, str] | None:
        """`Authorizes`: a person may decide with `decide_permission` (write by default) or more on the repo.

        The rule returned is recorded in the decision, so the journal says why this person could decide.
        A failed lookup raises its `BackendError`: the caller refuses and says it could not check.
        """
        if item.author.name in self.own_logins:  # our token's account: an agent could post as it
            return False, f"github:{item.author.name} is the account sharedctx writes as, not a person"
        need = self.options.decide_permission
        level = self.permission(item.author.name)
        ok = PERMISSION_LEVELS.get(level, 0) >= PERMISSION_LEVELS[need]
        return ok, f"github:permission>={need} ({level})"

    def _comments(self, thread: ThreadRef, *, conditional: bool = False) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            get = self._get_cached if conditional else (lambda p, **kw: self._call("GET", p, **kw))
            batch = get(self._issue(thread, "/comments"), not_found=self._gone(thread),
                        params={"per_page": 100, "page": page})
            out += batch or []
            if not batch or len(batch) < 100:
                return out
            page += 1

    # ---- Backend -----------------------------------------------------------------------------------
    def bind(self, case: CaseRecord) -> ThreadRef:
        bound = case.bindings.get(self.name)
        if bound and bound.get("id"):
            return ThreadRef.model_validate({"backend": self.name, **bound})
        given = case.labels.get("github.issue")
        if given:
            m = ISSUE_URL.search(given)
            if m and m.group(1).lower() != self.options.repo.lower():
                # issue numbers are per repo: our #N would be someone else's thread, and the case's journal
                # would be posted into it
                raise Rejected(f"label github.issue={given!r} names an issue in another repo ({m.group(1)}); "
                               f"this backend writes to {self.options.repo}")
            number = m.group(2) if m else given.strip().lstrip("#")
            if not number.isdigit():
                raise Rejected(f"label github.issue={given!r} is neither an issue number nor an issue URL")
            issue = self._call("GET", f"/issues/{number}",
                               not_found=f"issue #{number} given for case {case.id} does not exist")
            return self._thread(issue)
        mark = f"<!-- {CASE_MARK}:{case.id} -->"
        recent = self._call("GET", "/issues", params={"labels": ",".join(self.options.labels), "state": "all",
                                                      "sort": "created", "direction": "desc", "per_page": 100})
        for issue in recent or []:
            if mark in (issue.get("body") or ""):
                return self._thread(issue)
        body = (f"Incident case `{case.id}` ({case.severity}{', ' + case.service if case.service else ''}), "
                f"opened by sharedctx. Agents and people append to this thread.\n\n{mark}")
        issue = self._call("POST", "/issues", json={"title": f"[{case.severity}] {case.title}"[:256],
                                                     "body": body, "labels": self.options.labels})
        self._learn(issue)
        return self._thread(issue)

    def _thread(self, issue: dict[str, Any]) -> ThreadRef:
        return ThreadRef(backend=self.name, id=str(issue["number"]), url=issue.get("html_url"),
                         repo=self.options.repo)

    def render(self, entry: Entry) -> list[str]:
        return render_parts(entry, human_markdown(entry), self.options.max_comment_chars, github_part, len)

    def _parts(self, thread: ThreadRef, entry_id: str) -> dict[int, CopyPart]:
        found: dict[int, CopyPart] = {}
        for c in self._comments(thread):
            p = parse_github(c.get("body") or "")
            if p and p[0] == entry_id:
                found.setdefault(p[1], CopyPart(*p, external_id=str(c["id"]), url=c.get("html_url")))
        return found

    def append(self, thread: ThreadRef, entry: Entry) -> ExternalRef:
        parts = self.render(entry)
        # A multi-part entry may have been half-written before a failure: send only the missing parts.
        have = self._parts(thread, entry.id) if len(parts) > 1 else {}
        ids: list[str] = []
        urls: list[str | None] = []
        for k, body in enumerate(parts, 1):
            if k in have:
                ids.append(have[k].external_id)
                urls.append(have[k].url)
                continue
            c = self._call("POST", self._issue(thread, "/comments"), json={"body": body},
                           not_found=self._gone(thread))
            self._learn(c)
            ids.append(str(c["id"]))
            urls.append(c.get("html_url"))
        return ExternalRef(backend=self.name, id=ids[0], url=urls[0], parts=ids)

    def lookup(self, thread: ThreadRef, entry_id: str) -> ExternalRef | None:
        found = self._parts(thread, entry_id)
        if not found or len(found) != next(iter(found.values())).total:
            return None  # none, or only some parts: `append` sends the missing ones
        ordered = [found[k] for k in sorted(found)]
        return ExternalRef(backend=self.name, id=ordered[0].external_id, url=ordered[0].url,
                           parts=[p.external_id for p in ordered])

    def read_back(self, thread: ThreadRef, since: str | None = None) -> ReadBack:
        after = int(since) if since and since.isdigit() else 0
        parts: list[CopyPart] = []
        humans: list[HumanItem] = []
        last = after
        comments = self._comments(thread, conditional=True)
        for c in comments:
            cid, body = int(c["id"]), c.get("body") or ""
            last = max(last, cid)
            p = parse_github(body)
            if p or is_own_echo(body):
                self._learn(c)
            if p:
                parts.append(CopyPart(*p, external_id=str(cid), url=c.get("html_url"), position=cid))
                if p[1] == 1 and self.options.read_reactions:
                    humans += self._reactions(thread, c, p[0])
            elif cid > after and not is_own_echo(body):
                login = (c.get("user") or {}).get("login") or "unknown"
                humans.append(HumanItem(backend=self.name, external_id=str(cid), url=c.get("html_url"),
                                        author=Author(kind="human", name=login), at=c["created_at"],
                                        text=body, raw={"author_association": c.get("author_association")}))
        if self.options.read_status:
            humans += self._closed_by_human(thread, comments)
        got = assemble(parts)
        entries = [e for e in got.entries if max(int(p.external_id) for p in got.refs[e.id]) > after]
        return ReadBack(entries=entries, humans=humans, cursor=str(last) if last else since)

    def _reactions(self, thread: ThreadRef, comment: dict[str, Any], entry_id: str) -> list[HumanItem]:
        """👍/👎 on one of our comments, as human items answering its entry. Only fetched when the
        comment's reaction rollup (part of the comment list) shows some, so a quiet thread costs nothing.
        Reactions have no cursor: every one is returned each time, and the caller dedupes on the id."""
        rollup = comment.get("reactions") or {}
        if not (rollup.get("+1") or rollup.get("-1")):
            return []
        items = []
        url = self._in_repo(thread, f"/issues/comments/{comment['id']}/reactions")
        for r in self._get_cached(url, params={"per_page": 100}) or []:
            if r.get("content") not in ("+1", "-1"):
                continue
            login = (r.get("user") or {}).get("login") or "unknown"
            items.append(HumanItem(backend=self.name, external_id=f"reaction:{r['id']}", kind="reaction",
                                   author=Author(kind="human", name=login), at=r["created_at"], text=r["content"],
                                   url=comment.get("html_url"), in_reply_to=entry_id,
                                   raw={"comment_id": comment["id"], "login": login}))
        return items

    def _closed_by_human(self, thread: ThreadRef, comments: list[dict[str, Any]]) -> list[HumanItem]:
        """A closed issue without our resolution note was closed by a person: a human resolution."""
        issue = self._get_cached(self._issue(thread), not_found=self._gone(thread))
        if not issue or issue.get("state") != "closed":
            return []
        if any(f"<!-- {RESOLVED_MARK}" in (c.get("body") or "") for c in comments):
            return []
        login = (issue.get("closed_by") or {}).get("login") or "unknown"
        at = issue.get("closed_at") or issue.get("updated_at") or ""
        return [HumanItem(backend=self.name, external_id=f"closed:{thread.id}:{at}", kind="status", text="closed",
                          author=Author(kind="human", name=login), at=at, url=issue.get("html_url"),
                          raw={"state_reason": issue.get("state_reason"), "login": login})]

    def search(self, text: str, limit: int = 20) -> list[Hit]:
        q = f"{text} repo:{self.options.repo} is:issue" + "".join(f' label:"{lb}"' for lb in self.options.labels[:1])
        data = self._call("GET", f"{self.options.base_url.rstrip('/')}/search/issues",
                          params={"q": q, "per_page": max(1, min(limit, 100))})
        hits = []
        for item in (data or {}).get("items", [])[:limit]:
            m = re.search(rf"<!-- {CASE_MARK}:(\S+) -->", item.get("body") or "")
            hits.append(Hit(backend=self.name, case_id=m.group(1) if m else None, thread_id=str(item["number"]),
                            title=item.get("title", ""), snippet=(item.get("body") or "")[:200],
                            url=item.get("html_url")))
        return hits

    def resolve(self, thread: ThreadRef, summary: Entry) -> None:
        issue = self._call("GET", self._issue(thread), not_found=self._gone(thread))
        if issue.get("state") == "closed":
            return
        mark = f"<!-- {RESOLVED_MARK}:{summary.id} -->"
        if not any(mark in (c.get("body") or "") for c in self._comments(thread)):
            body = f"**Resolved** — {summary.title} (summary entry `{summary.id}`)\n\n{mark}"
            self._call("POST", self._issue(thread, "/comments"), json={"body": body}, not_found=self._gone(thread))
        self._call("PATCH", self._issue(thread), json={"state": "closed", "state_reason": "completed"},
                   not_found=self._gone(thread))

    # ---- Checkable (`sharedctx backends check`) ------------------------------------------------------
    def check(self) -> list[Check]:
        """Token, repository, issues enabled, the token user's permission, classic-token scopes. Reads only."""
        return run(self._check_steps)

    def _check_get(self, url: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {secret(self.options.token, service=SERVICE)}",
                   "Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        return self._client.get(url, headers=headers, **kw)

    def _check_steps(self, out: list[Check]) -> None:
        o = self.options
        root = o.base_url.rstrip("/")
        me = fetch(self._check_get, f"{root}/user", "credentials")
        if me.status_code == 401:
            raise Stop(Check(what="credentials", ok=False, detail=(
                f"GitHub refused the token in {o.token} {says(me)}: it is wrong, expired or revoked. Create a new "
                "token (fine-grained: Issues read/write and Metadata read on the repo; classic: `repo`) and put it "
                "in that variable")))
        login = None
        if me.status_code == 200:
            login = json_body(me, "credentials").get("login")
            out.append(Check(what="credentials", ok=True, detail=f"the token belongs to {login}"))
        elif me.status_code == 403:  # a GitHub App installation token may not read /user
            out.append(Check(what="credentials", ok=True, detail="the token is valid (it may not read /user: an "
                             "app installation token?)"))
        else:
            raise Stop(Check(what="credentials", ok=False, detail=f"GET /user failed {says(me)}"))
        repo = fetch(self._check_get, self._api, "repository")
        if repo.status_code in (301, 302, 307):
            raise Stop(Check(what="repository", ok=False, detail=(
                f"{o.repo} was renamed or transferred (GitHub redirects to {repo.headers.get('location')}); set "
                "`repo` to its new owner/name")))
        if repo.status_code in (403, 404):
            raise Stop(Check(what="repository", ok=False, detail=(
                f"{o.repo} does not exist, or the token cannot see it {says(repo)}. Check `repo` (owner/name); a "
                "fine-grained token must list the repo under Repository access, a classic token needs `repo` for "
                "a private repo")))
        if repo.status_code != 200:
            raise Stop(Check(what="repository", ok=False, detail=f"GET /repos/{o.repo} failed {says(repo)}"))
        data = json_body(repo, "repository")
        private = bool(data.get("private"))
        if data.get("archived"):
            raise Stop(Check(what="repository", ok=False, detail=(
                f"{o.repo} is archived (read-only): GitHub refuses new issues and comments. Unarchive it or set "
                "another `repo`")))
        if not data.get("has_issues", True):
            raise Stop(Check(what="repository", ok=False, detail=(
                f"{o.repo} has Issues disabled: enable them (Settings -> General -> Features -> Issues)")))
        out.append(Check(what="repository", ok=True, detail=f"{data.get('full_name')} exists "
                         f"({'private' if private else 'public'}) and has Issues enabled"))
        out.append(self._check_permission(data, login))
        out.append(self._check_scopes(me, private))

    def _check_permission(self, repo: dict[str, Any], login: str | None) -> Check:
        """Creating issues and comments needs read (public repo), but labels are silently dropped and closing
        an issue is refused below triage: sharedctx needs triage or more."""
        perms = repo.get("permissions")
        who = login or "the token's user"
        if not isinstance(perms, dict):
            return Check(what="permission", ok=True, detail=(
                f"GitHub did not say what {who} may do in {self.options.repo} (app token?); it needs Issues write"))
        level = next((lv for lv in ("admin", "maintain", "push", "triage", "pull") if perms.get(lv)), "none")
        shown = {"push": "write", "pull": "read"}.get(level, level)
        if level in ("admin", "maintain", "push", "triage"):
            return Check(what="permission", ok=True, detail=f"{who} has {shown} access: may open, comment on, "
                         "label and close issues")
        return Check(what="permission", ok=False, detail=(
            f"{who} has only {shown} access to {self.options.repo}: GitHub would silently drop the labels sharedctx "
            "sets and refuse to close issues on resolve. Give it triage or write access (repo Settings -> "
            "Collaborators and teams)"))

    def _check_scopes(self, resp: httpx.Response, private: bool) -> Check:
        """Classic tokens say their scopes in `X-OAuth-Scopes`; fine-grained and app tokens say nothing."""
        header = resp.headers.get("x-oauth-scopes")
        if header is None:
            return Check(what="scopes", ok=True, detail=(
                "fine-grained or app token: GitHub does not list its permissions; it needs Issues: Read and write "
                "and Metadata: Read on the repo (a missing one shows as 403 on the first write)"))
        have = {x.strip() for x in header.split(",") if x.strip()}
        if "repo" in have or (not private and "public_repo" in have):
            return Check(what="scopes", ok=True, detail=f"classic token with {', '.join(sorted(have))}")
        need = "repo" if private else "repo or public_repo"
        return Check(what="scopes", ok=False, detail=(
            f"the classic token has scopes {', '.join(sorted(have)) or 'none'}; writing issues in a "
            f"{'private' if private else 'public'} repo needs {need}. Regenerate it with that scope"))

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

