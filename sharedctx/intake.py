"""Alert intake: an Alertmanager webhook (payload version 4) or a generic JSON alert -> typed `Alert`s.

Everything that starts an investigation comes through here, so a bad payload is refused with a
message that says what is wrong and where (`alerts[0].labels: field required`), never half-read.

**Alertmanager** (`POST /alerts/alertmanager`): the webhook payload version 4 — `version`,
`receiver`, `status`, `alerts[]` (each with `status`, `labels`, `annotations`, `startsAt`, `endsAt`,
`fingerprint`, `generatorURL`), `groupLabels`, `commonLabels`, `commonAnnotations`, `externalURL`,
`groupKey`. One payload may carry several alerts; each becomes one `Alert`.

**Generic JSON** (`POST /alerts`), for anything that is not Alertmanager — one object, or a list of them:

    {
      "title": "Checkout 5xx above 5%",          # required, 1-300 characters
      "service": "checkout",                     # optional
      "severity": "critical",                    # critical | warning | info (default warning)
      "status": "firing",                        # firing | resolved (default firing)
      "fingerprint": "checkout-5xx",             # dedupe key; default: hash of title + service + labels
      "description": "...",                      # optional, Markdown
      "labels": {"team": "payments"},            # optional, string -> string
      "starts_at": "2026-01-01T10:00:00Z",       # optional, ISO 8601
      "source": "grafana",                       # optional: who sent it
      "query": "sum(rate(...))"                  # optional: the expression that fired
    }
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Any, Literal
from urllib.parse import parse_qs, urlparse

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from .errors import SharedCtxError
from .model import MAX_TITLE_CHARS

__all__ = ["Alert", "AlertmanagerPayload", "GenericAlert", "IntakeError", "parse_alertmanager", "parse_generic"]

AlertStatus = Literal["firing", "resolved"]
Severity = Literal["critical", "warning", "info"]
_GO_ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's `endsAt` for an alert that has not ended


class IntakeError(SharedCtxError):
    """The alert payload was refused; nothing was recorded."""

    def __init__(self, message: str, *, status: int = 422, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.errors = errors or []

    def to_json(self) -> dict[str, Any]:
        return {"error": {"type": "invalid_alert" if self.status != 413 else "too_large",
                          "message": self.message, "errors": self.errors}}  # fmt: skip


class Alert(BaseModel):
    """One alert, whatever sent it: what the primary agent needs to open or find a case and triage."""

    model_config = ConfigDict(frozen=True)
    fingerprint: str = Field(min_length=1, max_length=200)
    status: AlertStatus
    name: str
    title: str = Field(min_length=1, max_length=MAX_TITLE_CHARS)
    service: str = ""
    severity: str = "warning"
    description: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    generator_url: str | None = None
    query: str | None = Field(None, description="the expression that fired, when the source says")
    source: str = "generic"

    @property
    def case_title(self) -> str:
        return self.title if not self.service or self.service in self.title else f"{self.title} ({self.service})"


# -- Alertmanager v4 ---------------------------------------------------------------------------------


class AlertmanagerAlert(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: AlertStatus
    labels: dict[str, str] = Field(min_length=1)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime | None = None
    endsAt: datetime | None = None
    generatorURL: str = ""
    fingerprint: str = ""

    @field_validator("startsAt", "endsAt", mode="before")
    @classmethod
    def _zero_time_is_none(cls, v: Any) -> Any:
        return None if v in ("", _GO_ZERO_TIME) else v


class AlertmanagerPayload(BaseModel):
    """The webhook body Alertmanager posts (`version: "4"`)."""

    model_config = ConfigDict(extra="allow")
    version: str
    receiver: str = ""
    status: AlertStatus
    alerts: list[AlertmanagerAlert] = Field(min_length=1)
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    groupKey: str = ""
    truncatedAlerts: int = 0

    @field_validator("version")
    @classmethod
    def _v4(cls, v: str) -> str:
        if v != "4":
            raise ValueError(f"payload version {v!r} is not supported; sharedctx reads Alertmanager webhook version 4")
        return v


_COMPARISON = re.compile(r"\s*(>=|<=|==|!=|>|<)\s*(bool\s+)?[-+0-9.eE]+\s*$")


def expression_from_generator_url(url: str) -> str | None:
    """Prometheus puts the rule's expression in `generatorURL` (`/graph?g0.expr=...`): the query that fired.

    The trailing threshold (`> 0.05`) is dropped, so the query returns the series itself, also when
    it is back below the threshold — which is what verification needs to see.
    """
    if not url:
        return None
    exprs = parse_qs(urlparse(url).query).get("g0.expr")
    if not exprs:
        return None
    return _COMPARISON.sub("", exprs[0]).strip() or None


def _severity(labels: dict[str, str]) -> str:
    sev = labels.get("severity", "warning").lower()
    return {"page": "critical", "error": "critical", "high": "critical", "low": "info"}.get(sev, sev)


def _from_alertmanager(a: AlertmanagerAlert, payload: AlertmanagerPayload) -> Alert:
    name = a.labels.get("alertname", "alert")
    service = a.labels.get("service") or a.labels.get("job") or a.labels.get("app") or ""
    summary = a.annotations.get("summary") or a.annotations.get("title") or name
    fingerprint = a.fingerprint or _hash({"labels": a.labels})
    return Alert(
        fingerprint=f"alertmanager:{fingerprint}",
        status=a.status,
        name=name,
        title=summary[:MAX_TITLE_CHARS],
        service=service,
        severity=_severity(a.labels),
        description=a.annotations.get("description", ""),
        labels=a.labels,
        annotations=a.annotations,
        starts_at=a.startsAt,
        ends_at=a.endsAt,
        generator_url=a.generatorURL or None,
        query=a.annotations.get("query") or expression_from_generator_url(a.generatorURL),
        source=f"alertmanager:{payload.receiver}" if payload.receiver else "alertmanager",
    )


# -- generic JSON ---------------------------------------------------------------------------------


class GenericAlert(BaseModel):
    """The documented generic alert (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=MAX_TITLE_CHARS)
    service: str = Field("", max_length=200)
    severity: Severity = "warning"
    status: AlertStatus = "firing"
    fingerprint: str | None = Field(None, min_length=1, max_length=190)
    description: str = Field("", max_length=64_000)
    labels: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime | None = None
    source: str = "generic"
    query: str | None = None

    def to_alert(self) -> Alert:
        fingerprint = self.fingerprint or _hash({"title": self.title, "service": self.service, "labels": self.labels})
        return Alert(
            fingerprint=f"generic:{fingerprint}",
            status=self.status,
            name=self.labels.get("alertname", self.title),
            title=self.title,
            service=self.service,
            severity=self.severity,
            description=self.description,
            labels=self.labels,
            starts_at=self.starts_at,
            query=self.query,
            source=self.source,
        )


