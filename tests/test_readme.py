"""Docs that run: every ```python block in the README is executed in an empty directory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_examples_run(code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SHAREDCTX_CONFIG", raising=False)
    namespace: dict[str, object] = {"__name__": "readme"}  # blocks that serve forever guard on __main__
    exec(compile(code, str(README), "exec"), namespace)
    if "SharedContext.open" in code:
        assert (tmp_path / ".sharedctx" / "sharedctx.db").exists()
    if "Partner(" in code:
        partner = namespace["partner"]
        assert set(partner.capabilities) >= {"search_logs"}  # type: ignore[attr-defined]


def test_the_readme_has_python_examples() -> None:
    assert BLOCKS
