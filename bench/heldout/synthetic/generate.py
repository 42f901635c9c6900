"""Generate the synthetic held-out incident history: cases, queries and similar-case ground truth.

    python -m bench.heldout.synthetic.generate            # rewrites the .jsonl files beside this script
    python -m bench.heldout.synthetic.generate --check    # exit 1 if the committed files differ from a fresh run

Written independently of the project's search engine and tuning set (see README.md here). Standard library only,
one fixed seed, so the output is byte-identical on every run. Ground truth comes from the generator's own labels
(which cause a case was generated from), never from any engine's output.

Why it looks the way it does: real histories are written by many people in their own words. Each entry is
rendered in the style of its author (terse on-call shorthand, long paragraphs, typos, an agent's structured
notes, a non-native speaker's phrasing), the cause catalog gives every step several wordings, and cases quote
ruled-out hypotheses from look-alike causes, so surface words alone do not identify the cause.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.heldout.synthetic.causes import BY_KEY, CAUSES, Cause

SEED = 20261203
N_CASES = 440
OPEN_SHARE = 0.14
OPEN_DIAGNOSED = 0.15  # share of open cases that already carry a diagnosis
SPARSE_SHARE = 0.3  # share of resolved cases written up in three lines
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)  # the fixed "now" for time-phrase queries (README.md)
START = datetime(2025, 10, 1, tzinfo=UTC)
OUT = Path(__file__).resolve().parent

TENANTS = ("Northwind", "Brightwave", "Kestrel Foods", "Halvorsen AS", "Orbital Freight", "Tamarind Health",
           "Pinecrest Bank", "Quokka Games", "Vantablue", "Meridian Labs", "Lindqvist Retail", "Sunbird Travel",
           "Okapi Logistics", "Granite Insurance")
REGIONS = ("eu-west-1", "us-east-1", "ap-southeast-2", "sa-east-1", "eu-central-1", "ap-south-1")
DEPS = ("stripe", "salesforce", "hubspot", "dhl-api", "twilio", "identity-provider", "postgres-primary",
        "redis-cache", "geo-vendor", "netsuite", "zendesk")

# (name, style): who writes in this history and how.
AUTHORS: tuple[tuple[str, str], ...] = (
    ("dana.k", "terse"), ("jsmith", "terse"), ("ops-oncall", "terse"),
    ("r.oyelaran", "verbose"), ("helene.b", "verbose"),
    ("mkowalski", "typo"), ("tbui", "typo"),
    ("primary:triage-bot", "agent"), ("partner:telemetry", "agent"),
    ("ivanov.p", "nonnative"), ("yuki.t", "nonnative"),
    ("amara", "plain"), ("lee.s", "plain"), ("f.rossi", "plain"),
)
SUPPORT = ("support:carla", "support:tiago", "cs-team")

ABBREV = {"database": "db", "connections": "conns", "connection": "conn", "production": "prod",
          "configuration": "config", "because": "b/c", "with": "w/", "minutes": "min", "seconds": "s",
          "errors": "errs", "requests": "reqs", "request": "req", "deployment": "deploy", "customers": "custs",
          "instances": "insts", "kubernetes": "k8s", "approximately": "~", "about": "~", "temporarily": "tmp",
          "investigating": "looking", "restarted": "rst'd", "application": "app", "latency": "lat",
          "certificate": "cert", "replicas": "replicas", "environment": "env", "number": "#"}
# Different people call the same thing differently. Each author gets a consistent idiolect: one wording per group,
# used most of the time (people are not perfectly consistent). Applied before the author's style.
LEXICON: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("database", ("database", "db", "datastore", "DB")), ("connections", ("connections", "conns", "sockets")),
    ("errors", ("errors", "failures", "exceptions", "5xx")), ("latency", ("latency", "response time", "slowness")),
    ("restarted", ("restarted", "bounced", "recycled")), ("deploy", ("deploy", "release", "rollout", "push")),
    ("deployed", ("deployed", "released", "rolled out", "shipped")), ("rolled back", ("rolled back", "reverted")),
    ("customers", ("customers", "users", "clients")), ("users", ("users", "customers", "people")),
    ("disk", ("disk", "volume", "drive")), ("certificate", ("certificate", "cert", "TLS cert", "x509 cert")),
    ("job", ("job", "task", "batch")), ("nodes", ("nodes", "hosts", "boxes", "VMs")),
    ("pods", ("pods", "containers", "replicas")), ("alert", ("alert", "page", "alarm")),
    ("twice", ("twice", "two times", "double")), ("stale", ("stale", "outdated", "old")),
    ("slow", ("slow", "sluggish", "laggy", "degraded")), ("timeouts", ("timeouts", "timed-out calls", "hangs")),
    ("outage", ("outage", "downtime", "incident")), ("config", ("config", "settings", "configuration")),
    ("load balancer", ("load balancer", "LB", "ALB")), ("memory", ("memory", "RAM", "mem")),
    ("queue", ("queue", "backlog")), ("requests", ("requests", "calls", "hits")),
    ("missing", ("missing", "gone", "absent", "lost")), ("traffic", ("traffic", "load", "volume")),
    ("server", ("server", "host", "box")), ("fixed", ("fixed", "sorted", "mitigated")),
    ("stuck", ("stuck", "wedged", "hung")), ("spike", ("spike", "jump", "surge")),
)
_LEX_RE = [(re.compile(rf"\b{re.escape(word)}\b", re.IGNORECASE), word) for word, _ in LEXICON]


def idiolect(author: str) -> dict[str, str]:
    """The wording one author prefers for each group; seeded by the name, so it is stable across runs."""
    rng = random.Random(f"{SEED}:{author}")
    return {word: rng.choice(options) for word, options in LEXICON}


def _reword(rng: random.Random, text: str, author: str) -> str:
    words = idiolect(author)

    def sub(word: str) -> Callable[[re.Match[str]], str]:
        def repl(m: re.Match[str]) -> str:
            if rng.random() > 0.8:
                return m.group(0)
            new = words[word]
            return new[0].upper() + new[1:] if m.group(0)[0].isupper() else new
        return repl

    for pattern, word in _LEX_RE:
        text = pattern.sub(sub(word), text)
    return text


ARTICLES = re.compile(r"\b(the|a|an)\s+", re.IGNORECASE)

GENERIC_TITLES = ("{svc} incident", "prod issue - {svc}", "{alert} on {svc}", "P2: {svc} degraded",
                  "{svc} problems", "investigate {svc}", "SEV3 {svc}")
NOISE = (
    ("note", "Opened a bridge, paging the {svc} owner."),
    ("note", "Status page updated: investigating degraded performance."),
    ("action", "Rolled back the last deploy of {svc} as a precaution, no change."),
    ("action", "Scaled {svc} from 6 to 12 replicas, did not help."),
    ("human", "Any ETA? {tenant} is asking on their account channel."),
    ("human", "{tenant} opened a P1 ticket about this."),
    ("note", "Dashboards: {region} looks the same as the other regions."),
    ("finding", "No deploys to {svc} in the last 24h according to the change log."),
    ("human", "is this related to the maintenance window yesterday?"),
    ("note", "handing over to the next shift, notes above are current"),
)
VAGUE = ("{svc} is acting up again", "customers complaining about {svc}, can someone look",
         "seeing weird behaviour on {svc} since this morning", "{svc} not healthy, paging owner",
         "{tenant} says things are broken on their side", "something is off with {svc} in {region}")
DECISIONS = ("Decided to mitigate now and do the root cause analysis tomorrow.",
             "Decision: no rollback, the last release is unrelated.",
             "We will not fail over the region; impact is contained.",
             "Agreed to leave the temporary fix in place over the weekend.")
# (phrase, start, end): time phrases resolved against NOW; windows are half-open [start, end).
TIME_WINDOWS: tuple[tuple[str, datetime, datetime], ...] = (
    ("yesterday", datetime(2026, 11, 29, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC)),
    ("last week", datetime(2026, 11, 23, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC)),
    ("last month", datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)),
    ("in March", datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)),
    ("in August", datetime(2026, 8, 1, tzinfo=UTC), datetime(2026, 9, 1, tzinfo=UTC)),
    ("back in January", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)),
    ("last year", datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)),
    ("earlier this month", datetime(2026, 11, 1, tzinfo=UTC), NOW),
)
# Narrow windows need cases to find: these (phrase, cause) pairs get one case planted inside the window.
PLANTED_TIME_CAUSES = (("yesterday", "ebs_burst"), ("yesterday", "fd_limit"), ("last week", "oauth_secret"),
                       ("last week", "replica_lag"))
N_SERVICE_QUERIES = 20
N_KNOWN_ITEM_QUERIES = 20
TIME_CAUSES_PER_WINDOW = 2


@dataclass
class Case:
    id: str
    cause: str
    service: str
    alert: str
    opened_at: datetime
    outcome: str
    title: str
    entries: list[dict[str, str]]
    tenant: str
    host: str

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "service": self.service, "alert": self.alert,
                "opened_at": self.opened_at.strftime("%Y-%m-%dT%H:%M:%SZ"), "entries": self.entries,
                "outcome": self.outcome}

    def text(self) -> str:
        return " ".join([self.title, *(e["text"] for e in self.entries)])


# --- writers' styles ---------------------------------------------------------------------------------------------

def _terse(rng: random.Random, text: str) -> str:
    text = ARTICLES.sub("", text.lower())
    words = [ABBREV.get(w, w) for w in text.split()]
    return " ".join(words).rstrip(".")


def _verbose(rng: random.Random, text: str) -> str:
    pre = rng.choice(("So, after digging into this for a while: ", "Quick update for everyone following along. ",
                      "I want to write down what we know so far. ", "Summarising the last half hour: ", ""))
    post = rng.choice((" I'll keep looking and post again in 30 minutes.", " Let me know if anyone sees otherwise.",
                       " This matches what the graphs showed earlier in the evening.", ""))
    return f"{pre}{text}{post}"


def _typos(rng: random.Random, text: str, rate: float = 0.18) -> str:
    out = []
    for w in text.split(" "):
        if len(w) > 4 and w.isalpha() and rng.random() < rate:
            i = rng.randrange(1, len(w) - 2)
            op = rng.random()
            if op < 0.5:
                w = w[:i] + w[i + 1] + w[i] + w[i + 2:]  # swap
            elif op < 0.8:
                w = w[:i] + w[i + 1:]  # drop
            else:
                w = w[:i] + w[i] + w[i:]  # double
        out.append(w)
    return " ".join(out)


def _agent(rng: random.Random, text: str, kind: str = "finding") -> str:
    if kind in ("action", "resolution", "decision"):
        return f"{kind.capitalize()}: {text}"
    conf = rng.choice(("low", "medium", "high"))
    return rng.choice((f"Observation: {text} Confidence: {conf}.", f"{text} (evidence attached, confidence {conf})",
                       f"Checked: {text}"))


def _nonnative(rng: random.Random, text: str) -> str:
    text = re.sub(r"\bthe\b ", "", text, count=2) if rng.random() < 0.6 else text
    greeting = rng.choice(("Hello, ", "Hi all, ", "Dear team, ", ""))
    return greeting + text + rng.choice((" Please check.", " Thank you.", ""))


STYLES: dict[str, Callable[[random.Random, str], str]] = {
    "terse": _terse, "verbose": _verbose, "typo": _typos, "agent": _agent, "nonnative": _nonnative,
    "plain": lambda rng, text: text,
}


def _fill(template: str, values: dict[str, str]) -> str:
    return template.format(**values)


def _write(rng: random.Random, kind: str, template: str, values: dict[str, str],
           author: tuple[str, str] | None = None) -> dict[str, str]:
    people = [a for a in AUTHORS if a[1] != "agent"] if kind == "human" else AUTHORS  # agents write no "human" entries
    name, style = author or rng.choice(people)
    filled = _reword(rng, _fill(template, values), name)
    text = _agent(rng, filled, kind) if style == "agent" else STYLES[style](rng, filled)
    if style != "typo" and rng.random() < 0.05:
        text = _typos(rng, text, rate=0.08)  # anyone slips sometimes
    return {"kind": kind, "author": name, "text": text}


# --- cases ------------------------------------------------------------------------------------------------------

def _values(rng: random.Random, cause: Cause, service: str) -> dict[str, str]:
    return {"svc": service, "n": str(rng.choice((3, 4, 7, 12, 40, 180, 2100))), "pct": str(rng.randint(12, 78)),
            "tenant": rng.choice(TENANTS), "region": rng.choice(REGIONS), "host": f"{service}-{rng.randint(1, 40):02d}",
            "dep": rng.choice(DEPS), "mins": str(rng.choice((4, 9, 17, 25, 45, 70))),
            "ver": f"{rng.randint(3, 7)}.{rng.randint(0, 19)}"}


def _when(rng: random.Random, open_: bool) -> datetime:
    if open_:
        return NOW - timedelta(minutes=rng.randint(60, 45 * 24 * 60))
    span = int((NOW - START).total_seconds() / 60)
    return START + timedelta(minutes=rng.randint(0, span - 60))


def make_case(rng: random.Random, idx: int, cause: Cause, open_: bool, opened_at: datetime | None = None) -> Case:
    service = rng.choice(cause.services)
    alert = rng.choice(cause.alerts)
    v = _values(rng, cause, service)
    v["alert"] = alert or "alert"
    title = _fill(rng.choice(cause.titles) if rng.random() < 0.7 or not alert else rng.choice(GENERIC_TITLES), v)
    title = _reword(rng, title, rng.choice(AUTHORS)[0])
    sparse = not open_ and rng.random() < SPARSE_SHARE  # some incidents get two lines and a resolution, nothing more
    entries: list[dict[str, str]] = []
    if alert:
        entries.append({"kind": "note", "author": "system:alertmanager",
                        "text": f"[FIRING] {alert} service={service} instance={v['host']} region={v['region']}"})
    if open_:  # an open case is young: how someone first reported it, maybe one observation, a hunch
        if rng.random() < 0.5:
            entries.append(_write(rng, "human", rng.choice(VAGUE), v))
        entries.append(_write(rng, "human", rng.choice(cause.reports), v))
        symptoms = rng.sample(cause.symptoms, k=1) if rng.random() < 0.4 else []
    else:
        if rng.random() < 0.5:
            entries.append(_write(rng, "human", rng.choice(cause.reports), v))
        symptoms = rng.sample(cause.symptoms, k=1 if sparse else rng.choice((1, 1, 2)))
    for s in symptoms:
        entries.append(_write(rng, rng.choice(("finding", "note", "human")), s, v))
    if not sparse and rng.random() < 0.35:
        entries.append(_write(rng, "human", "{tenant} reports the problem too, their team is blocked", v,
                              author=(rng.choice(SUPPORT), "plain")))
    for kind, text in rng.sample(NOISE, k=0 if sparse else rng.choice((0, 1, 1, 2))):
        entries.append(_write(rng, kind, text, v))
    if cause.confusers and not sparse and rng.random() < 0.45:  # a look-alike cause considered and ruled out
        other = BY_KEY[rng.choice(cause.confusers)]
        if rng.random() < 0.5:
            entries.append(_write(rng, "note", "maybe " + rng.choice(other.hunches), v))
        entries.append(_write(rng, "finding", other.rule_out, v))
    if open_:
        entries.append(_write(rng, "note", rng.choice(cause.hunches), v))
        if rng.random() < OPEN_DIAGNOSED:
            entries.append(_write(rng, "finding", rng.choice(cause.findings), v))
    else:
        for f in rng.sample(cause.findings, k=1 if sparse else rng.choice((1, 1, 2))):
            entries.append(_write(rng, "finding", f, v))
        if not sparse:
            entries.append(_write(rng, "action", rng.choice(cause.actions), v))
        if rng.random() < 0.3:
            entries.append(_write(rng, "decision", rng.choice(DECISIONS), v))
        entries.append(_write(rng, "resolution", rng.choice(cause.resolutions), v))
    return Case(id=f"h-{idx:04d}", cause=cause.key, service=service, alert=alert,
                opened_at=opened_at or _when(rng, open_), outcome="open" if open_ else "resolved",
                title=title, entries=entries, tenant=v["tenant"], host=v["host"])


def make_cases(rng: random.Random) -> list[Case]:
    plan = [CAUSES[i % len(CAUSES)] for i in range(N_CASES - len(PLANTED_TIME_CAUSES))]
    rng.shuffle(plan)
    cases: list[Case] = []
    for cause in plan:
        cases.append(make_case(rng, len(cases) + 1, cause, rng.random() < OPEN_SHARE))
    windows = {p: (s, e) for p, s, e in TIME_WINDOWS}
    for phrase, key in PLANTED_TIME_CAUSES:
        start, end = windows[phrase]
        at = start + timedelta(minutes=rng.randint(0, int((end - start).total_seconds() / 60) - 1))
        cases.append(make_case(rng, len(cases) + 1, BY_KEY[key], False, opened_at=at))
    return cases


# --- queries and similar cases ----------------------------------------------------------------------------------

def _service_words(rng: random.Random, service: str) -> str:
    head = service.split("-")[0]
    return rng.choice((head, service.replace("-", " "), service))


def _mention(rng: random.Random, cause: Cause) -> str:
    """The cause as someone would name it in passing: its short name or one of its hand-written queries."""
    own = [q[1] for q in cause.queries if q[0] in ("symptom", "paraphrase") and len(q) == 2]
    return rng.choice((cause.phrase, *own))


def make_queries(rng: random.Random, cases: list[Case]) -> list[dict[str, Any]]:
    by_cause: dict[str, list[Case]] = {}
    for c in cases:
        by_cause.setdefault(c.cause, []).append(c)
    queries: list[tuple[str, str, list[str]]] = []
    for cause in CAUSES:  # hand-written, cause level
        for style, text, *also in cause.queries:
            queries.append((style, text, [c.id for key in (cause.key, *also) for c in by_cause[key]]))
    # service-scoped: the cause in someone's words plus the service as people say it
    for cause in rng.sample(CAUSES, k=N_SERVICE_QUERIES):
        svc = rng.choice(sorted({c.service for c in by_cause[cause.key]}))
        said = _service_words(rng, svc)
        # "search" names every search-* service, so all of them count; "search api" names one
        ids = [c.id for c in by_cause[cause.key] if c.service == svc or c.service.split("-")[0] == said]
        text = rng.choice(("{p} on {s}", "{s}: {p}", "{s} {p} again?"))
        queries.append(("service", text.format(p=_mention(rng, cause), s=said), ids))
    # time phrases relative to NOW: the cause must have cases both inside and outside the window
    for phrase, start, end in TIME_WINDOWS:
        planted = [BY_KEY[k] for p, k in PLANTED_TIME_CAUSES if p == phrase]
        options = planted or rng.sample([
            c for c in CAUSES
            if any(start <= x.opened_at < end for x in by_cause[c.key])
            and any(not start <= x.opened_at < end for x in by_cause[c.key])], k=TIME_CAUSES_PER_WINDOW)
        for cause in options:
            ids = [c.id for c in by_cause[cause.key] if start <= c.opened_at < end]
            text = rng.choice(("{p} {t}", "the {p} incident {t}", "{t} we had {p}, what fixed it"))
            queries.append(("time", text.format(p=_mention(rng, cause), t=phrase), ids))
    # known items: a detail only some cases carry (customer, host) plus the cause in other words
    resolved = [c for c in cases if c.outcome == "resolved"]
    known = 0
    for case in rng.sample(resolved, k=len(resolved)):
        if known == N_KNOWN_ITEM_QUERIES:
            break
        cause = BY_KEY[case.cause]
        if case.tenant in case.text():
            detail = case.tenant
            text = rng.choice(("that {p} thing {d} complained about", "{d} {p}", "{p} when {d} was affected"))
        elif case.host in case.text():
            detail = case.host
            text = rng.choice(("{p} on {d}", "{d} {p} incident"))
        else:
            continue
        ids = [c.id for c in by_cause[cause.key] if detail in c.text()]
        queries.append(("known-item", text.format(p=_mention(rng, cause), d=detail), ids))
        known += 1
    out = []
    for i, (style, text, ids) in enumerate(queries, start=1):
        if ids:
            out.append({"id": f"q-{i:03d}", "query": text, "relevant": sorted(ids), "style": style})
    return out


def make_similar(cases: list[Case]) -> list[dict[str, Any]]:
    out = []
    for case in cases:
        if case.outcome != "open":
            continue
        same = sorted(c.id for c in cases if c.cause == case.cause and c.outcome == "resolved")
        if same:
            out.append({"case": case.id, "similar": same})
    return out


def build() -> dict[str, str]:
    """All output files as text, keyed by file name."""
    rng = random.Random(SEED)
    cases = make_cases(rng)
    queries = make_queries(rng, cases)

    def lines(rows: list[dict[str, Any]]) -> str:
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)

    return {
        "cases.jsonl": lines([c.as_json() for c in cases]),
        "queries.jsonl": lines(queries),
        "similar.jsonl": lines(make_similar(cases)),
        "labels.jsonl": lines([{"case": c.id, "cause": c.cause} for c in cases]),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed files instead of writing")
    args = ap.parse_args(argv)
    files = build()
    if args.check:
        stale = [n for n, text in files.items() if not (OUT / n).exists() or (OUT / n).read_text() != text]
        if stale:
            print("out of date:", ", ".join(stale), file=sys.stderr)
            return 1
        return 0
    for name, text in files.items():
        (OUT / name).write_text(text)
    print({n: t.count("\n") for n, t in files.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
