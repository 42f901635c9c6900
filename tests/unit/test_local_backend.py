"""The `local` backend: a Markdown file per case that a person can `cat`, written exactly once."""

from __future__ import annotations

from pathlib import Path

from sharedctx.backends.local import LocalBackend, LocalOptions
from sharedctx.model import Author, CaseRecord, EntryDraft, EntryKind, Evidence, utcnow
from sharedctx.store.base import build_entry, verify_entries


def make(tmp_path: Path) -> tuple[LocalBackend, CaseRecord]:
    now = utcnow()
    case = CaseRecord(id="01JCASE0000000000000000000", title="Checkout 5xx spike", service="checkout",
                      created_at=now, updated_at=now)
    return LocalBackend("local", LocalOptions(path="cases"), base_dir=tmp_path), case


def entries(case: CaseRecord, n: int) -> list:
    out, prev = [], "0" * 64
    for i in range(n):
        e = build_entry(EntryDraft(case_id=case.id, kind=EntryKind.FINDING, title=f"finding {i}", body=f"**bold** {i}",
                                   author=Author(kind="partner", name="telemetry"),
                                   evidence=(Evidence(type="link", source="grafana", summary="dash",
                                                      url="https://grafana/x"),)), i + 1, prev)
        prev = e.hash
        out.append(e)
    return out


def test_a_case_reads_as_markdown_with_every_entry_once(tmp_path: Path) -> None:
    backend, case = make(tmp_path)
    thread = backend.bind(case)
    es = entries(case, 3)
    for e in es:
        backend.append(thread, e)
    backend.append(thread, es[1])  # a duplicate send is absorbed
    backend.resolve(thread, es[-1])
    md = (tmp_path / "cases" / f"{case.id}.md").read_text()
    assert md.startswith("# Checkout 5xx spike")
    assert "status **resolved**" in md
    for e in es:
        assert md.count(f"sharedctx:entry {e.id}") == 1
    assert "- **link** from grafana: dash [link](https://grafana/x)" in md


def test_the_timeline_rebuilt_from_the_folder_verifies(tmp_path: Path) -> None:
    backend, case = make(tmp_path)
    thread = backend.bind(case)
    es = entries(case, 4)
    for e in es:
        backend.append(thread, e)
    rb = backend.read_back(thread)
    assert rb.entries == es and verify_entries(case.id, rb.entries).ok
    assert backend.read_back(thread, since="2").entries == es[2:]


def test_a_torn_line_from_a_crash_is_repaired_and_lookup_finds_landed_entries(tmp_path: Path) -> None:
    backend, case = make(tmp_path)
    thread = backend.bind(case)
    es = entries(case, 2)
    backend.append(thread, es[0])
    jsonl = tmp_path / "cases" / f"{case.id}.jsonl"
    with open(jsonl, "a") as f:
        f.write(es[1].to_json()[:40])  # the process died mid-write
    assert backend.lookup(thread, es[1].id) is None
    assert backend.lookup(thread, es[0].id) is not None
    backend.append(thread, es[1])
    assert backend.read_back(thread).entries == es


def test_appending_sections_gives_the_same_file_as_rendering_it_whole(tmp_path: Path) -> None:
    backend, case = make(tmp_path)
    thread = backend.bind(case)
    for e in entries(case, 3):
        backend.append(thread, e)
    md = tmp_path / "cases" / f"{case.id}.md"
    appended = md.read_text()
    backend._render(case.id)
    assert md.read_text() == appended
