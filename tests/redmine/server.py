"""A real Redmine for the tests: the one `.ci/run` started (REDMINE_* in the environment), or one started
here with `shared/trackers/redmine/start.sh` on a free port.

CI must never silently skip it: without the server the tests fail with start.sh's own words. Only a local
run with `SHAREDCTX_SKIP_REAL_SERVERS=1` skips them (machines without root or apt).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import httpx

from sharedctx.channel.net import free_port
from tests.doubles.base import SPECS

START = Path(os.environ.get("SHAREDCTX_REDMINE_START") or SPECS.parent / "trackers" / "redmine" / "start.sh")


class Unavailable(Exception):
    """Redmine could not be reached or started; the message says why."""


@dataclass
class RedmineEnv:
    """The server, its admin key, its project and External ID field, plus admin helpers for tests."""

    url: str
    api_key: str
    project: str
    external_id_field: int | None
    started_port: str | None = None  # set when these tests started the server (and stop it at the end)
    _users: dict[str, tuple[int, str]] = field(default_factory=dict)

    def client(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60.0, headers={
            "X-Redmine-API-Key": key or self.api_key, "Content-Type": "application/json"})

    def request(self, method: str, path: str, *, key: str | None = None, **kw: Any) -> httpx.Response:
        with self.client(key) as c:
            resp = c.request(method, path, **kw)
        if resp.status_code >= 400:
            raise AssertionError(f"Redmine {method} {path} -> {resp.status_code}: {resp.text[:300]}")
        return resp

    def user(self, login: str, *, member: bool = True) -> tuple[int, str]:
        """(id, API key) of a person with their own account, created once per server (the DB persists);
        `member`: a Manager of the project (the workflow then lets them change the status too)."""
        if login not in self._users:
            with self.client() as c:
                found = c.get("/users.json", params={"name": login, "status": ""}).json().get("users") or []
                uid = next((u["id"] for u in found if u.get("login") == login), None)
                if uid is None:
                    uid = c.post("/users.json", json={"user": {
                        "login": login, "firstname": login.capitalize(), "lastname": "Person",
                        "mail": f"{login}@example.net", "password": f"pw-{uuid.uuid4().hex}"}}).json()["user"]["id"]
                key = c.get(f"/users/{uid}.json", params={"include": "api_key"}).json()["user"].get("api_key")
                if not key:  # an older account without a key yet: act as the user once to create it
                    key = c.get("/users/current.json", headers={"X-Redmine-Switch-User": login}).json()["user"][
                        "api_key"]
                if member:
                    c.post(f"/projects/{self.project}/memberships.json",
                           json={"membership": {"user_id": uid, "role_ids": [3]}})  # 422 when already one
            self._users[login] = (int(uid), str(key))
        return self._users[login]

    def add_note(self, issue_id: str | int, text: str, *, as_user: str = "alice", private: bool = False) -> None:
        _, key = self.user(as_user)
        self.request("PUT", f"/issues/{issue_id}.json", key=key,
                     json={"issue": {"notes": text, "private_notes": private}})

    def set_status(self, issue_id: str | int, status_id: int, *, as_user: str = "alice") -> None:
        _, key = self.user(as_user)
        self.request("PUT", f"/issues/{issue_id}.json", key=key, json={"issue": {"status_id": status_id}})
        now = self.request("GET", f"/issues/{issue_id}.json").json()["issue"]["status"]["id"]
        assert now == status_id, f"Redmine ignored status {status_id} from {as_user} (workflow?)"

    def new_issue(self, subject: str = "an issue someone opened by hand") -> str:
        data = self.request("POST", "/issues.json", json={"issue": {"project_id": self.project, "subject": subject}})
        return str(data.json()["issue"]["id"])

    def delete_issue(self, issue_id: str | int) -> None:
        self.request("DELETE", f"/issues/{issue_id}.json")

    def journals(self, issue_id: str | int) -> list[dict[str, Any]]:
        resp = self.request("GET", f"/issues/{issue_id}.json", params={"include": "journals"})
        return list(resp.json()["issue"].get("journals") or [])


def stop(env: RedmineEnv) -> None:
    if env.started_port:
        subprocess.run(["bash", str(START), "stop", env.started_port], capture_output=True, timeout=60)


def _parse(out: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line and line.startswith("REDMINE_"))


@cache
def redmine() -> RedmineEnv:
    """The running server (env), or start one; raises Unavailable with the reason."""
    env = {k: v for k, v in os.environ.items() if k.startswith("REDMINE_")}
    if not env.get("REDMINE_URL"):
        if not START.exists():
            raise Unavailable(f"{START} not found (set SHAREDCTX_REDMINE_START, or export REDMINE_URL etc.)")
        if os.geteuid() != 0:
            raise Unavailable(f"{START} needs root (apt-get, runuser); run .ci/run or export REDMINE_URL etc.")
        port = str(free_port())
        key = os.environ.get("REDMINE_API_KEY", "ci0123456789abcdef")
        run = subprocess.run(["bash", str(START), port], capture_output=True, text=True, timeout=600,
                             env={**os.environ, "REDMINE_API_KEY": key})
        if run.returncode != 0:
            raise Unavailable(f"{START} {port} failed (exit {run.returncode}):\n{run.stderr[-2000:]}")
        env = {**_parse(run.stdout), "started_port": port}
    try:
        field_id = env.get("REDMINE_EXTERNAL_ID_FIELD")
        got = RedmineEnv(env["REDMINE_URL"].rstrip("/"), env["REDMINE_API_KEY"],
                         env.get("REDMINE_PROJECT") or "ci-test", int(field_id) if field_id else None,
                         started_port=env.get("started_port"))
        with got.client() as c:
            c.get("/users/current.json").raise_for_status()
    except (KeyError, httpx.HTTPError) as exc:
        raise Unavailable(f"Redmine at {env.get('REDMINE_URL')} does not answer as expected: {exc!r}") from exc
    return got
