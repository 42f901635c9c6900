"""Cut operations out of an official OpenAPI description, with every component they reference (transitively).

shared/specs/ holds trimmed official descriptions covering what the connectors write and read. The setup checks
of `sharedctx backends check` read a few more endpoints (who am I, does the repo/service/project exist, what may
I do); their operations are cut from the SAME official documents (same versions, see README.md here) by this
script, verbatim except `x-octokit` keys, and merged over the shared description by `doubles.base.load_spec`.

    python tests/doubles/specs/extract.py SOURCE.json OUT.json "get /user" "get /repos/{owner}/{repo}" ...
"""

from __future__ import annotations

import json
import sys
from typing import Any


def _refs(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/"):
            out.add(ref)
        for v in node.values():
            _refs(v, out)
    elif isinstance(node, list):
        for v in node:
            _refs(v, out)


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k != "x-octokit"}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def extract(doc: dict[str, Any], ops: list[tuple[str, str]]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for method, path in ops:
        item = doc["paths"][path]
        kept = paths.setdefault(path, {k: v for k, v in item.items() if k in ("parameters", "summary")})
        kept[method] = item[method]
    seen: set[str] = set()
    todo: set[str] = set()
    _refs(paths, todo)
    components: dict[str, dict[str, Any]] = {}
    while todo:
        ref = todo.pop()
        if ref in seen:
            continue
        seen.add(ref)
        _, _, kind, name = ref.split("/", 3)
        name = name.split("/", 1)[0]  # a ref into a component (PagerDuty) keeps the whole component
        obj = doc["components"][kind][name]
        components.setdefault(kind, {})[name] = obj
        found: set[str] = set()
        _refs(obj, found)
        todo |= found - seen
    return _strip({"paths": paths, "components": components})


if __name__ == "__main__":
    src, dst, *wanted = sys.argv[1:]
    document = json.load(open(src, encoding="utf-8"))  # noqa: SIM115
    pairs = [(w.split(" ", 1)[0].lower(), w.split(" ", 1)[1]) for w in wanted]
    with open(dst, "w", encoding="utf-8") as f:
        json.dump(extract(document, pairs), f, indent=1, sort_keys=True)
        f.write("\n")
