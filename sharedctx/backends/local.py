"""`local`: a folder with one Markdown file per case, readable with `cat`.

Layout, for a case `01J…`:
    <path>/01J….md       the human-readable story (regenerated atomically after each append)
    <path>/01J….jsonl    the machine-readable copy: one entry per line, the source of truth here
    <path>/01J….case.json  the case header (title, service, status)

Exactly-once: the `.jsonl` is appended and fsynced first, then the entry's section is appended to
the Markdown; a retry after a crash finds the entry in the `.jsonl` (`lookup`) and re-renders the
Markdown whole, so neither file ever holds an entry twice. The ids already in each `.jsonl` are
cached (and re-read only if the file changed behind our back), so appending stays O(1) however long
a case grows: the worker must not eat the CPU an agent needs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from ..errors import Rejected, Retryable
from ..model import CaseRecord, Entry, ExternalRef, format_ts
from .base import Hit, ReadBack, ThreadRef


class LocalOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = ".sharedctx/cases"


class LocalBackend:
    type: ClassVar[str] = "local"
    Options = LocalOptions

    def __init__(self, name: str, options: LocalOptions, *, base_dir: Path | None = None) -> None:
        self.name = name
        root = Path(options.path).expanduser()
        self.root = root if root.is_absolute() else (base_dir or Path.cwd()) / root
        self._ids: dict[Path, tuple[int, set[str]]] = {}  # .jsonl -> (its size, the entry ids in it)

    # -- files ------------------------------------------------------------------------------------
    def _paths(self, case_id: str) -> tuple[Path, Path, Path]:
        if not case_id.replace("-", "").isalnum():
            raise Rejected(f"local: unsafe case id {case_id!r} for a file name")
        return (self.root / f"{case_id}.md", self.root / f"{case_id}.jsonl", self.root / f"{case_id}.case.json")

    @contextlib.contextmanager
    def _locked(self, case_id: str) -> Iterator[None]:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with open(self.root / f".{case_id}.lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                yield
        except OSError as exc:  # disk full, permissions: may clear up
            raise Retryable(f"local: cannot write under {self.root}: {exc}") from exc

    def _read_entries(self, jsonl: Path) -> list[Entry]:
        if not jsonl.exists():
            return []
        entries = []
        for line in jsonl.read_text(encoding="utf-8").splitlines():
            try:
                entries.append(Entry.from_json(line))
            except ValueError:
                continue  # a torn last line from a crash mid-write; it is rewritten on retry
        return entries

    def _known_ids(self, jsonl: Path) -> set[str]:
        size = jsonl.stat().st_size if jsonl.exists() else 0
        cached = self._ids.get(jsonl)
        if cached is None or cached[0] != size:  # first use, or another process wrote to it
            cached = (size, {e.id for e in self._read_entries(jsonl)})
            self._ids[jsonl] = cached
        return cached[1]

    def _append_line(self, jsonl: Path, line: str) -> None:
        with open(jsonl, "a+b") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() > 0:  # drop a torn tail left by a crash mid-write
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    data = jsonl.read_bytes()
                    f.truncate(data.rfind(b"\n") + 1)
            f.write(line.encode("utf-8") + b"\n")
            f.flush()
            os.fsync(f.fileno())
            size = f.tell()
        ids = self._ids.get(jsonl, (0, set()))[1]
        ids.add(json.loads(line)["id"])
        self._ids[jsonl] = (size, ids)

    def _render(self, case_id: str) -> None:
        md, jsonl, meta = self._paths(case_id)
        header: dict[str, Any] = json.loads(meta.read_text()) if meta.exists() else {"id": case_id}
        text = render_markdown(header, self._read_entries(jsonl))
        tmp = md.with_suffix(".md.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, md)

    # -- the Backend shape ------------------------------------------------------------------------
    def bind(self, case: CaseRecord) -> ThreadRef:
        md, _, meta = self._paths(case.id)
        with self._locked(case.id):
            header = {
                "id": case.id,
                "title": case.title,
                "service": case.service,
                "severity": case.severity,
                "status": case.status.value,
                "opened": format_ts(case.created_at),
            }
            if not meta.exists():
                meta.write_text(json.dumps(header, indent=2), encoding="utf-8")
                self._render(case.id)
        return ThreadRef(backend=self.name, id=case.id, url=md.resolve().as_uri())

    def append(self, thread: ThreadRef, entry: Entry) -> ExternalRef:
        md, jsonl, _ = self._paths(thread.id)
        with self._locked(thread.id):
            if entry.id in self._known_ids(jsonl):
                self._render(thread.id)  # sent before; make sure the Markdown shows it exactly once
            else:
                self._append_line(jsonl, entry.to_json())
                with open(md, "a", encoding="utf-8") as f:
                    f.write(render_entry(entry))
        return ExternalRef(backend=self.name, id=f"{thread.id}#{entry.seq}", url=f"{md.resolve().as_uri()}")

    def lookup(self, thread: ThreadRef, entry_id: str) -> ExternalRef | None:
        md, jsonl, _ = self._paths(thread.id)
        for e in self._read_entries(jsonl):
            if e.id == entry_id:
                with self._locked(thread.id):
                    self._render(thread.id)  # the crash may have come between the two files
                return ExternalRef(backend=self.name, id=f"{thread.id}#{e.seq}", url=md.resolve().as_uri())
        return None

    def read_back(self, thread: ThreadRef, since: str | None = None) -> ReadBack:
        _, jsonl, _ = self._paths(thread.id)
        after = int(since or 0)
        entries = [e for e in self._read_entries(jsonl) if e.seq > after]
        cursor = str(entries[-1].seq) if entries else since
        return ReadBack(entries=entries, humans=[], cursor=cursor)

    def threads(self) -> list[ThreadRef]:
        """Every case this folder holds a copy of (`ListsThreads`, for `verify --against`)."""
        if not self.root.is_dir():
            return []
        ids = sorted({p.name.removesuffix(".jsonl") for p in self.root.glob("*.jsonl")}
                     | {p.name.removesuffix(".case.json") for p in self.root.glob("*.case.json")})
        return [ThreadRef(backend=self.name, id=i, url=(self.root / f"{i}.md").resolve().as_uri()) for i in ids]

    def search(self, text: str, limit: int = 20) -> list[Hit]:
        return []  # the local index (FTS over the journal) already covers this folder

    def resolve(self, thread: ThreadRef, summary: Entry) -> None:
        _, _, meta = self._paths(thread.id)
        with self._locked(thread.id):
            header = json.loads(meta.read_text()) if meta.exists() else {"id": thread.id}
            header["status"] = "resolved"
            header["resolved"] = format_ts(summary.ts)
            meta.write_text(json.dumps(header, indent=2), encoding="utf-8")
            self._render(thread.id)

    def close(self) -> None:
        pass


def render_markdown(header: dict[str, Any], entries: list[Entry]) -> str:
    """The case as a person reads it: a header, then each entry as a section with its evidence."""
    head = [
        f"# {header.get('title', header['id'])}",
        "",
        f"Case `{header['id']}` · service **{header.get('service') or '-'}** · severity "
        f"**{header.get('severity', '-')}** · status **{header.get('status', 'open')}** · opened "
        f"{header.get('opened', '-')}" + (f" · resolved {header['resolved']}" if header.get("resolved") else ""),
        "",
        "",
    ]
    return "\n".join(head) + "".join(render_entry(e) for e in entries)


def render_entry(e: Entry) -> str:
    """One entry's section; appended as is when the entry arrives, so the file never needs rewriting."""
    lines = [
        f"## {e.seq}. {e.kind.value} — {e.title}",
        f"*{e.author.kind} **{e.author.name}** · {format_ts(e.ts)}"
        + (f" · re #{e.ref}" if e.ref else "")
        + (f" · trace `{e.trace_id}`" if e.trace_id else "")
        + "*",
        "",
    ]
    if e.body:
        lines += [e.body, ""]
    if e.evidence:
        lines.append("Evidence:")
        for ev in e.evidence:
            window = f" ({format_ts(ev.start)} → {format_ts(ev.end)})" if ev.start and ev.end else ""
            query = f" `{ev.query}`" if ev.query else ""
            link = f" [link]({ev.url})" if ev.url else ""
            lines.append(f"- **{ev.type}** from {ev.source}: {ev.summary}{query}{link}{window}")
        lines.append("")
    lines += [f"<!-- sharedctx:entry {e.id} hash {e.hash} -->", "", ""]
    return "\n".join(lines)
