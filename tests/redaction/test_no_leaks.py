"""No secret leaves: every field path × every secret type × every encoding, searched for everywhere.

The promise (docs/redaction.md): a credential written into any field of an entry or a case, in any of
the encodings logs and tools use, is replaced before anything is stored. So we write each secret of an
independent corpus (`corpus.py`, 24 types, fresh random bodies per placement) into each field a caller
can fill, in each encoding, through the public API, deliver everything, and then look for any 12
characters of any secret body in every place a byte of it could land:

* the SQLite file, its `-wal` and `-shm`, and the full-text index's vocabulary;
* the local backend's Markdown and JSON files;
* every HTTP request the GitHub backend sent (a spec-checked double);
* the in-memory backend's copies;
* every log record, as the entrypoints' redacting filter leaves it (including refused inputs' errors).

A field that refuses the value (a 32-character severity, a trace id that is not 32 hex digits) must
refuse it without echoing it; that counts as "no leak" too, and the test reports how many were stored.
"""

from __future__ import annotations

import logging
import random
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sharedctx.backends import make_backend
from sharedctx.config import BackendSettings, parse_config
from sharedctx.context import Case, SharedContext
from sharedctx.errors import SharedCtxError
from sharedctx.redact import install_log_redaction
from sharedctx.testing import FakeBackend
from tests.backends.harness import github

from .corpus import ENCODINGS, TYPES, WINDOW, Secret, encode, make_secrets, windows

log = logging.getLogger("tests.redaction")
_RUNS = re.compile(rf"[A-Za-z0-9+/=_\-.~%]{{{WINDOW},}}")

# Where a caller can put text in an entry: kwargs for `case.record("finding", ...)`.
ENTRY_PATHS: dict[str, Callable[[str], dict[str, Any]]] = {
    "title": lambda t: {"title": t},
    "body": lambda t: {"body": t},
    "evidence.source": lambda t: {"evidence": [{"type": "log", "source": t}]},
    "evidence.summary": lambda t: {"evidence": [{"type": "log", "source": "loki", "summary": t}]},
    "evidence.query": lambda t: {"evidence": [{"type": "query", "source": "loki", "query": t}]},
    "evidence.url": lambda t: {"evidence": [{"type": "link", "source": "web", "url": t}]},
    "evidence.data": lambda t: {"evidence": [{"type": "log", "source": "loki",
                                              "data": {"lines": [{"ts": "10:02", "line": t}], "n": 1}}]},
    "evidence.data-key": lambda t: {"evidence": [{"type": "log", "source": "loki", "data": {t: 1}}]},
    "attrs": lambda t: {"attrs": {"context": {"excerpt": [t]}}},
    "attrs-key": lambda t: {"attrs": {t: "seen"}},
    "author": lambda t: {"author": f"partner:{t}"},
    "trace_id": lambda t: {"trace_id": t},
    "ref": lambda t: {"ref": t},
}
# Where a caller can put text in a case: kwargs for `ctx.open_case(...)`.
CASE_PATHS: dict[str, Callable[[str], dict[str, Any]]] = {
    "case.title": lambda t: {"title": t},
    "case.service": lambda t: {"service": t},
    "case.severity": lambda t: {"severity": t},
    "case.fingerprint": lambda t: {"fingerprint": t},
    "case.labels": lambda t: {"labels": {"instance": t}},
    "case.labels-key": lambda t: {"labels": {t: "x"}},
}


class Placements:
    """Every (path, type, encoding) written, with its secret; maps a leaked piece back to where it went in."""

    def __init__(self) -> None:
        self.by_piece: dict[str, tuple[str, str, str]] = {}
        self.stored = 0
        self.refused = 0
        self.count = 0

    def add(self, path: str, secret: Secret, encoding: str) -> None:
        self.count += 1
        for body in secret.bodies:
            for piece in windows(body):
                self.by_piece[piece] = (path, secret.type, encoding)

    def find(self, haystack: str, *, lower: bool = False) -> set[tuple[str, str, str]]:
        """The placements any piece of which occurs in `haystack` (one pass over it)."""
        pieces = {p.lower(): v for p, v in self.by_piece.items()} if lower else self.by_piece
        text = haystack.lower() if lower else haystack
        hits = set()
        for run in _RUNS.findall(text):  # a piece only has body characters: look inside such runs only
            for i in range(len(run) - WINDOW + 1):
                v = pieces.get(run[i : i + WINDOW])
                if v is not None:
                    hits.add(v)
        return hits


def _attempt(placements: Placements, write: Callable[[], Any]) -> Any:
    try:
        result = write()
    except SharedCtxError as exc:  # refused: the error is logged, as a server would, and must be clean
        placements.refused += 1
        log.warning("refused: %s", exc)
        return None
    placements.stored += 1
    return result


