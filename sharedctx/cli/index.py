"""`sharedctx index rebuild`: the full-text index and the semantic vectors, rebuilt from the journal."""

from __future__ import annotations

import time

import typer

from ._common import context, err, out

index_app = typer.Typer(help="The full-text search index.", no_args_is_help=True, rich_markup_mode=None)


@index_app.command("rebuild")
def index_rebuild() -> None:
    """Rebuild the full-text index from the journal (after it was lost or corrupted), and the case vectors
    of the semantic layer when `sharedctx[semantic]` is installed."""
    from ..search import semantic

    with context() as ctx:
        t0 = time.perf_counter()
        n = ctx.store.rebuild_index()
        out.print(f"rebuilt the search index over {n:,} entries in {time.perf_counter() - t0:.1f}s")
        if not semantic.enabled():
            return
        t1 = time.perf_counter()
        last = [t1]

        def progress(done: int, total: int) -> None:  # a line every few seconds: embedding 100k cases takes long
            now = time.perf_counter()
            if now - last[0] >= 5 or done >= total:
                last[0] = now
                rate = done / max(now - t1, 1e-9)
                left = (total - done) / max(rate, 1e-9)
                err.print(f"embedding cases: {done:,}/{total:,} ({rate:.0f}/s, ~{left:.0f}s left)")

        m = semantic.rebuild(ctx.store, progress)  # a missing model: SemanticUnavailable, said by context()
        out.print(f"rebuilt the semantic vectors of {m:,} cases ({semantic.MODEL_NAME}) in "
                  f"{time.perf_counter() - t1:.1f}s")
