"""Where the telemetry partner's data comes from: a Prometheus server, or the bundled sample incident.

Both sources answer the same three questions — a metric series over a window, log lines, spans —
so the partner's capabilities are written once and only the reading differs.

The sample (`agents/data/`) is a *recording* of one incident, with times stored as offsets in
seconds from the moment the alert fired: checkout's 5xx ratio spikes after payments 2.14.0 is
deployed (its DB pool shrank from 50 to 10 connections); a rollback at +60 s ends it. A question
about a window is answered by anchoring offset 0 at the window's end (the alert is "now"); a
recovery check (`after_remediation=True`) replays the part after the rollback, as if the rollback
had just happened. That keeps the demo honest about what it is, and deterministic.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any, Protocol

import httpx

__all__ = ["LogLine", "PrometheusSource", "SampleSource", "Series", "Span", "TelemetrySource"]


@dataclass
class Series:
    """One metric series over a window, with the statistics a responder looks at first."""

    metric: str
    service: str
    query: str
    unit: str
    points: list[tuple[datetime, float]]
    source: str
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def values(self) -> list[float]:
        return [v for _, v in self.points if not math.isnan(v)]

    @property
    def baseline(self) -> float:
        """The median of the first third of the window: what normal looked like before it went wrong."""
        vals = self.values
        return statistics.median(vals[: max(1, len(vals) // 3)]) if vals else 0.0

    @property
    def peak(self) -> tuple[datetime, float] | None:
        pts = [(t, v) for t, v in self.points if not math.isnan(v)]
        return max(pts, key=lambda p: p[1]) if pts else None

    @property
    def latest(self) -> float | None:
        vals = self.values
        return vals[-1] if vals else None

    def rise_start(self, factor: float = 3.0, floor: float = 0.0) -> datetime | None:
        """When the series first went above `factor` × baseline (and above `floor`) and stayed there."""
        limit = max(self.baseline * factor, floor)
        start = None
        for t, v in self.points:
            start = start or t if v > limit else None
        return start


@dataclass
class LogLine:
    ts: datetime
    service: str
    level: str
    message: str
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent: str | None
    service: str
    operation: str
    ts: datetime
    duration_ms: float
    status: str
    error: str | None = None


class TelemetrySource(Protocol):
    name: str

    async def metrics(
        self, service: str, start: datetime, end: datetime, *, query: str | None, after_remediation: bool
    ) -> list[Series]: ...

    async def logs(self, start: datetime, end: datetime) -> list[LogLine] | None: ...

    async def spans(self, start: datetime, end: datetime) -> list[Span] | None: ...


# -- the bundled sample incident ------------------------------------------------------------------


@cache
def _sample(name: str) -> Any:
    text = resources.files("sharedctx.agents").joinpath("data", name).read_text(encoding="utf-8")
    if name.endswith(".jsonl"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


class SampleSource:
    """The recorded incident in `agents/data/`, replayed relative to the question's window."""

    name = "sample-dataset"

    def __init__(self) -> None:
        meta = _sample("metrics.json")
        self.rollback = float(meta["rollback_offset"])
        self.end_offset = max(p[0] for s in meta["series"] for p in s["points"])

    def _window(self, start: datetime, end: datetime, after: bool) -> tuple[float, float, datetime]:
        """The offsets to show and the wall-clock time of offset 0."""
        span = (end - start).total_seconds()
        if after:  # the after-rollback part, ending "now"
            return self.rollback, self.end_offset, end - timedelta(seconds=self.end_offset)
        return -span, 0.0, end

    async def metrics(
        self, service: str, start: datetime, end: datetime, *, query: str | None, after_remediation: bool
    ) -> list[Series]:
        lo, hi, zero = self._window(start, end, after_remediation)
        out = []
        for s in _sample("metrics.json")["series"]:
            pts = [(zero + timedelta(seconds=o), float(v)) for o, v in s["points"] if lo <= o <= hi]
            out.append(Series(s["metric"], s["service"], s["query"], s["unit"], pts, self.name))
        # The asked-about service first: it is what the primary's alert is about.
        return sorted(out, key=lambda s: (s.service != service, s.metric != "error_ratio"))

    async def logs(self, start: datetime, end: datetime) -> list[LogLine]:
        lo, hi, zero = self._window(start, end, False)
        return [
            LogLine(zero + timedelta(seconds=r["offset"]), r["service"], r["level"], r["message"], r.get("attrs", {}))
            for r in _sample("logs.jsonl")
            if lo <= r["offset"] <= hi
        ]

    async def spans(self, start: datetime, end: datetime) -> list[Span]:
        lo, hi, zero = self._window(start, end, False)
        return [
            Span(s["trace_id"], s["span_id"], s["parent"], s["service"], s["operation"],
                 zero + timedelta(seconds=s["offset"]), s["duration_ms"], s["status"], s.get("error"))
            for s in _sample("spans.json")["spans"]
            if lo <= s["offset"] <= hi
        ]


