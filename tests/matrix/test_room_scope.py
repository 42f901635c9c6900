"""A bound thread stays in the room it was bound in, against a small in-memory homeserver (no Synapse).

The fake keeps what the connector relies on here, as Synapse does it: rooms hold events; a thread reply
whose root is in another room is `400 Relations must be in the same room`; reading an event (relations,
context) through a room it is not in is `404 M_NOT_FOUND`; `/messages` and `/sync` tokens are positions.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest

from sharedctx.backends.base import ThreadRef
from sharedctx.backends.matrix import MatrixBackend, MatrixOptions
from tests.backends.conftest import make_case, make_chain

BOT, HUMAN = "@bot:localhost", "@alice:localhost"
OLD, NEW = "!old-incidents:localhost", "!incidents-2026:localhost"


class Homeserver:
    def __init__(self, rooms: tuple[str, ...]) -> None:
        self.events: list[dict[str, Any]] = []  # every event, in stream order
        self.rooms = set(rooms)
        self.txns: dict[tuple[str, str], str] = {}
        self.sync_filters: list[dict[str, Any]] = []

    def in_room(self, room: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["room_id"] == room]

    def find(self, room: str, event_id: str) -> dict[str, Any] | None:
        return next((e for e in self.in_room(room) if e["event_id"] == event_id), None)

    def send(self, room: str, sender: str, content: dict[str, Any], kind: str = "m.room.message") -> str:
        ev = {"type": kind, "room_id": room, "sender": sender, "content": content,
              "event_id": f"$e{len(self.events) + 1}", "origin_server_ts": 1_760_000_000_000 + len(self.events)}
        self.events.append(ev)
        return str(ev["event_id"])

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode().split("?")[0]
        parts = [unquote(p) for p in path.split("/")[3:]]  # after /_matrix/client: version, then the rest
        params = request.url.params
        if parts[1:] == ["account", "whoami"]:
            return httpx.Response(200, json={"user_id": BOT})
        if parts[1:] == ["sync"]:
            self.sync_filters.append(json.loads(params["filter"]))
            rooms = set(self.sync_filters[-1]["room"]["rooms"])
            since = int(params.get("since") or len(self.events))
            join: dict[str, Any] = {}
            for ev in self.events[since:]:
                if ev["room_id"] in rooms:
                    join.setdefault(ev["room_id"], {"timeline": {"events": []}})["timeline"]["events"].append(ev)
            return httpx.Response(200, json={"next_batch": str(len(self.events)), "rooms": {"join": join}})
        room, rest = parts[2], parts[3:]
        if parts[1] != "rooms" or room not in self.rooms:
            return httpx.Response(404, json={"errcode": "M_NOT_FOUND", "error": "Unknown room"})
        if rest[0] == "send":
            kind, txn = rest[1], rest[2]
            if (room, txn) not in self.txns:
                content = json.loads(request.content)
                root = (content.get("m.relates_to") or {}).get("event_id")
                if root and self.find(room, root) is None:
                    return httpx.Response(400, json={"errcode": "M_UNKNOWN",
                                                     "error": "Relations must be in the same room"})
                self.txns[room, txn] = self.send(room, BOT, content, kind)
            return httpx.Response(200, json={"event_id": self.txns[room, txn]})
        target = self.find(room, rest[1]) if len(rest) > 1 else None
        if target is None:
            return httpx.Response(404, json={"errcode": "M_NOT_FOUND", "error": "Event not found"})
        if rest[0] == "relations":
            rel = rest[2]
            chunk = [e for e in self.in_room(room) if (e["content"].get("m.relates_to") or {}).get("event_id")
                     == target["event_id"] and (e["content"]["m.relates_to"].get("rel_type") == rel)]
            return httpx.Response(200, json={"chunk": chunk})
        if rest[0] == "context":
            return httpx.Response(200, json={"end": str(self.events.index(target) + 1), "event": target})
        return httpx.Response(400, json={"errcode": "M_UNRECOGNIZED", "error": "not in this fake"})

    def messages(self, request: httpx.Request) -> httpx.Response:
        room = unquote(request.url.raw_path.decode().split("/")[5])
        start = int(request.url.params["from"])
        chunk = [e for e in self.events[start:] if e["room_id"] == room]
        return httpx.Response(200, json={"chunk": chunk, "start": str(start), "end": str(len(self.events))}
                              if chunk else {"chunk": [], "start": str(start)})

    def route(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/messages"):
            return self.messages(request)
        return self.handle(request)


def test_after_the_configured_room_changes_older_cases_stay_in_the_room_they_were_bound_in(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Switching a backend is a config change: a team moves `room_id` to a new room. A thread root is an
    event of the old room; the cases bound before the switch must go on writing, reading and resolving their
    thread there (in the configured room their replies are refused, and their reads are 404s), and a
    person's answer in the old room must still wake the poller."""
    monkeypatch.setenv("SCTX_MATRIX_TOKEN", "bot-token")
    hs = Homeserver((OLD, NEW))

    def backend(room: str) -> MatrixBackend:
        return MatrixBackend("matrix", MatrixOptions(homeserver="http://hs.test", room_id=room,
                                                     token="env:SCTX_MATRIX_TOKEN"),
                             client=httpx.Client(transport=httpx.MockTransport(hs.route)))

    case = make_case()
    first, second, third = make_chain(case.id, 3)
    bound = backend(OLD).bind(case)
    backend(OLD).append(bound, first)
    stored = bound.model_dump(exclude_none=True)  # what the store keeps as the case's binding
    assert stored["room"] == OLD

    after = backend(NEW)
    thread = ThreadRef.model_validate(stored)
    assert after.wait_for_activity(0) is False  # the worker's first call takes the position
    ref = after.append(thread, second)
    assert quote(OLD, safe="") in str(ref.url)
    assert after.lookup(thread, second.id) is not None
    hs.send(OLD, HUMAN, {"msgtype": "m.text", "body": "rollback done",
                         "m.relates_to": {"rel_type": "m.thread", "event_id": bound.id, "is_falling_back": True,
                                          "m.in_reply_to": {"event_id": bound.id}}})
    got = after.read_back(thread)
    assert [e.id for e in got.entries] == [first.id, second.id]
    (reply,) = got.humans
    assert reply.text == "rollback done" and reply.raw["room_id"] == OLD
    assert after.wait_for_activity(0) is True  # the person's reply in the old room wakes the poller
    assert OLD in hs.sync_filters[-1]["room"]["rooms"] and NEW in hs.sync_filters[-1]["room"]["rooms"]
    after.resolve(thread, third)
    mine = [e for e in hs.in_room(OLD) if e["sender"] == BOT]
    assert "Resolved" in mine[-2]["content"]["body"] and mine[-1]["type"] == "m.reaction"
    assert hs.in_room(NEW) == []  # nothing of the old case in the new room
    fresh = after.bind(make_case())  # a new case opens in the new room
    assert fresh.model_dump()["room"] == NEW and hs.find(NEW, fresh.id) is not None