_GENERIC_LIST = TypeAdapter(list[GenericAlert])


def _hash(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


# -- parsing ----------------------------------------------------------------------------------------


def _load(body: bytes, max_bytes: int) -> Any:
    if len(body) > max_bytes:
        raise IntakeError(f"the payload is {len(body):,} bytes; the limit is {max_bytes:,} bytes", status=413)
    if not body.strip():
        raise IntakeError("the request body is empty; send a JSON alert", status=400)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IntakeError(f"the payload is not UTF-8 (byte {exc.start})", status=400) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise IntakeError(f"the payload is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                          status=400) from None  # fmt: skip


def _refuse(exc: ValidationError, what: str) -> IntakeError:
    errors = [
        {"loc": ".".join(str(p) for p in e["loc"]) or "(body)", "msg": e["msg"]}
        for e in exc.errors(include_url=False)
    ]
    shown = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors[:5])
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return IntakeError(f"not a valid {what}: {shown}{more}", status=422, errors=errors)


def parse_alertmanager(body: bytes, *, max_bytes: int = 1_000_000) -> list[Alert]:
    """An Alertmanager webhook body -> its alerts; `IntakeError` (with an HTTP status) if refused."""
    data = _load(body, max_bytes)
    if not isinstance(data, dict):
        raise IntakeError("an Alertmanager payload is a JSON object with `version`, `status` and `alerts`")
    if "version" not in data:
        raise IntakeError("missing `version`: sharedctx reads Alertmanager webhook payloads with version \"4\"")
    try:
        payload = AlertmanagerPayload.model_validate(data)
    except ValidationError as exc:
        raise _refuse(exc, "Alertmanager webhook payload (version 4)") from None
    return [_from_alertmanager(a, payload) for a in payload.alerts]


def parse_generic(body: bytes, *, max_bytes: int = 1_000_000) -> list[Alert]:
    """A generic JSON alert (object or list of objects) -> alerts; `IntakeError` if refused."""
    data = _load(body, max_bytes)
    if isinstance(data, list) and not data:
        raise IntakeError("the list of alerts is empty")
    try:
        items = _GENERIC_LIST.validate_python(data) if isinstance(data, list) else [GenericAlert.model_validate(data)]
    except ValidationError as exc:
        raise _refuse(exc, "generic alert (see `sharedctx.intake` for the format)") from None
    return [g.to_alert() for g in items]