# -- Prometheus ---------------------------------------------------------------------------------------


def default_error_ratio_query(service: str, window: str = "1m") -> str:
    sel = f'service="{service}"' if service else ""
    comma = "," if sel else ""
    return (
        f'sum(rate(http_requests_total{{{sel}{comma}code=~"5.."}}[{window}])) / '
        f"sum(rate(http_requests_total{{{sel}}}[{window}]))"
    )


def _describe_query(query: str, values: list[float]) -> tuple[str, str]:
    """A name and unit for a caller's query: a quotient of 5xx over all requests is an error ratio."""
    ratio = " / " in query and all(0.0 <= v <= 1.0 for v in values if not math.isnan(v))
    if ratio and re.search(r'code=~?"5', query):
        return "error_ratio", "ratio"
    return "query", "ratio" if ratio else ""


class PrometheusSource:
    """Reads `/api/v1/query_range` of a Prometheus server. Logs and spans are not Prometheus's to give."""

    name = "prometheus"

    def __init__(self, url: str, *, rate_window: str = "1m", client: httpx.AsyncClient | None = None) -> None:
        self.url = url.rstrip("/")
        self.rate_window = rate_window
        self._client = client

    async def metrics(
        self, service: str, start: datetime, end: datetime, *, query: str | None, after_remediation: bool
    ) -> list[Series]:
        q = query or default_error_ratio_query(service, self.rate_window)
        step = max(1.0, (end - start).total_seconds() / 250)
        params = {"query": q, "start": f"{start.timestamp():.3f}", "end": f"{end.timestamp():.3f}", "step": f"{step:g}"}
        client = self._client or httpx.AsyncClient(timeout=10)
        try:
            resp = await client.get(f"{self.url}/api/v1/query_range", params=params)
        except httpx.HTTPError as exc:
            raise RuntimeError(f"Prometheus at {self.url} is unreachable: {type(exc).__name__}: {exc}") from None
        finally:
            if self._client is None:
                await client.aclose()
        try:
            body = resp.json()
        except ValueError:
            raise RuntimeError(f"Prometheus answered HTTP {resp.status_code} with no JSON: {resp.text[:200]}") from None
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus refused the query {q!r}: {body.get('errorType')}: {body.get('error')}")
        out = []
        for r in body["data"]["result"]:
            labels = {k: str(v) for k, v in r.get("metric", {}).items()}
            pts = [(datetime.fromtimestamp(float(t), UTC), float(v)) for t, v in r.get("values", [])]
            metric, unit = _describe_query(q, [v for _, v in pts]) if query else ("error_ratio", "ratio")
            out.append(Series(metric, labels.get("service", service), q, unit, pts, self.name, labels))
        if not out:  # no samples in the window: say so with an empty series rather than nothing
            out.append(Series("query", service, q, "", [], self.name))
        return out

    async def logs(self, start: datetime, end: datetime) -> None:
        return None

    async def spans(self, start: datetime, end: datetime) -> None:
        return None