def write_everything(
    ctx: SharedContext, rng: random.Random, entry_paths: list[str] | None = None, case_paths: list[str] | None = None
) -> Placements:
    """Each secret type in each encoding into each of the paths (default: all of them), through the API."""
    placements = Placements()
    entry_fill = {p: ENTRY_PATHS[p] for p in entry_paths or ENTRY_PATHS}
    case_fill = {p: CASE_PATHS[p] for p in case_paths or CASE_PATHS}
    cases: dict[str, Case] = {}
    for encoding in ENCODINGS:
        for path, kwargs in entry_fill.items():
            for secret in make_secrets(rng):  # fresh bodies for every placement
                case = cases.get(secret.type) or ctx.open_case(f"Leak hunt: {secret.type}", service="checkout")
                cases[secret.type] = case
                placements.add(path, secret, encoding)
                args = {"title": f"{path} / {encoding}", **kwargs(encode(secret, encoding))}
                _attempt(placements, lambda c=case, a=args: c.record("finding", **a))  # type: ignore[misc]
        for path, kwargs in case_fill.items():
            for secret in make_secrets(rng):
                placements.add(path, secret, encoding)
                args = {"title": f"{path} / {secret.type} / {encoding}", **kwargs(encode(secret, encoding))}
                opened = _attempt(placements, lambda a=args: ctx.open_case(**a))  # type: ignore[misc]
                if opened is not None:  # an entry makes every backend bind the case: title, labels go out
                    opened.record("note", "case opened")
    return placements


def sqlite_text(db: Path) -> tuple[str, str]:
    """(the raw bytes of the database, its -wal and -shm as text; the FTS index's vocabulary)."""
    raw = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*") if p.is_file())
    con = sqlite3.connect(db)
    try:
        con.execute("CREATE VIRTUAL TABLE temp.vocab USING fts5vocab(main, entries_fts, 'row')")
        terms = " ".join(r[0] for r in con.execute("SELECT term FROM temp.vocab"))
    finally:
        con.close()
    return raw.decode("utf-8", "replace"), terms


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_no_secret_reaches_any_sink_from_any_field_in_any_encoding(
    scratch: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    tmp_path = scratch
    # The double's OpenAPI checks are off here: they were ~2/3 of this test's time, nothing here asserted them,
    # and the GitHub backend's requests and the double's answers are held to the spec in tests/backends
    # (spec_clean). This test is about where secrets end up; every request is still searched below.
    gh = github(monkeypatch, validate=False)
    fake = FakeBackend("fake")
    local = make_backend(BackendSettings(type="local", path=str(tmp_path / "cases")), base_dir=tmp_path)
    config = parse_config({"store": "journal.db", "worker": {"enabled": False}}, base_dir=tmp_path)
    caplog.set_level(logging.DEBUG)
    install_log_redaction()  # what `sharedctx serve` / `mcp` / the CLI install at start
    backends = {"github": gh.make(per_minute=10**6, per_hour=10**7), "fake": fake, "local": local}
    with SharedContext.open(config, worker=False, backends=backends) as ctx:
        placements = write_everything(ctx, random.Random(11))
        ctx.worker.run_once()
        counts = ctx.store.outbox_counts()
        db_raw, fts_terms = sqlite_text(tmp_path / "journal.db")
        fake_out = "\n".join(e.to_json() for c in ctx.cases(limit=10**6) for e in fake.entries(c.id))
    db_after_close, _ = sqlite_text(tmp_path / "journal.db")

    sinks = {
        "sqlite file + wal": db_raw + db_after_close,
        "local backend files": "\n".join(
            p.read_text("utf-8", "replace") for p in (tmp_path / "cases").rglob("*") if p.is_file()
        ),
        "github requests": "\n".join(f"{r.url}\n{r.content.decode('utf-8', 'replace')}" for r in gh.double.requests),
        "fake backend": fake_out,
        "logs": "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records),
    }
    # the sinks hold what was written: every stored placement was delivered everywhere, nothing died
    assert all(c.get("dead", 0) == 0 and c.get("pending", 0) == 0 for c in counts.values()), counts
    assert counts["github"]["delivered"] >= placements.stored
    assert placements.count == len(TYPES) * len(ENCODINGS) * (len(ENTRY_PATHS) + len(CASE_PATHS))
    assert placements.stored > placements.count // 2, (placements.stored, placements.refused)
    assert "[REDACTED:" in sinks["github requests"] and "[REDACTED:" in sinks["local backend files"]

    found = {name: sorted(placements.find(text)) for name, text in sinks.items()}
    for name, hits in found.items():
        for hit in hits:
            print("LEAK", name, hit)
    found["sqlite full-text index"] = sorted(placements.find(fts_terms, lower=True))
    print(
        f"\nleak hunt: {placements.count} placements ({len(TYPES)} secret types x {len(ENCODINGS)} encodings x "
        f"{len(ENTRY_PATHS) + len(CASE_PATHS)} field paths), {placements.stored} stored, {placements.refused} "
        f"refused; sinks searched: {', '.join(found)}; leaks: {sum(len(v) for v in found.values())}"
    )
    assert found == {name: [] for name in found}
