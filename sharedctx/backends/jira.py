"""Jira: a case is an issue in a configured project; each entry one comment (several numbered comments
when long); resolving performs a configured transition.

Cloud (REST v3, default) takes comment bodies as Atlassian Document Format: the Markdown body becomes ADF
and the machine copy sits in a collapsed `expand` node titled with the marker. Data Center / v2
(`api_version = 2`) takes wiki markup: the copy sits in a trailing `{noformat}` block.

Binding, in order: `case.bindings[<name>]`; `case.labels["jira.issue"]` (an issue key such as `OPS-42`);
an issue labelled `sharedctx-case-<case id>` (so `bind` is safe to repeat after an ambiguous create);
otherwise a new issue with that label. Comment limit: Jira rejects bodies over 32,767 characters; parts
are kept to `max_comment_chars` (default 30,000, measured on the serialized ADF / wiki text).
"""

from __future__ import annotations

import base64
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
    adf_part,
    adf_size,
    assemble,
    human_markdown,
    is_own_echo,
    markdown_to_adf,
    parse_adf,
    parse_wiki,
    render_parts,
    wiki_part,
)
from .base import Check, Hit, HumanItem, ReadBack, ThreadRef
from .http import call, new_client, secret
from .setup_check import Stop, fetch, json_body, run, says

SERVICE = "Jira"
AUTH_HINT = ("Check the API token (Cloud: email + API token of a user with Browse projects, Create issues, "
             "Add comments and Transition issues in the project; Data Center: a personal access token).")
CASE_LABEL = "sharedctx-case-"


class JiraOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base_url: str = Field(pattern=r"^https?://", description="e.g. https://acme.atlassian.net")
    project: str = Field(pattern=r"^[A-Z][A-Z0-9_]+$", description="project key")
    email: str | None = Field(None, description="Cloud: the account email (basic auth with api_token)")
    api_token: str | None = Field(None, description='Cloud API token reference, e.g. "env:JIRA_TOKEN"')
    token: str | None = Field(None, description='Data Center personal access token reference (Bearer)')
    api_version: Literal[2, 3] = 3
    issue_type: str = "Task"
    labels: list[str] = Field(default_factory=lambda: ["sharedctx", "incident"])
    resolve_transition: str = Field("Done", description="transition name or id performed on resolve")
    max_comment_chars: int = Field(30_000, ge=2_000, le=32_767)
    timeout: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _auth(self) -> JiraOptions:
        if not self.token and not (self.email and self.api_token):
            # "<key>: ..." lets make_backend name `backends.<name>.<key>`
            missing = "email" if self.api_token else "api_token"
            raise ValueError(f"{missing}: set either `email` and `api_token` (Cloud), or `token` (Data Center PAT)")
        return self


