"""A plain BM25 reference score on the held-out sets, so a new engine's numbers have a floor to stand next to.

    python -m bench.heldout.baseline

Deliberately naive and engine-independent (standard library only): one document per case (title, service, alert
and every entry's text), lower-cased word tokens, no stemming, no stop list, no synonyms, Okapi BM25 with
k1=1.2, b=0.75. It answers "is this data hard at all?", and is not a model of how sharedctx ranks.
similar_cases precision@5 uses the open case's own text as the query and skips other open cases.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from bench.heldout import SETS, Case, load

TOKEN = re.compile(r"[a-z0-9]+")


def tokens(text: str) -> list[str]:
    return TOKEN.findall(text.lower())


def case_text(c: Case) -> str:
    return " ".join([c.title, c.service, c.alert, *(e.text for e in c.entries)])


class BM25:
    def __init__(self, docs: Sequence[tuple[str, str]], k1: float = 1.2, b: float = 0.75) -> None:
        self.ids = [d for d, _ in docs]
        self.tf = [Counter(tokens(t)) for _, t in docs]
        self.len = [sum(tf.values()) for tf in self.tf]
        self.avg = sum(self.len) / max(len(self.len), 1)
        df: Counter[str] = Counter()
        for tf in self.tf:
            df.update(tf.keys())
        n = len(docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}
        self.k1, self.b = k1, b

    def rank(self, query: str, limit: int = 10, exclude: frozenset[str] = frozenset()) -> list[str]:
        q = set(tokens(query))
        scored = []
        for i, tf in enumerate(self.tf):
            if self.ids[i] in exclude:
                continue
            s = 0.0
            for t in q:
                f = tf.get(t, 0)
                if f:
                    norm = 1 - self.b + self.b * self.len[i] / self.avg
                    s += self.idf[t] * f * (self.k1 + 1) / (f + self.k1 * norm)
            if s > 0:
                scored.append((s, self.ids[i]))
        scored.sort(key=lambda x: (-x[0], x[1]))
        return [d for _, d in scored[:limit]]


def evaluate(set_name: str) -> dict[str, float]:
    cases, queries, similar = load(set_name)
    index = BM25([(c.id, case_text(c)) for c in cases])
    hits, rr = 0, 0.0
    for q in queries:
        ranked = index.rank(q.query, limit=10)
        rel = set(q.relevant)
        first = next((i for i, d in enumerate(ranked, 1) if d in rel), None)
        hits += bool(first and first <= 5)
        rr += 1 / first if first else 0.0
    out = {"queries": len(queries), "hit@5": hits / len(queries), "mrr@10": rr / len(queries)}
    if similar:
        by_id = {c.id: c for c in cases}
        open_ids = frozenset(c.id for c in cases if c.is_open)
        prec = [len(set(index.rank(case_text(by_id[s.case]), limit=5, exclude=open_ids)) & set(s.similar)) / 5
                for s in similar]
        out["similar p@5"] = sum(prec) / len(prec)
    return out


def main() -> None:
    for name in SETS:
        r = evaluate(name)
        print(name.ljust(12), "  ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()))


if __name__ == "__main__":
    main()
