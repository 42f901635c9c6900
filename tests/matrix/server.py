"""A real Synapse for the Matrix tests, and a fault-injecting proxy in front of it.

`../shared/chat/matrix/start.sh PORT` installs Synapse (pinned) into a temp folder, starts it on 127.0.0.1
and prints `export MATRIX_*=...` lines. `start()` runs it on a free port (or uses the `MATRIX_*` variables
when they are all set, as `.ci/run` does) and `stop()` stops only what `start()` started.

`FaultProxy` forwards every request to the real homeserver and injects the same faults as the
service doubles (`tests/doubles/base.py`: `timeout_after_apply`, `reset_after_apply`, `reset`, `429`, `status`,
`html`...). Everything else - ids, relations, txnId dedupe, 401s for a bad token - is the real server's.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from sharedctx.channel.net import free_port
from tests.doubles.base import SPECS, ServiceDouble

SHARED = Path(os.environ.get("SHAREDCTX_SHARED") or SPECS.parent)
START = SHARED / "chat" / "matrix" / "start.sh"
KEYS = ("MATRIX_URL", "MATRIX_BOT_TOKEN", "MATRIX_HUMAN_TOKEN", "MATRIX_ROOM_ID")


def q(s: str) -> str:
    return quote(s, safe="")


@dataclass
class MatrixServer:
    url: str
    bot_token: str
    human_token: str
    room_id: str
    bot_user: str = "@bot:localhost"
    human_user: str = "@human:localhost"
    port: int | None = None  # set when this test session started it
    _client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    # ---- raw client-server calls, as a person in Element would make them --------------------------
    def call(self, method: str, path: str, token: str, body: Any = None, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = self._client.request(method, self.url + path, json=body, headers=headers, **kw)
        if r.status_code >= 400:
            raise AssertionError(f"{method} {path} -> {r.status_code} {r.text[:300]}")
        return r.json()

    def send(self, token: str, room: str, content: dict[str, Any], event_type: str = "m.room.message") -> str:
        path = f"/_matrix/client/v3/rooms/{q(room)}/send/{event_type}/{uuid.uuid4().hex}"
        return str(self.call("PUT", path, token, content)["event_id"])

    def reply(self, token: str, room: str, root: str, text: str, *, to: str | None = None) -> str:
        """A thread reply like Element sends it (`to`: an explicit reply to that event in the thread)."""
        rel: dict[str, Any] = {"rel_type": "m.thread", "event_id": root, "is_falling_back": to is None,
                               "m.in_reply_to": {"event_id": to or root}}
        return self.send(token, room, {"msgtype": "m.text", "body": text, "m.relates_to": rel})

    def react(self, token: str, room: str, event_id: str, key: str) -> str:
        content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}
        return self.send(token, room, content, "m.reaction")

    def thread(self, room: str, root: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        params: dict[str, Any] = {"dir": "f", "limit": 100}
        while True:
            page = self.call("GET", f"/_matrix/client/v1/rooms/{q(room)}/relations/{q(root)}/m.thread", self.bot_token,
                             params=params)
            out += page["chunk"]
            if not page.get("next_batch"):
                return out
            params["from"] = page["next_batch"]

    def new_room(self, name: str = "incident-cases") -> str:
        """A room of its own for a test: the bot creates it (room creator), the human joins."""
        room = str(self.call("POST", "/_matrix/client/v3/createRoom", self.bot_token,
                             {"name": name, "preset": "private_chat", "invite": [self.human_user]})["room_id"])
        self.call("POST", f"/_matrix/client/v3/join/{q(room)}", self.human_token, {})
        return room

    def user(self, name: str, room: str | None = None) -> tuple[str, str]:
        """Another person (the bot is a server admin): created, logged in, and joined to `room`."""
        user_id = f"@{name}:localhost"
        password = f"{name}-password-123"
        self.call("PUT", f"/_synapse/admin/v2/users/{q(user_id)}", self.bot_token, {"password": password})
        token = str(self.call("POST", "/_matrix/client/v3/login", "", {
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": name}, "password": password,
            "device_id": f"TEST_{name.upper()}"})["access_token"])
        if room:
            self.call("POST", f"/_matrix/client/v3/rooms/{q(room)}/invite", self.bot_token, {"user_id": user_id})
            self.call("POST", f"/_matrix/client/v3/join/{q(room)}", token, {})
        return user_id, token

    def set_power(self, room: str, user_id: str, level: int) -> None:
        path = f"/_matrix/client/v3/rooms/{q(room)}/state/m.room.power_levels/"
        levels = self.call("GET", path, self.bot_token)
        levels.setdefault("users", {})[user_id] = level
        self.call("PUT", path, self.bot_token, levels)


def start(*, stock_limits: bool = False) -> MatrixServer:
    """Start Synapse on a free port (or use `MATRIX_*` from the environment); ~35 s the first time."""
    if not stock_limits and all(os.environ.get(k) for k in KEYS):
        e = os.environ
        return MatrixServer(e["MATRIX_URL"], e["MATRIX_BOT_TOKEN"], e["MATRIX_HUMAN_TOKEN"], e["MATRIX_ROOM_ID"])
    if not START.exists():
        raise FileNotFoundError(f"{START} not found (set SHAREDCTX_SHARED to the shared/ folder)")
    port = free_port()
    env = {**os.environ, "SYNAPSE_FRESH": "1"}
    if stock_limits:
        env["SYNAPSE_DEFAULT_RATELIMITS"] = "1"
    done = subprocess.run(["bash", str(START), "start", str(port)], env=env, capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"start.sh failed ({done.returncode}):\n{done.stderr[-2000:]}")
    got: dict[str, str] = {}
    for line in done.stdout.splitlines():
        if line.startswith("export "):
            k, _, v = line[len("export "):].partition("=")
            got[k] = shlex.split(v)[0] if v else ""
    return MatrixServer(got["MATRIX_URL"], got["MATRIX_BOT_TOKEN"], got["MATRIX_HUMAN_TOKEN"], got["MATRIX_ROOM_ID"],
                        port=port)


def stop(server: MatrixServer) -> None:
    """Stop the homeserver `start()` started, and remove its data folder (a server from the env is left alone)."""
    if server.port is not None:
        subprocess.run(["bash", str(START), "stop", str(server.port)], capture_output=True, timeout=60)
        base = Path(os.environ.get("SYNAPSE_DIR") or Path(os.environ.get("TMPDIR") or "/tmp") / "sharedctx-synapse")
        shutil.rmtree(base / f"data-{server.port}", ignore_errors=True)


class FaultProxy(ServiceDouble):
    """Forwards to the real homeserver; injects faults on demand (`inject`), like the spec-checked doubles."""

    service = "matrix"

    def __init__(self) -> None:
        super().__init__(validate=False)
        self._real = httpx.HTTPTransport()

    def error(self, status: int, message: str) -> httpx.Response:
        code = {401: "M_UNKNOWN_TOKEN", 403: "M_FORBIDDEN", 429: "M_LIMIT_EXCEEDED"}.get(status, "M_UNKNOWN")
        return self.json_response(status, {"errcode": code, "error": message})

    def handle(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(request)
        fault = self._take_fault(request)
        if fault is not None:
            early = self._early_fault(fault, request)
            if early is not None:
                return early
        if not self.auth_ok:  # a revoked token: the real server answers 401 M_UNKNOWN_TOKEN
            request.headers["Authorization"] = "Bearer syt_revoked_token"
        real = self._real.handle_request(request)
        content = real.read()
        real.close()
        resp = httpx.Response(real.status_code, headers=real.headers, content=content)
        if fault is not None and fault.kind == "timeout_after_apply":
            raise httpx.ReadTimeout("timed out after the write was applied", request=request)
        if fault is not None and fault.kind == "5xx_after_apply":
            return self.error(504, "Gateway Timeout")
        if fault is not None and fault.kind == "reset_after_apply":
            raise httpx.RemoteProtocolError("connection reset after the write was applied", request=request)
        return resp


def dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)[:500]
