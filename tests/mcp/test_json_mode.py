"""`/mcp` in JSON mode (`[server] mcp_mode = "json"`: stateless, one JSON answer per POST) next to the default.

What must not change with the mode: bearer auth on every request, redaction of every result (the choke point is
`SharedContextMCP.tool_result`, which no transport bypasses), and identity per request: a stateless server keeps
nothing between requests, so concurrent requests of two identities must each see exactly their own rights.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from sharedctx.config import parse_config
from sharedctx.context import SharedContext
from sharedctx.mcp_server import mcp_http_app
from tests.channel.conftest import serve_in_thread
from tests.data.secrets_corpus import SAMPLES, leaked

from .conftest import TOKENS, all_entries, call, config_data, refused
from .test_transports import INIT, http_session

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]
MODES = ["stream", "json"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[SharedContext]:
    with SharedContext.open(parse_config(config_data(tmp_path), base_dir=tmp_path), worker=False) as c:
        yield c


def serve(ctx: SharedContext, mode: str) -> Any:
    return serve_in_thread(mcp_http_app(ctx, mode=mode))  # type: ignore[arg-type]


class Raw:
    """A plain HTTP client of /mcp that keeps every byte it receives (the session id too, in stream mode)."""

    def __init__(self, http: httpx.AsyncClient, url: str, token: str) -> None:
        self.http, self.url, self.token = http, url, token
        self.session: str | None = None
        self.received: list[str] = []
        self._id = 1

    def _headers(self) -> dict[str, str]:
        h = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
             "Authorization": f"Bearer {self.token}", "mcp-protocol-version": "2025-06-18"}
        return {**h, "mcp-session-id": self.session} if self.session else h

    async def open(self) -> Raw:
        resp = await self.http.post(self.url, json=INIT, headers=self._headers())
        resp.raise_for_status()
        self.session = resp.headers.get("mcp-session-id")
        await self.http.post(self.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                             headers=self._headers())
        return self

    async def call(self, tool: str, **args: Any) -> tuple[httpx.Response, dict[str, Any]]:
        self._id += 1
        resp = await self.http.post(self.url, headers=self._headers(), json={
            "jsonrpc": "2.0", "id": self._id, "method": "tools/call", "params": {"name": tool, "arguments": args}})
        self.received.append(resp.text)
        if resp.headers["content-type"].startswith("application/json"):
            return resp, resp.json()["result"]
        data = [ln[5:] for ln in resp.text.splitlines() if ln.startswith("data:")]
        return resp, json.loads(data[-1])["result"]


@pytest.mark.parametrize("mode", MODES)
async def test_the_official_client_works_and_rights_hold_in_both_modes(ctx: SharedContext, mode: str) -> None:
    with serve(ctx, mode) as base:
        url = f"{base}/mcp"
        async with http_session(url, TOKENS["lead"]) as s:
            case = await call(s, "open_case", title="Checkout 5xx")
            out = await call(s, "record_entry", case_id=case["id"], kind="finding", title="p99 up 8x")
            page = await call(s, "get_timeline", case_id=case["id"], since=1)
        async with http_session(url, TOKENS["viewer"]) as s:
            denied = await refused(s, "record_entry", case_id=case["id"], kind="note", title="x")
        async with http_session(url, TOKENS["telemetry"]) as s:
            outside = await refused(s, "get_timeline", case_id=case["id"])
    assert out["entry"]["author"] == "primary:lead" and [e["id"] for e in page["entries"]] == [out["entry"]["id"]]
    assert denied.startswith("403 Forbidden") and outside.startswith("403 Forbidden")


@pytest.mark.parametrize("mode", MODES)
async def test_the_mode_is_what_the_wire_shows(ctx: SharedContext, mode: str) -> None:
    with serve(ctx, mode) as base:
        async with httpx.AsyncClient() as http:
            raw = await Raw(http, f"{base}/mcp", TOKENS["lead"]).open()
            resp, result = await raw.call("open_case", title="wire")
    assert result["structuredContent"]["title"] == "wire"
    if mode == "json":
        assert resp.headers["content-type"].startswith("application/json") and raw.session is None
    else:
        assert resp.headers["content-type"].startswith("text/event-stream") and raw.session


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", f"Token {TOKENS['lead']}"])
async def test_no_valid_token_is_401_in_both_modes(ctx: SharedContext, mode: str, authorization: str | None) -> None:
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
               **({"Authorization": authorization} if authorization else {})}
    tool = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "open_case",
                                                                         "arguments": {"title": "sneaky"}}}
    with serve(ctx, mode) as base:
        async with httpx.AsyncClient() as http:
            answers = [await http.post(f"{base}/mcp", json=body, headers=headers) for body in (INIT, tool)]
        with pytest.raises(BaseException) as failed:  # the official client: an ExceptionGroup from its task group
            async with http_session(f"{base}/mcp", "wrong"):
                pass
    assert all(a.status_code == 401 and a.headers["www-authenticate"].startswith("Bearer") for a in answers)
    assert "401" in repr(failed.value) or "Unauthorized" in repr(failed.value)
    assert ctx.cases() == [] and all_entries(ctx) == []


@pytest.mark.parametrize("mode", MODES)
async def test_no_secret_comes_back_over_http_in_either_mode(ctx: SharedContext, mode: str) -> None:
    samples = SAMPLES[:: max(1, len(SAMPLES) // 20)]  # ~20 secrets of different types, in their context
    with serve(ctx, mode) as base:
        async with httpx.AsyncClient(timeout=30) as http:
            raw = await Raw(http, f"{base}/mcp", TOKENS["lead"]).open()
            _, opened = await raw.call("open_case", title="secrets")
            case_id = opened["structuredContent"]["id"]
            for kind, _value, text in samples:
                await raw.call("record_entry", case_id=case_id, kind="finding", title=f"{kind}"[:200],
                               body=f"seen: {text}", attrs={"raw": text})
                await raw.call("find_case", ref=text[:2000])  # an error that echoes the input
            await raw.call("get_timeline", case_id=case_id, limit=200)
            await raw.call("search_history", text="seen", limit=50)
    out = "\n".join(raw.received)
    assert len(out) > 5000
    assert [kind for kind, value, _ in samples if leaked(value, out)] == []


async def test_json_mode_two_identities_at_once_each_see_only_their_own(ctx: SharedContext) -> None:
    """Stateless: nothing of one request survives into the next. Interleave 2 x 24 calls of two identities
    and check each answer against the token that asked: authors, refusals, and search results."""
    with serve(ctx, "json") as base:
        async with httpx.AsyncClient(timeout=30) as http:
            lead = await Raw(http, f"{base}/mcp", TOKENS["lead"]).open()
            tel = await Raw(http, f"{base}/mcp", TOKENS["telemetry"]).open()
            _, private = await lead.call("open_case", title="private", service="payments")
            _, shared = await lead.call("open_case", title="shared", service="checkout")
            a, b = private["structuredContent"]["id"], shared["structuredContent"]["id"]
            await lead.call("record_entry", case_id=a, kind="finding", title="zebracorn in the ledger")
            await lead.call("invite_partner", case_id=b, partner="telemetry")
            results: list[tuple[str, str, dict[str, Any]]] = []

            async def as_lead(i: int) -> None:
                _, r = await lead.call("record_entry", case_id=a, kind="note", title=f"lead {i}")
                results.append(("lead", "record", r))

            async def as_telemetry(i: int) -> None:
                _, r = await tel.call("record_entry", case_id=b, kind="finding", title=f"telemetry {i}")
                results.append(("telemetry", "record", r))
                _, r = await tel.call("get_timeline", case_id=a)
                results.append(("telemetry", "read private", r))
                _, r = await tel.call("search_history", text="zebracorn")
                results.append(("telemetry", "search", r))

            async with anyio.create_task_group() as tg:
                for i in range(24):
                    tg.start_soon(as_lead, i)
                    tg.start_soon(as_telemetry, i)
    assert len(results) == 24 * 4
    for who, what, r in results:
        if what == "record":
            assert not r.get("isError"), r
            assert r["structuredContent"]["entry"]["author"] == {"lead": "primary:lead",
                                                                 "telemetry": "partner:telemetry"}[who]
        elif what == "read private":
            assert r["isError"] and r["content"][0]["text"].startswith("403 Forbidden")
        else:
            assert r["structuredContent"]["hits"] == [], r
    assert "zebracorn" not in "\n".join(tel.received)
    authors = {str(e.author) for e in ctx.case(a).timeline()}
    assert authors == {"primary:lead"}


@pytest.mark.parametrize(("setting", "flag", "want"), [
    ("", [], "text/event-stream"), ('mcp_mode = "json"', [], "application/json"),
    ("", ["--mcp-mode", "json"], "application/json"),
    ('mcp_mode = "json"', ["--mcp-mode", "stream"], "text/event-stream"),
])  # fmt: skip
def test_serve_takes_the_mode_from_config_and_the_flag_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str, flag: list[str], want: str
) -> None:
    """`sharedctx serve` with uvicorn replaced by a recorder; the recorded app, lifespan running, answers /mcp."""
    import uvicorn
    from typer.testing import CliRunner

    from sharedctx.cli import app as cli_app

    from .conftest import write_config

    config = write_config(tmp_path)
    config.write_text(config.read_text().replace("enabled = true", "enabled = false")
                      + f"\n[server]\n{setting}\n", encoding="utf-8")
    answers: list[Any] = []

    async def ask(app: Any) -> None:
        accept = {"Accept": "application/json, text/event-stream"}
        async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8765"
        ) as client:
            with anyio.fail_after(20):
                answers.append(await client.post("/mcp", json=INIT, headers={
                    **accept, "Authorization": f"Bearer {TOKENS['lead']}"}))
                answers.append(await client.post("/mcp", json=INIT, headers=accept))

    def run(app: Any, **kw: Any) -> None:  # instead of serving: two requests while `serve` holds the journal open
        anyio.run(ask, app)

    monkeypatch.setattr(uvicorn, "run", run)
    result = CliRunner().invoke(cli_app, ["--config", str(config), "serve", *flag])
    assert result.exit_code == 0, result.output
    assert ("stateless, JSON answers" in result.output) is (want == "application/json")
    answer, refused = answers
    assert answer.status_code == 200 and answer.headers["content-type"].startswith(want)
    assert refused.status_code == 401


def test_serve_refuses_an_unknown_mode(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sharedctx.cli import app as cli_app

    from .conftest import write_config

    result = CliRunner().invoke(cli_app, ["--config", str(write_config(tmp_path)), "serve", "--mcp-mode", "sse"])
    assert result.exit_code == 2 and "--mcp-mode must be 'stream' or 'json'" in " ".join(result.output.split())


def dump(result: Any) -> str:
    """Everything the official client hands its host from one result: text blocks and structured content."""
    parts = [getattr(b, "text", "") for b in getattr(result, "content", [])]
    return "\n".join([*parts, json.dumps(getattr(result, "structuredContent", None), ensure_ascii=False)])


@pytest.mark.parametrize("mode", MODES)
async def test_the_official_client_gets_redacted_results_and_two_identities_stay_apart(
    ctx: SharedContext, mode: str
) -> None:
    """Two official clients (lead, telemetry) at once on one server: secrets never come back to either, and the
    partner never sees the lead's private case, whichever mode."""
    samples = SAMPLES[1 :: max(1, len(SAMPLES) // 10)]
    seen: dict[str, list[str]] = {"lead": [], "telemetry": []}
    with serve(ctx, mode) as base:
        url = f"{base}/mcp"
        async with http_session(url, TOKENS["lead"]) as lead, http_session(url, TOKENS["telemetry"]) as tel:
            private = await call(lead, "open_case", title="private ledger case")
            shared = await call(lead, "open_case", title="shared")
            await call(lead, "invite_partner", case_id=shared["id"], partner="telemetry")

            async def as_lead() -> None:
                for kind, _value, text in samples:
                    r = await lead.call_tool("record_entry", {"case_id": private["id"], "kind": "finding",
                                                              "title": f"{kind} quokka", "body": text})
                    seen["lead"].append(dump(r))
                seen["lead"].append(dump(await lead.call_tool("get_timeline", {"case_id": private["id"]})))

            async def as_telemetry() -> None:
                for i in range(len(samples)):
                    seen["telemetry"].append(dump(await tel.call_tool("record_entry", {
                        "case_id": shared["id"], "kind": "finding", "title": f"telemetry {i}"})))
                    seen["telemetry"].append(dump(await tel.call_tool("get_timeline", {"case_id": private["id"]})))
                    seen["telemetry"].append(dump(await tel.call_tool("search_history", {"text": "quokka"})))

            async with anyio.create_task_group() as tg:
                tg.start_soon(as_lead)
                tg.start_soon(as_telemetry)
    everything = "\n".join(seen["lead"] + seen["telemetry"])
    assert [kind for kind, value, _ in samples if leaked(value, everything)] == []
    partner_saw = "\n".join(seen["telemetry"])
    assert "quokka" not in partner_saw and "private ledger case" not in partner_saw  # no title, no entry
    assert partner_saw.count("403 Forbidden") == len(samples)
    assert "quokka" in "\n".join(seen["lead"])


async def test_a_stream_session_belongs_to_the_agent_that_opened_it(ctx: SharedContext) -> None:
    """Stream mode keeps sessions: another agent presenting the lead's session id may neither use nor end it
    (404, as if it did not exist), and the lead's session carries on. Failed before BearerAuth named the
    principal for the SDK: the viewer's DELETE ended the lead's session (200, then 404 for the lead)."""
    with serve(ctx, "stream") as base:
        async with httpx.AsyncClient(timeout=30) as http:
            lead = await Raw(http, f"{base}/mcp", TOKENS["lead"]).open()
            assert lead.session
            other = Raw(http, f"{base}/mcp", TOKENS["viewer"])
            other.session = lead.session  # learned somehow: a log line, a proxy
            use = await http.post(other.url, headers=other._headers(), json={
                "jsonrpc": "2.0", "id": 9, "method": "tools/call",
                "params": {"name": "find_case", "arguments": {"ref": "x"}}})
            end = await http.delete(other.url, headers=other._headers())
            _, still = await lead.call("open_case", title="mine")
    assert use.status_code == 404 and end.status_code == 404
    assert still["structuredContent"]["title"] == "mine"
