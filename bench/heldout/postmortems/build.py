"""Turn the hand-written `source.txt` into `cases.jsonl`, `queries.jsonl` and `similar.jsonl`.

    python -m bench.heldout.postmortems.build            # rewrite the .jsonl files beside this script
    python -m bench.heldout.postmortems.build --check    # exit 1 if the committed files are stale

The summaries and queries are authored by hand in `source.txt` (one compact, reviewable text file); this script
only changes their shape. It checks what a hand-written file gets wrong: duplicate ids, unknown entry kinds,
queries pointing at cases that do not exist.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
KINDS = {"N": "note", "F": "finding", "A": "action", "D": "decision", "R": "resolution", "H": "human"}
# Who "wrote" each kind of entry in a post-mortem: the document's sections, not people.
AUTHORS = {"note": "timeline", "finding": "investigation", "action": "responders", "decision": "incident-commander",
           "resolution": "postmortem", "human": "reader"}


def parse(text: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    cases: list[dict[str, Any]] = []
    queries: list[dict[str, Any]] = []
    for no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("== "):
            parts = [p.strip() for p in line[3:].split("|", 4)]
            if len(parts) != 5:
                raise ValueError(f"line {no}: case header needs 5 fields: {line!r}")
            cid, service, date, alert, title = parts
            cases.append({"id": cid, "title": title, "service": service, "alert": "" if alert == "-" else alert,
                          "opened_at": f"{date}T00:00:00Z", "entries": [], "outcome": "resolved"})
        elif line.startswith("?? "):
            parts = [p.strip() for p in line[3:].split("|", 3)]
            if len(parts) != 4:
                raise ValueError(f"line {no}: query needs 4 fields: {line!r}")
            qid, style, rel, query = parts
            queries.append({"id": qid, "query": query, "relevant": [r.strip() for r in rel.split(",")],
                            "style": style})
        elif line[:2] in {f"{k}:" for k in KINDS}:
            if not cases:
                raise ValueError(f"line {no}: entry before any case header")
            kind = KINDS[line[0]]
            cases[-1]["entries"].append({"kind": kind, "author": AUTHORS[kind], "text": line[2:].strip()})
        else:
            raise ValueError(f"line {no}: cannot parse {line!r}")
    ids = [c["id"] for c in cases]
    if len(ids) != len(set(ids)):
        raise ValueError("duplicate case ids")
    known = set(ids)
    for q in queries:
        missing = [r for r in q["relevant"] if r not in known]
        if missing:
            raise ValueError(f"{q['id']}: relevant cases do not exist: {missing}")
    return cases, queries


def build() -> dict[str, str]:
    cases, queries = parse((HERE / "source.txt").read_text())

    def lines(rows: list[dict[str, Any]]) -> str:
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)

    # Every post-mortem describes a closed incident, so there are no open cases to ask similar_cases about.
    return {"cases.jsonl": lines(cases), "queries.jsonl": lines(queries), "similar.jsonl": ""}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed files instead of writing")
    args = ap.parse_args(argv)
    files = build()
    if args.check:
        stale = [n for n, t in files.items() if not (HERE / n).exists() or (HERE / n).read_text() != t]
        if stale:
            print("out of date:", ", ".join(stale), file=sys.stderr)
            return 1
        return 0
    for name, text in files.items():
        (HERE / name).write_text(text)
    print({n: t.count("\n") for n, t in files.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