class JiraBackend:
    """Entries as Jira comments (ADF on v3, wiki markup on v2), each carrying its machine copy."""

    type: ClassVar[str] = "jira"
    Options = JiraOptions

    def __init__(self, name: str, options: JiraOptions, *, client: httpx.Client | None = None) -> None:
        self.name = name
        self.options = options
        self._client = client or new_client(options.timeout)
        self._owns_client = client is None
        self._site = options.base_url.rstrip("/")
        self._api = f"{self._site}/rest/api/{options.api_version}"
        self._v3 = options.api_version == 3

    @classmethod
    def from_settings(cls, settings: BackendSettings, *, client: httpx.Client | None = None) -> JiraBackend:
        return cls(settings.name, JiraOptions.model_validate(settings.options), client=client)

    def _call(self, method: str, path: str, *, not_found: str | None = None, **kw: Any) -> Any:
        o = self.options
        if o.token:
            auth = f"Bearer {secret(o.token, service=SERVICE)}"
        else:
            pair = f"{o.email}:{secret(o.api_token or '', service=SERVICE)}".encode()
            auth = "Basic " + base64.b64encode(pair).decode()
        headers = {"Authorization": auth, "Accept": "application/json", "Content-Type": "application/json"}
        return call(self._client, method, self._api + path, service=SERVICE, auth_hint=AUTH_HINT,
                    not_found=not_found, headers=headers, **kw)

    def _gone(self, thread: ThreadRef) -> str:
        return f"issue {thread.id} no longer exists (deleted, moved, or no longer visible to this user)"

    def _thread(self, key: str) -> ThreadRef:
        return ThreadRef(backend=self.name, id=key, url=f"{self._site}/browse/{key}")

    def _body(self, markdown: str) -> Any:
        return markdown_to_adf(markdown) if self._v3 else markdown

    def _search(self, jql: str, limit: int, fields: list[str]) -> list[dict[str, Any]]:
        if self._v3:
            data = self._call("POST", "/search/jql", json={"jql": jql, "maxResults": limit, "fields": fields})
        else:
            data = self._call("GET", "/search", params={"jql": jql, "maxResults": limit, "fields": ",".join(fields)})
        return list((data or {}).get("issues") or [])

    def bind(self, case: CaseRecord) -> ThreadRef:
        bound = case.bindings.get(self.name)
        if bound and bound.get("id"):
            return ThreadRef.model_validate({"backend": self.name, **bound})
        given = case.labels.get("jira.issue")
        if given:
            issue = self._call("GET", f"/issue/{given}", params={"fields": "summary"},
                               not_found=f"issue {given} given for case {case.id} does not exist")
            return self._thread(issue["key"])
        label = CASE_LABEL + case.id
        found = self._search(f'project = "{self.options.project}" AND labels = "{label}"', 1, ["summary"])
        if found:
            return self._thread(found[0]["key"])
        desc = f"Incident case {case.id} ({case.severity}, {case.service or 'no service'}), opened by sharedctx."
        created = self._call("POST", "/issue", json={"fields": {
            "project": {"key": self.options.project}, "issuetype": {"name": self.options.issue_type},
            "summary": f"[{case.severity}] {case.title}"[:255], "labels": [*self.options.labels, label],
            "description": self._body(desc)}})
        return self._thread(created["key"])

    def render(self, entry: Entry) -> list[Any]:
        human = human_markdown(entry)
        if self._v3:
            return render_parts(entry, human, self.options.max_comment_chars, adf_part, adf_size)
        return render_parts(entry, human, self.options.max_comment_chars, wiki_part, len)

    def _parse(self, comment: dict[str, Any]) -> tuple[str, int, int, str] | None:
        body = comment.get("body")
        return parse_adf(body) if isinstance(body, dict) else parse_wiki(str(body or ""))

    def _comments(self, thread: ThreadRef) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            page = self._call("GET", f"/issue/{thread.id}/comment", not_found=self._gone(thread),
                              params={"startAt": len(out), "maxResults": 100, "orderBy": "created"})
            batch = page.get("comments") or []
            out += batch
            if not batch or len(out) >= int(page.get("total", len(out))):
                return out

    def _url(self, thread: ThreadRef, comment_id: str) -> str:
        return f"{self._site}/browse/{thread.id}?focusedCommentId={comment_id}"

    def _parts(self, thread: ThreadRef, entry_id: str) -> dict[int, CopyPart]:
        found: dict[int, CopyPart] = {}
        for c in self._comments(thread):
            p = self._parse(c)
            if p and p[0] == entry_id:
                found.setdefault(p[1], CopyPart(*p, external_id=str(c["id"]), url=self._url(thread, c["id"])))
        return found

    def append(self, thread: ThreadRef, entry: Entry) -> ExternalRef:
        parts = self.render(entry)
        have = self._parts(thread, entry.id) if len(parts) > 1 else {}
        ids = []
        for k, body in enumerate(parts, 1):
            if k in have:
                ids.append(have[k].external_id)
                continue
            c = self._call("POST", f"/issue/{thread.id}/comment", json={"body": body}, not_found=self._gone(thread))
            ids.append(str(c["id"]))
        return ExternalRef(backend=self.name, id=ids[0], url=self._url(thread, ids[0]), parts=ids)

    def lookup(self, thread: ThreadRef, entry_id: str) -> ExternalRef | None:
        found = self._parts(thread, entry_id)
        if not found or len(found) != next(iter(found.values())).total:
            return None
        ids = [found[k].external_id for k in sorted(found)]
        return ExternalRef(backend=self.name, id=ids[0], url=self._url(thread, ids[0]), parts=ids)

    def read_back(self, thread: ThreadRef, since: str | None = None) -> ReadBack:
        cursor = TimeCursor(since)
        parts: list[CopyPart] = []
        fresh: set[str] = set()
        humans: list[HumanItem] = []
        for c in self._comments(thread):
            cid = str(c["id"])
            at = format_ts(parse_ts(_iso(c["created"])))
            new = cursor.is_new(at, cid)
            p = self._parse(c)
            if p:
                parts.append(CopyPart(*p, external_id=cid, url=self._url(thread, cid), position=at))
                if new:
                    fresh.add(p[0])
                continue
            text = _plain(c.get("body"))
            if new and not is_own_echo(text, c.get("body")):
                who = (c.get("author") or {}).get("displayName") or "unknown"
                user = c.get("author") or {}
                humans.append(HumanItem(backend=self.name, external_id=cid, at=at, text=text,
                                        url=self._url(thread, cid), author=Author(kind="human", name=who),
                                        raw={"user_id": user.get("accountId"), "email": user.get("emailAddress")}))
        got = assemble(parts)
        return ReadBack(entries=[e for e in got.entries if e.id in fresh], humans=humans,
                        cursor=cursor.next() or since)

    def search(self, text: str, limit: int = 20) -> list[Hit]:
        phrase = re.sub(r'["\\]', " ", text).strip()
        jql = f'project = "{self.options.project}" AND labels = "sharedctx" AND text ~ "{phrase}"'
        hits = []
        for issue in self._search(jql, max(1, min(limit, 100)), ["summary", "labels"]):
            fields = issue.get("fields") or {}
            case = next((lb[len(CASE_LABEL):] for lb in fields.get("labels") or [] if lb.startswith(CASE_LABEL)), None)
            hits.append(Hit(backend=self.name, case_id=case, thread_id=issue["key"], title=fields.get("summary", ""),
                            url=self._thread(issue["key"]).url))
        return hits

    def resolve(self, thread: ThreadRef, summary: Entry) -> None:
        issue = self._call("GET", f"/issue/{thread.id}", params={"fields": "status"}, not_found=self._gone(thread))
        status = ((issue.get("fields") or {}).get("status") or {})
        if (status.get("statusCategory") or {}).get("key") == "done":
            return
        want = self.options.resolve_transition
        options = self._call("GET", f"/issue/{thread.id}/transitions", not_found=self._gone(thread))
        match = [t for t in options.get("transitions") or [] if want in (t.get("id"), t.get("name"))]
        if not match:
            names = ", ".join(str(t.get("name")) for t in options.get("transitions") or []) or "none"
            raise Rejected(f"{SERVICE}: issue {thread.id} has no transition {want!r} (available: {names}); "
                           "set resolve_transition")
        note = f"**Resolved** — {summary.title} (sharedctx entry `{summary.id}`) [{RESOLVED_MARK}:{summary.id}]"
        if not any(f"{RESOLVED_MARK}:{summary.id}" in _plain(c.get("body")) for c in self._comments(thread)):
            self._call("POST", f"/issue/{thread.id}/comment", json={"body": self._body(note)})
        self._call("POST", f"/issue/{thread.id}/transitions", json={"transition": {"id": match[0]["id"]}})

    # ---- Checkable (`sharedctx backends check`) ------------------------------------------------------
    def check(self) -> list[Check]:
        """Credentials, project, issue type, project permissions, the resolve transition. Reads only."""
        return run(self._check_steps)

    def _check_get(self, url: str, **kw: Any) -> httpx.Response:
        o = self.options
        if o.token:
            auth = f"Bearer {secret(o.token, service=SERVICE)}"
        else:
            pair = f"{o.email}:{secret(o.api_token or '', service=SERVICE)}".encode()
            auth = "Basic " + base64.b64encode(pair).decode()
        return self._client.get(url, headers={"Authorization": auth, "Accept": "application/json"}, **kw)

    def _check_steps(self, out: list[Check]) -> None:
        o = self.options
        me = fetch(self._check_get, f"{self._api}/myself", "credentials")
        if me.status_code in (401, 403):
            who = f"the token in {o.token}" if o.token else f"{o.email} with the API token in {o.api_token}"
            raise Stop(Check(what="credentials", ok=False, detail=(
                f"Jira refused {who} {says(me)}: the token is wrong, expired or revoked, or (Cloud) the email is "
                "not the token owner's. Create a new API token and put it in that variable")))
        if me.status_code != 200:
            raise Stop(Check(what="credentials", ok=False, detail=f"GET /myself failed {says(me)}"))
        user = json_body(me, "credentials")
        out.append(Check(what="credentials", ok=True, detail=f"signed in as {user.get('displayName')}"))
        proj = fetch(self._check_get, f"{self._api}/project/{o.project}", "project")
        if proj.status_code == 404:
            raise Stop(Check(what="project", ok=False, detail=(
                f"project {o.project} does not exist, or {user.get('displayName')} may not browse it {says(proj)}: "
                "set `project` to the project key (the prefix of its issue keys) or grant Browse projects")))
        if proj.status_code != 200:
            raise Stop(Check(what="project", ok=False, detail=f"GET /project/{o.project} failed {says(proj)}"))
        project = json_body(proj, "project")
        out.append(Check(what="project", ok=True, detail=f"{o.project} is {project.get('name')}"))
        types = [str(t.get("name")) for t in project.get("issueTypes") or [] if not t.get("subtask")]
        out.append(Check(what="issue type", ok=o.issue_type in types, detail=(
            f"{o.issue_type!r} is an issue type of {o.project}" if o.issue_type in types else
            f"{o.issue_type!r} is not an issue type of {o.project}: Jira would refuse to create issues. Types: "
            f"{', '.join(types) or 'none'}; set issue_type")))
        out.append(self._check_permissions())
        out.append(self._check_transition())

    def _check_permissions(self) -> Check:
        need = {"BROWSE_PROJECTS": "Browse projects", "CREATE_ISSUES": "Create issues",
                "ADD_COMMENTS": "Add comments", "TRANSITION_ISSUES": "Transition issues"}
        resp = fetch(self._check_get, f"{self._api}/mypermissions", "permissions",
                     params={"projectKey": self.options.project, "permissions": ",".join(need)})
        if resp.status_code != 200:
            return Check(what="permissions", ok=False, detail=f"GET /mypermissions failed {says(resp)}")
        have = json_body(resp, "permissions").get("permissions") or {}
        missing = [name for key, name in need.items() if not (have.get(key) or {}).get("havePermission")]
        if not missing:
            return Check(what="permissions", ok=True, detail=f"may {', '.join(need.values()).lower()} in "
                         f"{self.options.project}")
        return Check(what="permissions", ok=False, detail=(
            f"lacks {', '.join(missing)} in {self.options.project}: add the user to a project role that has them "
            "(Project settings -> Access, or the permission scheme)"))

    def _check_transition(self) -> Check:
        """Transitions belong to an issue's workflow and status: read them from an open issue of the type."""
        o = self.options
        jql = (f'project = "{o.project}" AND issuetype = "{o.issue_type}" AND statusCategory != Done '
               "ORDER BY created DESC")
        if self._v3:
            resp = fetch(self._check_get, f"{self._api}/search/jql", "transition",
                         params={"jql": jql, "maxResults": 10, "fields": "status"})
        else:
            resp = fetch(self._check_get, f"{self._api}/search", "transition",
                         params={"jql": jql, "maxResults": 10, "fields": "status"})
        if resp.status_code != 200:
            return Check(what="transition", ok=False, detail=f"could not search {o.project} {says(resp)}")
        open_issues = [i for i in json_body(resp, "transition").get("issues") or []
                       if (((i.get("fields") or {}).get("status") or {}).get("statusCategory") or {}).get("key")
                       != "done"]
        if not open_issues:
            return Check(what="transition", ok=True, detail=(
                f"not verified: no open {o.issue_type} in {o.project} to read transitions from; "
                f"{o.resolve_transition!r} is checked on the first resolve"))
        key = open_issues[0]["key"]
        tr = fetch(self._check_get, f"{self._api}/issue/{key}/transitions", "transition")
        if tr.status_code != 200:
            return Check(what="transition", ok=False, detail=f"GET /issue/{key}/transitions failed {says(tr)}")
        offered = json_body(tr, "transition").get("transitions") or []
        if any(o.resolve_transition in (t.get("id"), t.get("name")) for t in offered):
            return Check(what="transition", ok=True, detail=f"{key} offers {o.resolve_transition!r}")
        names = ", ".join(f"{t.get('name')} (id {t.get('id')})" for t in offered) or "none"
        return Check(what="transition", ok=False, detail=(
            f"{o.issue_type} issues in {o.project} (e.g. {key}) offer no transition {o.resolve_transition!r}, so "
            f"resolving would fail. Offered: {names}; set resolve_transition to one of them"))

    def close(self) -> None:
        if self._owns_client:
            self._client.close()


def _iso(value: str) -> str:
    """Jira writes `2021-01-17T12:34:00.000+0000`; Python wants `+00:00`."""
    return re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", value)


def _plain(body: Any) -> str:
    """The text of an ADF document (or a wiki string), for human items and marker checks."""
    if isinstance(body, str):
        return body
    if isinstance(body, dict):
        if body.get("type") == "text":
            return str(body.get("text", ""))
        sep = "\n" if body.get("type") in ("doc", "bulletList", "orderedList") else ""
        return sep.join(_plain(c) for c in body.get("content") or [])
    return ""
