"""A synthetic but realistic operational history: services, alert families, root causes, remediations,
dead ends and human overrides, written in VARIED wording (several agents' styles, synonyms, paraphrases).

Deterministic by seed: the same (seed, n_entries) always yields the same cases, entries and ground truth.
Ground truth (each case's root cause) is NOT stored in the journal's text or labels the ranking uses:
cases carry a `gen` label (their generator key) that only the benchmark reads.

    python -m bench.history --entries 10000 --out /tmp/hist.db          # SQLite file
    python -m bench.history --entries 100000 --out postgresql://postgres@127.0.0.1/hist

Small sizes may use the store's normal append path (`write_via_api`); large sizes insert straight into
the store's tables, one transaction per batch. The full-text index is maintained the normal way (the
FTS5 insert trigger on SQLite, the generated tsvector column on PostgreSQL).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sharedctx.model import GENESIS_HASH
from sharedctx.store.base import open_store

EPOCH = datetime(2025, 1, 1, tzinfo=UTC)

SERVICES = {
    # service: (datastore, upstream dependency, queue)
    "payments-api": ("payments-db", "card-processor", "payments-events"),
    "checkout": ("checkout-db", "payments-api", "orders-queue"),
    "auth": ("auth-db", "ldap", "session-events"),
    "search": ("search-es", "catalog", "index-queue"),
    "inventory": ("inventory-db", "warehouse-api", "stock-events"),
    "orders": ("orders-db", "inventory", "orders-queue"),
    "notifications": ("notify-redis", "smtp-relay", "notify-queue"),
    "ledger": ("ledger-db", "payments-api", "ledger-events"),
    "gateway": ("gateway-cache", "auth", "access-logs"),
    "shipping": ("shipping-db", "carrier-api", "shipping-events"),
    "billing": ("billing-db", "tax-service", "invoice-queue"),
    "catalog": ("catalog-db", "media", "catalog-events"),
    "media": ("media-store", "cdn", "transcode-queue"),
    "recommendations": ("reco-redis", "feature-store", "reco-events"),
    "user-profile": ("profile-db", "auth", "profile-events"),
    "analytics": ("analytics-warehouse", "kafka", "clickstream"),
}


@dataclass(frozen=True)
class Cause:
    """One root cause: how it shows up, how agents describe it, what was tried, what fixed it."""

    id: str
    alerts: tuple[str, ...]
    symptoms: tuple[str, ...]  # alert / triage wording
    findings: tuple[str, ...]  # the real cause, in several agents' words
    fixes: tuple[str, ...]  # the remediation that worked
    dead_ends: tuple[str, ...]  # plausible but wrong actions
    risky: tuple[str, ...]  # actions a human tends to reject or override
    query_words: tuple[str, ...]  # how people ASK about it (not copied from the texts above)
    fix_words: tuple[str, ...]  # how people refer to the fix when asking
    needs_db: bool = False


CAUSES: tuple[Cause, ...] = (
    Cause(
        "db-pool-exhaustion",
        ("DBConnectionsSaturated", "HighErrorRate"),
        (
            "{svc} returning 5xx, timeouts acquiring a database connection",
            "requests to {svc} stall waiting for a connection from the pool",
            "{svc}: 'remaining connection slots are reserved' errors in logs",
        ),
        (
            "connection pool exhausted on {db}: {n}/{n} connections in use, {m} waiters",
            "{db} hit max_connections; pgbouncer queue growing, clients get 'too many clients already'",
            "leaked connections: a code path in {svc} never returns connections to the pool",
            "all pool slots taken — idle-in-transaction sessions from {svc} holding connections",
        ),
        (
            "raised pool size from {n} to {n2} and recycled leaked sessions",
            "killed idle-in-transaction sessions on {db} and set idle_in_transaction_session_timeout",
            "rolled back {svc} deploy {deploy} which introduced the connection leak",
        ),
        ("restarted {svc} pods (errors came back after 10 minutes)", "scaled {svc} replicas up"),
        ("restart {db} primary", "fail over {db} to the replica"),
        ("db connection pool", "database connections maxed out", "pool exhaustion", "ran out of db connections"),
        ("fix", "resolve", "handle"),
        needs_db=True,
    ),
    Cause(
        "bad-deploy-regression",
        ("HighErrorRate", "HighLatencyP99"),
        (
            "error rate on {svc} jumped from 0.1% to {pct}% right after a release",
            "{svc} 5xx spike starting at the deploy of build {deploy}",
            "elevated failures on {svc}, coincides with rollout {deploy}",
        ),
        (
            "regression in build {deploy}: new serializer throws on null fields",
            "deploy {deploy} changed the retry config; upstream calls now fail fast",
            "canary of {deploy} shows the same errors; previous build is clean",
            "bisected to commit in release {deploy}; feature flag default flipped",
        ),
        (
            "rolled back {svc} to the previous build",
            "reverted release {deploy} and redeployed the last good version",
            "turned off the feature flag introduced in {deploy}",
        ),
        ("restarted {svc} pods", "cleared the {svc} cache"),
        ("hotfix forward instead of rolling back", "skip canary and push the patch to all regions"),
        ("bad release", "broken deploy", "regression after a rollout", "new version broke"),
        ("roll back", "revert", "undo the release"),
    ),
    Cause(
        "oom-kill",
        ("PodCrashLooping", "ContainerOOMKilled"),
        (
            "{svc} pods restarting repeatedly, exit code 137",
            "{svc} in CrashLoopBackOff; containers killed by the kernel",
            "memory of {svc} climbs until the pod dies",
        ),
        (
            "containers OOMKilled: heap grows to the {mem}Mi limit under load",
            "memory leak in {svc} — RSS grows ~{n}MB/h, cache has no eviction",
            "out of memory: JVM heap set above the container limit",
            "kernel oom-killer terminated {svc}; working set at limit",
        ),
        (
            "raised the memory limit to {mem2}Mi and capped the cache size",
            "fixed the unbounded cache in {svc} and redeployed",
            "set -Xmx below the container limit so the JVM stops getting killed",
        ),
        ("restarted the pods", "added more replicas"),
        ("drain the node and reboot it", "disable the cache entirely in production"),
        ("out of memory", "oom killed pods", "pods crash looping on memory", "memory leak"),
        ("fix", "stop", "deal with"),
    ),
    Cause(
        "disk-full",
        ("DiskSpaceLow", "NodeFilesystemAlmostFull"),
        (
            "volume on {db} at {pct}% used and rising",
            "writes failing on {svc}: no space left on device",
            "disk usage alarm on {db} host",
        ),
        (
            "disk full: WAL archive not being cleaned up on {db}",
            "log files filled the volume — debug logging left on in {svc}",
            "no space left: old snapshots and core dumps piling up on {db}",
            "ENOSPC on the data volume; retention job has been failing for days",
        ),
        (
            "expanded the volume by {n}Gi and fixed the archive cleanup",
            "deleted old WAL segments and repaired the retention cron job",
            "turned debug logging off and rotated logs",
        ),
        ("restarted {svc}",),
        ("delete the oldest data files by hand", "drop the audit table to free space"),
        ("disk space", "volume filled up", "storage full", "no space left"),
        ("free up", "fix", "clean up"),
        needs_db=True,
    ),
    Cause(
        "cert-expired",
        ("CertificateExpiringSoon", "TLSHandshakeErrors"),
        (
            "clients of {svc} fail with TLS handshake errors",
            "x509: certificate has expired or is not yet valid when calling {svc}",
            "{svc} health checks failing over https",
        ),
        (
            "TLS certificate for {svc} expired at 00:00 UTC; cert-manager renewal was stuck",
            "expired cert on the {svc} ingress — ACME challenge failing because of a DNS change",
            "the intermediate CA in the bundle expired; chain incomplete",
        ),
        (
            "renewed the certificate manually and fixed the cert-manager issuer",
            "rotated the TLS cert and reloaded the ingress",
            "replaced the bundle with the new intermediate chain",
        ),
        ("restarted {svc}", "rolled back {svc}"),
        ("disable TLS verification in clients temporarily", "switch traffic to plain http"),
        ("expired certificate", "ssl cert expiry", "tls handshake failures", "cert ran out"),
        ("fix", "renew", "rotate"),
    ),
    Cause(
        "dns-resolution",
        ("DNSResolutionFailures", "HighErrorRate"),
        (
            "{svc} cannot reach {dep}: name resolution failures",
            "intermittent 'no such host' errors from {svc}",
            "lookups of {dep} time out from {svc} pods",
        ),
        (
            "CoreDNS pods overloaded: ndots:5 causes {n}x lookups per request",
            "DNS failures: CoreDNS throttled by CPU limits",
            "stale DNS record for {dep} after the migration; TTL too long",
            "resolver conntrack races on UDP, dropped DNS packets",
        ),
        (
            "scaled CoreDNS and set ndots:2 in {svc} pods",
            "enabled NodeLocal DNSCache",
            "fixed the stale record for {dep} and lowered its TTL",
        ),
        ("restarted {svc} pods", "rolled back {svc}"),
        ("hardcode {dep} IPs in /etc/hosts", "restart all CoreDNS pods at once"),
        ("dns lookups failing", "name resolution problems", "coredns issues", "can't resolve hostnames"),
        ("fix", "resolve", "mitigate"),
    ),
    Cause(
        "slow-query",
        ("HighLatencyP99", "DBSlowQueries"),
        (
            "p99 latency of {svc} up {n}x; database time dominates",
            "{svc} requests slow, db CPU at {pct}%",
            "timeouts on {svc} endpoints hitting {db}",
        ),
        (
            "missing index: sequential scan on a {n}M-row table in {db}",
            "query plan changed after ANALYZE; planner picks a nested loop on {db}",
            "N+1 queries introduced in the latest {svc} release",
            "full table scan on {db} — the new filter has no supporting index",
        ),
        (
            "added the missing index concurrently on {db}",
            "pinned the query plan and ran ANALYZE",
            "rolled back the {svc} release with the N+1 query",
        ),
        ("scaled {svc} pods", "restarted {db} connections"),
        ("restart {db}", "add a read replica in the middle of the incident"),
        ("slow database queries", "db latency", "missing index", "queries taking forever"),
        ("fix", "speed up", "resolve"),
        needs_db=True,
    ),
    Cause(
        "upstream-outage",
        ("UpstreamErrors", "HighErrorRate"),
        (
            "{svc} failing calls to {dep}: 503 from the provider",
            "{dep} returning errors; {svc} degraded",
            "third-party dependency {dep} down, {svc} error budget burning",
        ),
        (
            "{dep} is having an outage (status page confirms)",
            "provider incident at {dep}; nothing wrong on our side",
            "all errors are from {dep} calls; our own endpoints healthy",
        ),
        (
            "enabled the fallback provider and opened the circuit breaker for {dep}",
            "waited out the {dep} outage with degraded mode on",
            "switched {svc} to the secondary region of {dep}",
        ),
        ("restarted {svc}", "rolled back {svc}"),
        ("raise retries against {dep} to 10", "turn off circuit breakers"),
        ("third party outage", "vendor down", "dependency outage", "provider having problems"),
        ("handle", "work around", "mitigate"),
    ),
    Cause(
        "cache-stampede",
        ("CacheHitRatioLow", "HighLatencyP99"),
        (
            "{svc} latency spike after cache flush; db load tripled",
            "cache hit ratio of {svc} dropped from 95% to {pct}%",
            "thundering herd on {db} after keys expired",
        ),
        (
            "cache stampede: thousands of keys expired at the same time (same TTL)",
            "redis eviction storm — maxmemory reached, hot keys evicted",
            "thundering herd after a cold cache; no request coalescing in {svc}",
        ),
        (
            "added TTL jitter and request coalescing",
            "raised redis maxmemory and pre-warmed hot keys",
            "rate-limited cache refills from {svc}",
        ),
        ("restarted {svc}", "flushed the cache again"),
        ("flush all redis keys", "restart the redis cluster"),
        ("cache stampede", "cache misses", "thundering herd", "redis evictions"),
        ("fix", "stop", "handle"),
    ),
    Cause(
        "queue-backlog",
        ("QueueLagHigh", "ConsumerLag"),
        (
            "consumer lag on {queue} at {n}k messages and growing",
            "{svc} processing delayed; {queue} backlog",
            "messages in {queue} older than {n} minutes",
        ),
        (
            "consumers stuck on a poison message in {queue}",
            "consumer group rebalancing in a loop — session timeouts",
            "producer burst after a batch job; consumers under-provisioned",
            "dead consumer: partition assignment stuck on a crashed pod",
        ),
        (
            "skipped the poison message to the DLQ and restarted consumers",
            "scaled consumers and raised max.poll.interval",
            "moved the batch job off peak and added consumers",
        ),
        ("restarted the broker", "purged {queue}"),
        ("purge the whole queue", "reset consumer offsets to latest"),
        ("queue backlog", "consumer lag", "messages piling up", "kafka lag"),
        ("clear", "fix", "drain"),
    ),
    Cause(
        "cpu-throttling",
        ("CPUThrottlingHigh", "HighLatencyP99"),
        (
            "{svc} latency up while CPU usage looks moderate",
            "{svc} pods throttled {pct}% of periods",
            "slow responses from {svc} under normal traffic",
        ),
        (
            "CFS throttling: CPU limit of {n}m too low for GC bursts",
            "CPU limits throttle {svc}; requests queue behind GC",
            "noisy neighbour on the node plus tight CPU limit",
        ),
        (
            "raised CPU limits and requests for {svc}",
            "removed the CPU limit and kept requests",
            "moved {svc} to a dedicated node pool",
        ),
        ("restarted {svc}",),
        ("scale the whole cluster up", "disable the HPA"),
        ("cpu throttling", "cpu limits", "throttled pods"),
        ("fix", "tune", "resolve"),
    ),
    Cause(
        "config-error",
        ("HighErrorRate", "ConfigReloadFailed"),
        (
            "{svc} rejecting requests after a config change",
            "{svc} errors: unknown key in config",
            "misrouted traffic on {svc} after a config push",
        ),
        (
            "bad config push: feature flag targeting set to 100% by mistake",
            "typo in the {svc} routing config sends traffic to a decommissioned backend",
            "config map change removed the {dep} endpoint",
        ),
        (
            "reverted the config change",
            "restored the previous config map and reloaded {svc}",
            "fixed the typo in the routing table",
        ),
        ("restarted {svc}", "scaled {svc}"),
        ("edit the config directly on the pods", "disable config validation"),
        ("bad config change", "misconfiguration", "config push broke", "wrong setting"),
        ("revert", "fix", "undo"),
    ),
    Cause(
        "rate-limited",
        ("HTTP429Spike", "UpstreamErrors"),
        (
            "{svc} getting HTTP 429 from {dep}",
            "calls to {dep} throttled; {svc} retries piling up",
            "too many requests errors from {dep}",
        ),
        (
            "hit {dep} API rate limit: retry storm without backoff",
            "quota exhausted at {dep} after traffic growth",
            "a batch job in {svc} consumes the shared {dep} quota",
        ),
        (
            "added exponential backoff with jitter and lowered concurrency",
            "requested a quota increase from {dep}",
            "moved the batch job to its own API key",
        ),
        ("restarted {svc}", "rolled back {svc}"),
        ("rotate API keys to dodge the limit", "disable rate limiting on our side"),
        ("rate limiting", "429 errors", "api quota exceeded", "throttled by the vendor"),
        ("fix", "handle", "get around"),
    ),
    Cause(
        "replication-lag",
        ("ReplicationLagHigh", "StaleReads"),
        ("{db} replica lag at {n}s", "users see stale data from {svc}", "read replicas of {db} far behind the primary"),
        (
            "long-running analytics query on the replica blocks WAL replay",
            "replica IO saturated; vacuum on {db} primary generating WAL too fast",
            "replication slot on {db} stuck, lag keeps growing",
        ),
        (
            "cancelled the long query and set max_standby_streaming_delay",
            "throttled vacuum and upgraded replica disks",
            "routed reads to the primary until the replica caught up",
        ),
        ("restarted {svc}",),
        ("promote the lagging replica", "rebuild the replica from scratch during peak"),
        ("replication lag", "replica behind", "stale reads"),
        ("fix", "handle", "resolve"),
        needs_db=True,
    ),
    Cause(
        "deadlock",
        ("DBDeadlocks", "HighErrorRate"),
        (
            "{svc} transactions failing with deadlock detected",
            "lock waits piling up on {db}",
            "{svc} errors: could not serialize access",
        ),
        (
            "deadlock between two {svc} code paths updating rows in opposite order",
            "lock contention on a hot row in {db}; long transactions hold locks",
            "migration took an ACCESS EXCLUSIVE lock on a busy table",
        ),
        (
            "made both code paths lock rows in the same order",
            "killed the blocking migration and re-ran it off peak",
            "shortened transactions and added retries on serialization failures",
        ),
        ("restarted {svc}", "scaled {svc}"),
        ("restart {db}", "kill all sessions on {db}"),
        ("deadlocks", "lock contention", "blocked transactions", "locking issues"),
        ("fix", "resolve", "untangle"),
        needs_db=True,
    ),
    Cause(
        "network-partition",
        ("PacketLossHigh", "HighErrorRate"),
        (
            "{svc} timeouts to {dep} from one availability zone",
            "packet loss between zones",
            "connection resets from {svc} pods in zone b",
        ),
        (
            "network partition: a top-of-rack switch in zone b dropping packets",
            "cloud provider network incident in one AZ",
            "MTU mismatch after the VPC change; large packets dropped",
        ),
        (
            "drained zone b and shifted traffic to the healthy zones",
            "fixed the MTU on the new subnets",
            "waited for the provider fix with zone b cordoned",
        ),
        ("restarted {svc}", "rolled back {svc}"),
        ("fail everything over to another region", "reboot the switches"),
        ("network problems", "packet loss", "zone outage", "connectivity issues"),
        ("handle", "mitigate", "fix"),
    ),
)
CAUSE_BY_ID = {c.id: c for c in CAUSES}

STYLE_PREFIX = {  # different agents' and people's ways of writing the same thing
    "terse": ("", "", ""),
    "verbose": (
        "Looking at the data, it appears that ",
        "After checking dashboards and logs: ",
        "Summary of what I found — ",
    ),
    "human": ("fwiw ", "ok so ", "heads up: "),
}
FILLER = (
    "Checked the dashboards for the last hour.",
    "Correlated with recent changes.",
    "No related changes in infra.",
    "Paged the owning team.",
    "Traffic is within normal range.",
    "See linked graph.",
    "Customer impact: moderate.",
    "Error budget burn rate elevated.",
    "On-call acknowledged.",
    "Status page updated.",
)
AGENTS = (("primary", "triage-bot"), ("partner", "telemetry"), ("partner", "k8s-inspector"), ("primary", "sre-agent"))
HUMANS = ("alice", "bob", "chen", "dana", "eve", "farid")


@dataclass
class GenEntry:
    kind: str
    author_kind: str
    author_name: str
    title: str
    body: str
    attrs: dict[str, Any] = field(default_factory=dict)
    ref_index: int | None = None  # index of an earlier entry in the same case
    minutes: float = 0.0  # minutes after the case opened


@dataclass
class GenCase:
    key: str
    service: str
    cause: str
    alertname: str
    title: str
    severity: str
    opened: datetime
    resolved_minutes: float | None
    entries: list[GenEntry]


def _fill(rng: random.Random, text: str, svc: str) -> str:
    db, dep, queue = SERVICES[svc]
    return text.format(
        svc=svc,
        db=db,
        dep=dep,
        queue=queue,
        n=rng.choice((20, 50, 64, 100, 200)),
        n2=rng.choice((150, 300, 400)),
        m=rng.randint(5, 900),
        pct=rng.randint(2, 97),
        mem=rng.choice((512, 1024, 2048)),
        mem2=rng.choice((3072, 4096)),
        deploy=f"v{rng.randint(1, 9)}.{rng.randint(0, 40)}.{rng.randint(0, 9)}",
    )


def _styled(rng: random.Random, text: str) -> str:
    style = rng.choice(tuple(STYLE_PREFIX))
    prefix = rng.choice(STYLE_PREFIX[style])
    if prefix:
        text = prefix + text[0].lower() + text[1:]
    extra = " ".join(rng.sample(FILLER, rng.randint(0, 2)))
    return f"{text}. {extra}".strip()


def gen_case(rng: random.Random, index: int, opened: datetime) -> GenCase:
    cause = rng.choice(CAUSES)
    services = [s for s in SERVICES if not cause.needs_db or SERVICES[s][0].endswith("-db")] or list(SERVICES)
    svc = rng.choice(services)
    alert = rng.choice(cause.alerts)
    symptom = _fill(rng, rng.choice(cause.symptoms), svc)
    es: list[GenEntry] = []
    t = 0.0

    def add(kind: str, who: tuple[str, str], title: str, body: str, **kw: Any) -> int:
        nonlocal t
        t += rng.uniform(0.5, 12)
        es.append(GenEntry(kind, who[0], who[1], title[:300], body, minutes=t, **kw))
        return len(es) - 1

    add(
        "alert",
        ("system", "alertmanager"),
        f"{alert} firing for {svc}",
        f"{symptom}.\n\nalertname={alert} service={svc}",
        attrs={"alertname": alert},
    )
    add("triage", rng.choice(AGENTS), f"Triage: {symptom}"[:120], _styled(rng, symptom))
    resolved = rng.random() < 0.9
    # dead ends before the real finding
    if rng.random() < 0.5:
        tried = _fill(rng, rng.choice(cause.dead_ends), svc)
        add(
            "action",
            rng.choice(AGENTS),
            f"Tried: {tried}"[:120],
            _styled(rng, f"{tried}; no lasting improvement"),
            attrs={"result": "no-effect"},
        )
    finding_text = _fill(rng, rng.choice(cause.findings), svc)
    fi = add(
        "finding",
        rng.choice(AGENTS),
        finding_text[:120],
        _styled(rng, finding_text),
        attrs={"confidence": round(rng.uniform(0.5, 0.95), 2)},
    )
    if rng.random() < 0.3:
        verdict = "verified" if rng.random() < 0.8 else "disputed"
        add(
            "note",
            ("human", rng.choice(HUMANS)),
            f"{verdict} finding",
            f"/{'verify' if verdict == 'verified' else 'dispute'}",
            attrs={"verdict": verdict},
            ref_index=fi,
        )
    if rng.random() < 0.4:  # the agent proposes something risky; a human decides
        risky = _fill(rng, rng.choice(cause.risky), svc)
        ri = add(
            "decision-request",
            ("primary", "sre-agent"),
            f"Proposal: {risky}"[:120],
            f"Should I {risky}? Reply /approve or /reject <reason>.",
        )
        outcome = rng.choices(("rejected", "overridden", "approved"), (0.5, 0.3, 0.2))[0]
        human = rng.choice(HUMANS)
        fix_text = _fill(rng, rng.choice(cause.fixes), svc)
        if outcome == "rejected":
            add(
                "decision",
                ("human", human),
                f"Rejected: {risky}"[:120],
                f"/reject too risky during peak, {risky} could make it worse",
                attrs={"outcome": "rejected"},
                ref_index=ri,
            )
        elif outcome == "overridden":
            add(
                "decision",
                ("human", human),
                f"Overridden: {fix_text}"[:120],
                f"/override {fix_text} instead of '{risky}'",
                attrs={"outcome": "overridden", "instead": fix_text},
                ref_index=ri,
            )
        else:
            add("decision", ("human", human), "Approved", "/approve", attrs={"outcome": "approved"}, ref_index=ri)
    if resolved:
        fix = _fill(rng, rng.choice(cause.fixes), svc)
        ri = add("remediation", rng.choice(AGENTS), f"Remediation: {fix}"[:120], _styled(rng, fix))
        ok = rng.random() < 0.85
        add(
            "verification",
            rng.choice(AGENTS),
            "Verified: metrics back to baseline" if ok else "Verification failed",
            "Error rate and latency back within SLO for 15 minutes." if ok else "Still seeing errors after the change.",
            attrs={"verdict": "verified" if ok else "failed"},
            ref_index=ri,
        )
        for _ in range(rng.randint(0, 2)):
            add("note", rng.choice(AGENTS), rng.choice(FILLER), _styled(rng, rng.choice(FILLER)))
        add(
            "resolution",
            ("human", rng.choice(HUMANS)) if rng.random() < 0.5 else rng.choice(AGENTS),
            "Resolved",
            _styled(rng, f"Root cause: {finding_text}. Fix: {fix}"),
        )
    else:
        for _ in range(rng.randint(1, 3)):
            add("note", rng.choice(AGENTS), rng.choice(FILLER), _styled(rng, rng.choice(FILLER)))
    title = f"{alert}: {svc}" if rng.random() < 0.5 else f"{svc} {symptom.split(':')[0]}"[:200]
    return GenCase(
        key=f"c{index:07d}",
        service=svc,
        cause=cause.id,
        alertname=alert,
        title=title,
        severity=rng.choice(("critical", "warning", "warning", "info")),
        opened=opened,
        resolved_minutes=es[-1].minutes if resolved else None,
        entries=es,
    )


def generate(seed: int, n_entries: int) -> Iterator[GenCase]:
    """Cases in time order until about `n_entries` entries were produced."""
    rng = random.Random(seed)
    total = 0
    i = 0
    span_minutes = 365 * 24 * 60
    # cases spread over a year; the step is chosen so any size covers the same year
    est_cases = max(1, n_entries // 9)
    while total < n_entries:
        opened = EPOCH + timedelta(minutes=span_minutes * i / est_cases + rng.uniform(0, 30))
        case = gen_case(rng, i, opened)
        total += len(case.entries)
        i += 1
        yield case


# -- writing ---------------------------------------------------------------------------------------------
def _ts(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ulid(dt: datetime, rng: random.Random) -> str:
    """A ULID for a given time (sortable like the store's ids), deterministic by rng."""
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    value = (int(dt.timestamp() * 1000) << 80) | rng.getrandbits(80)
    return "".join(alphabet[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def _chain_rows(case_id: str, gc: GenCase, rng: random.Random) -> tuple[list[tuple[Any, ...]], str, int]:
    """Entry rows (hash-chained exactly as `Entry.compute_hash` does) for one generated case."""
    rows: list[tuple[Any, ...]] = []
    prev = GENESIS_HASH
    ids: list[str] = []
    for seq, ge in enumerate(gc.entries, start=1):
        ts = gc.opened + timedelta(minutes=ge.minutes)
        eid = _ulid(ts, rng)
        ids.append(eid)
        ref = ids[ge.ref_index] if ge.ref_index is not None else None
        payload = {
            "id": eid,
            "case_id": case_id,
            "seq": seq,
            "ts": _ts(ts),
            "author": {"kind": ge.author_kind, "name": ge.author_name},
            "kind": ge.kind,
            "title": ge.title,
            "body": ge.body,
            "evidence": [],
            "ref": ref,
            "trace_id": None,
            "attrs": ge.attrs,
            "prev_hash": prev,
        }
        canon = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        h = hashlib.sha256(canon + prev.encode("ascii")).hexdigest()
        rows.append(
            (
                eid,
                case_id,
                seq,
                _ts(ts),
                ge.author_kind,
                ge.author_name,
                ge.kind,
                ge.title,
                ge.body,
                "[]",
                ref,
                None,
                json.dumps(ge.attrs, ensure_ascii=False, sort_keys=True),
                prev,
                h,
                "",
            )
        )
        prev = h
    return rows, prev, len(rows)


def write(
    url: str, seed: int, n_entries: int, *, batch_entries: int = 20_000, progress: bool = False
) -> dict[str, Any]:
    """Generate and bulk-insert a history into the store at `url` (migrated first). Returns a summary."""
    store = open_store(url)
    pg = url.startswith(("postgresql://", "postgres://"))
    rng = random.Random(seed * 7919 + 1)
    t0 = time.perf_counter()
    cases: list[tuple[Any, ...]] = []
    entries: list[tuple[Any, ...]] = []
    n_cases = n_e = 0

    def flush() -> None:
        if pg:  # COPY: the generated tsvector column and its GIN index are maintained as on any insert
            with store._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:  # type: ignore[attr-defined]
                with cur.copy(
                    "COPY cases (id, title, service, severity, status, fingerprint, created_at, updated_at, "
                    "resolved_at, last_seq, last_hash, labels) FROM STDIN"
                ) as cp:
                    for row in cases:
                        cp.write_row(row)
                with cur.copy(
                    "COPY entries (id, case_id, seq, ts, author_kind, author_name, kind, title, body, "
                    "evidence, ref, trace_id, attrs, prev_hash, hash, evidence_text) FROM STDIN"
                ) as cp:
                    for row in entries:
                        cp.write_row(row)
            cases.clear()
            entries.clear()
            return
        with store._tx() as c:  # type: ignore[attr-defined]
            c.executemany(
                "INSERT INTO cases (id, title, service, severity, status, fingerprint, created_at, updated_at, "
                "resolved_at, last_seq, last_hash, labels) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                cases,
            )
            c.executemany(
                "INSERT INTO entries (id, case_id, seq, ts, author_kind, author_name, kind, title, body, evidence, "
                "ref, trace_id, attrs, prev_hash, hash, evidence_text) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                entries,
            )
        cases.clear()
        entries.clear()

    for gc in generate(seed, n_entries):
        case_id = _ulid(gc.opened, rng)
        rows, last_hash, n = _chain_rows(case_id, gc, rng)
        last_ts = rows[-1][3]
        resolved_at = last_ts if gc.resolved_minutes is not None else None
        status = "resolved" if resolved_at else rng.choice(("open", "mitigated"))
        fingerprint = f"{gc.alertname}:{gc.service}" + ("" if resolved_at else f":{gc.key}")
        labels = json.dumps({"alertname": gc.alertname, "service": gc.service, "gen": gc.key})
        cases.append(
            (
                case_id,
                gc.title,
                gc.service,
                gc.severity,
                status,
                fingerprint,
                _ts(gc.opened),
                last_ts,
                resolved_at,
                n,
                last_hash,
                labels,
            )
        )
        entries.extend(rows)
        n_cases += 1
        n_e += n
        if len(entries) >= batch_entries:
            flush()
            if progress:
                print(f"  {n_e:,} entries ({time.perf_counter() - t0:.0f}s)", file=sys.stderr)
    if entries:
        flush()
    if pg:
        with store._pool.connection() as conn:  # type: ignore[attr-defined]
            conn.execute("ANALYZE")
    store.close()
    return {"url": url, "seed": seed, "cases": n_cases, "entries": n_e, "seconds": time.perf_counter() - t0}


def ground_truth(seed: int, n_entries: int) -> dict[str, tuple[str, str]]:
    """gen key -> (service, cause) for the history `generate(seed, n_entries)` writes."""
    return {c.key: (c.service, c.cause) for c in generate(seed, n_entries)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--entries", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", required=True, help="SQLite path or postgresql:// URL (an empty database)")
    a = p.parse_args(argv)
    print(json.dumps(write(a.out, a.seed, a.entries, progress=True)))


if __name__ == "__main__":
    main()
