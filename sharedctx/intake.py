"""Alert intake: an Alertmanager webhook (payload version 4) or a generic JSON alert -> typed `Alert`s.

Everything that starts an investigation comes through here, so a bad payload is refused with a
message that says what is wrong and where (`alerts.0.labels: Field required`), never half-read.
Each alert of a payload is read on its own (`read_alertmanager`, `read_generic` -> `Batch` of
`Alert` or `Refused`): one bad alert is refused with its reason and its siblings go on. The limits
are types (`LabelMap`, `Timestamp`, ...), so they hold wherever these models are used; the HTTP
checks before parsing (auth, content type, size) are in `sharedctx.intake_guard`.

**Alertmanager** (`POST /alerts/alertmanager`): the webhook payload version 4 — `version`,
`receiver`, `status`, `alerts[]` (each with `status`, `labels`, `annotations`, `startsAt`, `endsAt`,
`fingerprint`, `generatorURL`), `groupLabels`, `commonLabels`, `commonAnnotations`, `externalURL`,
`groupKey`. One payload may carry several alerts; each becomes one `Alert`.

**Generic JSON** (`POST /alerts`), for anything that is not Alertmanager — one object, or a list of them:

    {
      "title": "Checkout 5xx above 5%",          # required, 1-300 characters
      "service": "checkout",                     # optional; normalised to a slug (`service_slug`)
      "severity": "critical",                    # critical | warning | info (default warning)
      "status": "firing",                        # firing | resolved (default firing)
      "fingerprint": "checkout-5xx",             # dedupe key; default: hash of title + service + labels
      "description": "...",                      # optional, Markdown
      "labels": {"team": "payments"},            # optional, string -> string
      "starts_at": "2026-01-01T10:00:00Z",       # optional, ISO 8601
      "source": "grafana",                       # optional: who sent it (the entries' author, 1-200)
      "query": "sum(rate(...))"                  # optional: the expression that fired
    }
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, urlparse

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from .errors import IntakeError, validation_problems
from .model import MAX_TITLE_CHARS, SYSTEM

__all__ = [
    "Alert",
    "AlertmanagerPayload",
    "GenericAlert",
    "IntakeError",
    "Refused",
    "parse_alertmanager",
    "parse_generic",
    "read_alertmanager",
    "read_generic",
    "service_slug",
]

AlertStatus = Literal["firing", "resolved"]
Severity = Literal["critical", "warning", "info"]
_GO_ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's `endsAt` for an alert that has not ended

# Limits on one request. The byte limit (`[server] max_alert_bytes`) and the alert count
# (`[server] max_alerts_per_request`) are configurable; these field limits are not: they are far
# above what Prometheus, Grafana or any pager sends, and low enough that no one field can make an
# entry the journal refuses after the case was opened.
MAX_DEPTH = 16  # JSON nesting; a v4 payload is 4 deep
MAX_FINGERPRINT_CHARS = 128
MAX_LABELS = 100
MAX_LABEL_NAME_CHARS = 256
MAX_LABEL_VALUE_CHARS = 4096
MAX_ANNOTATION_CHARS = 64 * 1024
MAX_URL_CHARS = 4096
MAX_NAME_CHARS = 256


def _clean(v: str) -> str:
    """No NUL (PostgreSQL refuses it in text) and no lone surrogates (not encodable as UTF-8)."""
    if "\x00" in v:
        raise ValueError("contains a NUL character (\\u0000)")
    try:
        v.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"is not valid Unicode (a lone surrogate at position {exc.start})") from None
    return v


def _utc(v: datetime) -> datetime:
    """In UTC (a time without an offset is taken as UTC), or refused if it has no UTC equivalent (year 1, 9999)."""
    try:
        return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once converted to UTC") from None


Timestamp = Annotated[datetime, AfterValidator(_utc)]

# JSON strings the journal can store: bounded, no NUL, valid Unicode (aliases, so mypy sees `str`)
Name = Annotated[str, StringConstraints(max_length=MAX_NAME_CHARS), AfterValidator(_clean)]
Source = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(_clean)]  # an author name
Title = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TITLE_CHARS), AfterValidator(_clean)]
LongText = Annotated[str, StringConstraints(max_length=MAX_ANNOTATION_CHARS), AfterValidator(_clean)]
Url = Annotated[str, StringConstraints(max_length=MAX_URL_CHARS), AfterValidator(_clean)]
Fingerprint = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(_clean)]
SourceFingerprint = Annotated[str, StringConstraints(max_length=MAX_FINGERPRINT_CHARS), AfterValidator(_clean)]
GenericFingerprint = Annotated[str, StringConstraints(min_length=1, max_length=190), AfterValidator(_clean)]
GenericService = Annotated[str, StringConstraints(max_length=200), AfterValidator(_clean)]
LabelName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_LABEL_NAME_CHARS), AfterValidator(_clean)]
LabelValue = Annotated[str, StringConstraints(max_length=MAX_LABEL_VALUE_CHARS), AfterValidator(_clean)]
LabelMap = Annotated[dict[LabelName, LabelValue], Field(max_length=MAX_LABELS)]
AnnotationMap = Annotated[dict[LabelName, LongText], Field(max_length=MAX_LABELS)]

_NOT_SLUG = re.compile(r"[^a-z0-9._-]+")


def service_slug(value: str) -> str:
    """`Checkout API` -> `checkout-api`: lowercase ASCII, anything else a `-`, at most 63 characters.

    Labels name services freely (`job="Checkout API"`, `app="zahlungsdienst-ä"`); cases are filtered
    and searched by service, and the journal takes a slug, so intake normalises instead of refusing.
    """
    ascii_text = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    slug = _NOT_SLUG.sub("-", ascii_text.lower()).lstrip("-._")[:63].rstrip("-")
    return slug


def _not_sharedctx(source: str) -> str:
    """An alert's source names the author of its entries; `sharedctx` is the one author whose words agents
    trust (`access.trusted`), so a payload may not sign as it."""
    if source.split(":")[0].strip().lower() == SYSTEM.name:
        raise ValueError(f"`{SYSTEM.name}` is reserved for sharedctx's own entries; name the system that "
                         "sent the alert")
    return source


class Alert(BaseModel):
    """One alert, whatever sent it: what the primary agent needs to open or find a case and triage."""

    model_config = ConfigDict(frozen=True)
    fingerprint: Fingerprint
    status: AlertStatus
    name: Name
    title: Title
    service: str = ""
    severity: str = "warning"
    description: LongText = ""
    labels: LabelMap = Field(default_factory=dict)
    annotations: AnnotationMap = Field(default_factory=dict)
    starts_at: Timestamp | None = None
    ends_at: Timestamp | None = None
    generator_url: Url | None = None
    query: LongText | None = Field(None, description="the expression that fired, when the source says")
    source: Name = "generic"

    @field_validator("service", mode="before")
    @classmethod
    def _slug(cls, v: Any) -> Any:
        return service_slug(v) if isinstance(v, str) else v

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        return _not_sharedctx(v)

    @property
    def case_title(self) -> str:
        if not self.service or self.service in self.title:
            return self.title
        titled = f"{self.title} ({self.service})"
        return titled if len(titled) <= MAX_TITLE_CHARS else self.title


@dataclass(frozen=True)
class Refused:
    """One alert of a payload that was refused; its siblings go on (`index` is its place in the payload)."""

    index: int
    errors: list[str]  # `where: what is wrong`, from the one formatter (`errors.validation_problems`)
    fingerprint: str | None = None
    status: str | None = None

    @property
    def reason(self) -> str:
        return _summary(self.errors)


@dataclass
class Batch:
    """A readable payload: its alerts in order, each an `Alert` or a `Refused` (at least one is an `Alert`)."""

    items: list[Alert | Refused] = field(default_factory=list)

    @property
    def alerts(self) -> list[Alert]:
        return [a for a in self.items if isinstance(a, Alert)]

    @property
    def refused(self) -> list[Refused]:
        return [a for a in self.items if isinstance(a, Refused)]


# -- Alertmanager v4 ---------------------------------------------------------------------------------


class AlertmanagerAlert(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: AlertStatus
    labels: Annotated[LabelMap, Field(min_length=1)]
    annotations: AnnotationMap = Field(default_factory=dict)
    startsAt: Timestamp | None = None
    endsAt: Timestamp | None = None
    generatorURL: Url = ""
    fingerprint: SourceFingerprint = ""

    @field_validator("startsAt", "endsAt", mode="before")
    @classmethod
    def _zero_time_is_none(cls, v: Any) -> Any:
        return None if v in ("", _GO_ZERO_TIME) else v


class AlertmanagerPayload(BaseModel):
    """The webhook body Alertmanager posts (`version: "4"`); each of `alerts` is read on its own."""

    model_config = ConfigDict(extra="allow")
    version: str
    receiver: Name = ""
    status: AlertStatus
    alerts: list[Any] = Field(min_length=1)
    groupLabels: dict[str, Any] = Field(default_factory=dict)
    commonLabels: dict[str, Any] = Field(default_factory=dict)
    commonAnnotations: dict[str, Any] = Field(default_factory=dict)
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
    try:
        exprs = parse_qs(urlparse(url).query).get("g0.expr")
    except ValueError:  # e.g. an invalid IPv6 host: the URL is kept as a link, there is no query in it
        return None
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
        name=name[:MAX_NAME_CHARS],
        title=summary.strip()[:MAX_TITLE_CHARS] or name[:MAX_TITLE_CHARS],
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
    title: Title
    service: GenericService = ""
    severity: Severity = "warning"
    status: AlertStatus = "firing"
    fingerprint: GenericFingerprint | None = None
    description: LongText = ""
    labels: LabelMap = Field(default_factory=dict)
    starts_at: Timestamp | None = None
    source: Source = "generic"
    query: LongText | None = None

    @field_validator("source")
    @classmethod
    def _author_name(cls, v: str) -> str:
        if not v.split(":")[0].strip():
            raise ValueError("must start with a name (it becomes the author of the alert's entries)")
        return _not_sharedctx(v)

    def to_alert(self) -> Alert:
        fingerprint = self.fingerprint or _hash({"title": self.title, "service": self.service, "labels": self.labels})
        return Alert(
            fingerprint=f"generic:{fingerprint}",
            status=self.status,
            name=self.labels.get("alertname", self.title)[:MAX_NAME_CHARS],
            title=self.title,
            service=self.service,
            severity=self.severity,
            description=self.description,
            labels=self.labels,
            starts_at=self.starts_at,
            query=self.query,
            source=self.source,
        )


def _hash(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


# -- reading ----------------------------------------------------------------------------------------


def _too_deep(data: Any, limit: int) -> bool:
    """Iteratively (a recursive walk is what deep nesting attacks): is any container deeper than `limit`?"""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            items: Any = value.values()
        elif isinstance(value, list):
            items = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((v, depth + 1) for v in items)
    return False


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
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise IntakeError(f"the payload is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                          status=400) from None  # fmt: skip
    except RecursionError:
        data = None
        deep = True
    else:
        deep = _too_deep(data, MAX_DEPTH)
    if deep:
        raise IntakeError(f"the payload is nested more than {MAX_DEPTH} levels deep; an alert payload is 4",
                          status=400)  # fmt: skip
    return data


def _summary(errors: list[str]) -> str:
    return "; ".join(errors[:5]) + (f" (and {len(errors) - 5} more)" if len(errors) > 5 else "")


def _whole(exc: ValidationError, what: str) -> IntakeError:
    errors = validation_problems(exc)
    return IntakeError(f"not a valid {what}: {_summary(errors)}", status=422, errors=errors)


def _count(n: int, max_alerts: int) -> None:
    if n > max_alerts:
        raise IntakeError(f"the payload has {n:,} alerts; the limit is {max_alerts:,} per request (set "
                          "`max_alerts` in Alertmanager's webhook_config, or split the batch)", status=413)  # fmt: skip


def _echo(value: Any, limit: int) -> str | None:
    """A refused alert's own field, echoed so the sender can tell which alert it was: cut, so a refusal stays
    small, and as text any encoder takes (a lone surrogate `\ud800` is shown escaped; raw, it made the answer
    unencodable and the refusal a 500)."""
    if not isinstance(value, str):
        return None
    return value[:limit].encode("utf-8", "backslashreplace").decode("utf-8")


def _each(raw: Sequence[Any], convert: Callable[[Any], Alert], where: str) -> Batch:
    """Convert each alert on its own: a refused one is recorded as `Refused`, never drops its siblings."""
    batch = Batch()
    for i, item in enumerate(raw):
        try:
            batch.items.append(convert(item))
        except ValidationError as exc:
            fp = item.get("fingerprint") if isinstance(item, dict) else None
            st = item.get("status") if isinstance(item, dict) else None
            # echoed so the sender can tell which alert it was; cut, so a refusal stays small
            batch.items.append(Refused(i, validation_problems(exc, prefix=f"{where}[{i}]"), _echo(fp, 200),
                                       _echo(st, 20)))
    if not batch.alerts:
        errors = [e for r in batch.refused for e in r.errors]
        raise IntakeError(f"no alert in the payload is valid: {_summary(errors)}", status=422, errors=errors)
    return batch


def read_alertmanager(body: bytes, *, max_bytes: int = 1_000_000, max_alerts: int = 1000) -> Batch:
    """An Alertmanager webhook body -> its alerts, each valid or refused on its own.

    Raises `IntakeError` (with its HTTP status) when the payload as a whole is unreadable, too big,
    not version 4, or has no valid alert at all.
    """
    data = _load(body, max_bytes)
    if not isinstance(data, dict):
        raise IntakeError("an Alertmanager payload is a JSON object with `version`, `status` and `alerts`")
    if "version" not in data:
        raise IntakeError("missing `version`: sharedctx reads Alertmanager webhook payloads with version \"4\"")
    if isinstance(data.get("alerts"), list):
        _count(len(data["alerts"]), max_alerts)
    try:
        payload = AlertmanagerPayload.model_validate(data)
    except ValidationError as exc:
        raise _whole(exc, "Alertmanager webhook payload (version 4)") from None
    return _each(payload.alerts, lambda a: _from_alertmanager(AlertmanagerAlert.model_validate(a), payload), "alerts")


def read_generic(body: bytes, *, max_bytes: int = 1_000_000, max_alerts: int = 1000) -> Batch:
    """A generic JSON alert (an object, or a list of them) -> alerts, each valid or refused on its own."""
    data = _load(body, max_bytes)
    if isinstance(data, dict):
        try:
            return Batch([GenericAlert.model_validate(data).to_alert()])
        except ValidationError as exc:
            raise _whole(exc, "generic alert (see `sharedctx.intake` for the format)") from None
    if not isinstance(data, list):
        raise IntakeError(f"a generic alert is a JSON object, or a list of them; got {type(data).__name__}")
    if not data:
        raise IntakeError("the list of alerts is empty")
    _count(len(data), max_alerts)
    return _each(data, lambda a: GenericAlert.model_validate(a).to_alert(), "")


def _strict(batch: Batch) -> list[Alert]:
    if batch.refused:
        errors = [e for r in batch.refused for e in r.errors]
        raise IntakeError("not every alert is valid: " + "; ".join(r.reason for r in batch.refused), errors=errors)
    return batch.alerts


def parse_alertmanager(body: bytes, *, max_bytes: int = 1_000_000, max_alerts: int = 1000) -> list[Alert]:
    """All-or-nothing `read_alertmanager`: the alerts, or `IntakeError` if any alert is refused."""
    return _strict(read_alertmanager(body, max_bytes=max_bytes, max_alerts=max_alerts))


def parse_generic(body: bytes, *, max_bytes: int = 1_000_000, max_alerts: int = 1000) -> list[Alert]:
    """All-or-nothing `read_generic`: the alerts, or `IntakeError` if any alert is refused."""
    return _strict(read_generic(body, max_bytes=max_bytes, max_alerts=max_alerts))
