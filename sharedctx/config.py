"""`sharedctx.toml` -> typed settings.

Found via `--config`, then `$SHAREDCTX_CONFIG`, then `./sharedctx.toml`; with none, the embedded
defaults (SQLite in `./.sharedctx/`, one `local` backend) so a fresh clone works with no set-up.
Secrets are only ever references (`token = "env:GITHUB_TOKEN"`): a literal secret in the file is
refused, because config files get committed, pasted into tickets and shown in screenshares.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError, format_validation_error

CONFIG_ENV = "SHAREDCTX_CONFIG"
CONFIG_NAME = "sharedctx.toml"
SECRET_KEYS = re.compile(r"(token|password|passwd|secret|api_key|apikey|private_key|credential)s?$", re.I)


class Secret:
    """A secret held by reference. Its `repr`/`str` never show the value, so it cannot leak into logs."""

    __slots__ = ("ref",)

    def __init__(self, ref: str) -> None:
        self.ref = ref

    def get(self) -> str:
        """The value, read from the environment at the moment it is needed."""
        if not self.ref.startswith("env:"):
            raise ConfigError(f"secret reference {self.ref!r} must look like 'env:NAME'")
        name = self.ref[4:]
        value = os.environ.get(name)
        if value is None:
            raise ConfigError(f"environment variable {name} is not set (referenced as {self.ref!r})")
        return value

    def __repr__(self) -> str:
        return f"Secret({self.ref!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.ref == self.ref

    def __hash__(self) -> int:
        return hash(self.ref)


_FIX = 'Put the value in an environment variable and write {key} = "env:VARIABLE_NAME" instead.'
_STORE_FIX = (
    "a password in the store URL is not allowed in the config file. Leave it out "
    '(store = "postgresql://user@host/db") and set PGPASSWORD in the environment, or put the whole URL '
    'in an environment variable and write store = "env:VARIABLE_NAME".'
)
# Sections whose strings are not values that could be credentials (`[redact] patterns` are regexes that
# describe secrets; scanning them would refuse the very patterns that catch them).
_NOT_SCANNED = frozenset({"redact"})


def _refuse(where: str, key: str, what: str | None = None, *, listed: bool = False) -> ConfigError:
    found = f" ({what} detected)" if what else ""
    if where == "store":
        return ConfigError(f"store: {_STORE_FIX}")
    fix = _FIX.format(key=key)
    if listed:  # a command line: the secret goes to the child through its environment
        fix = ('Pass it through the environment instead: env = { VARIABLE = "env:VARIABLE_NAME" } next to '
               f"{key}, and let the program read it.")
    return ConfigError(f"{where}: a literal secret{found} is not allowed in the config file. {fix}")


def _detected(key: str, value: str) -> str | None:
    """The type of secret a config value holds, judged from the value and from `key: value` together
    (so `Authorization = "Bearer x"` and `X-Api-Key = "…"` count); None if it looks like none."""
    from .redact import default_redactor

    r = default_redactor()
    for text in (value, f"{key}: {value}", f"{key}={value}"):
        found = r.find(text)
        start = len(text) - len(value)
        if any(f.end > start for f in found):  # a finding inside the value, not just in the key
            return found[-1].type
    if r.redact_value({key: value}) != {key: value}:
        return "value of a secret-named key"
    return None


def check_no_literal_secrets(data: Any, path: str = "") -> None:
    """Refuse a literal credential anywhere in the config: secrets must be `env:NAME` references.

    Not only by key name: every string value is run through the redactor's detectors too, alone and
    with its key, so a token under `headers`, `env`, a backend option or in a PostgreSQL URL is refused.
    The message names the key and never repeats the value.
    """
    if isinstance(data, dict):
        for key, value in data.items():
            where = f"{path}.{key}" if path else str(key)
            if not path and key in _NOT_SCANNED:
                continue
            if isinstance(value, str):
                if value.startswith("env:"):
                    continue
                if SECRET_KEYS.search(str(key)) and value:
                    raise _refuse(where, str(key))
                what = _detected(str(key), value)
                if what is not None:
                    raise _refuse(where, str(key), what)
            elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
                joined = " ".join(value)  # a command line: `--token abc` spans two items
                if not joined.startswith("env:") and (what := _detected(str(key), joined)) is not None:
                    raise _refuse(where, str(key), what, listed=True)
            else:
                check_no_literal_secrets(value, where)
    elif isinstance(data, list):
        for i, value in enumerate(data):
            check_no_literal_secrets(value, f"{path}[{i}]")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentIdentity(_Section):
    """Who this process writes as by default (the Python API and CLI)."""

    name: str = "operator"
    kind: Literal["primary", "partner", "human", "system"] = "human"


class WorkerSettings(_Section):
    enabled: bool = Field(True, description="run the delivery worker inside processes that open the context")
    max_attempts: int = Field(8, ge=1)
    base_delay: float = Field(1.0, gt=0, description="first retry delay in seconds; doubles each attempt")
    max_delay: float = Field(300.0, gt=0)
    lease_seconds: float = Field(60.0, gt=0, description="how long a claimed delivery is held by a worker")
    concurrency: int = Field(4, ge=1, description="deliveries in flight per backend")
    poll_interval: float = Field(0.5, gt=0)


class BackendSettings(BaseModel):
    """`[[backends]]`: a `type`, an optional `name` (defaults to the type), and the type's own options."""

    model_config = ConfigDict(extra="allow")
    type: str
    name: str = ""

    @model_validator(mode="after")
    def _default_name(self) -> BackendSettings:
        if not self.name:
            self.name = self.type
        return self

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class PartnerSettings(_Section):
    """`[[partners]]`: a partner agent the primary may call over the direct channel."""

    name: str
    transport: Literal["stdio", "http", "api", "a2a"] = "stdio"
    command: list[str] | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict, description="header -> 'env:NAME' reference")
    timeout: float = Field(30.0, gt=0)
    env: dict[str, str] = Field(default_factory=dict, description="stdio partner's variables; 'env:NAME' reads ours")

    @field_validator("headers")
    @classmethod
    def _header_refs(cls, v: dict[str, str]) -> dict[str, str]:
        for name, ref in v.items():
            if not ref.startswith("env:"):
                raise ValueError(f'header {name!r} must be an "env:NAME" reference (headers carry credentials); '
                                 f'write {name} = "env:VARIABLE_NAME" and set the variable')
        return v

    def resolved_env(self) -> dict[str, str]:
        """`env` with every `env:NAME` value read from our environment, at the moment the partner starts."""
        return {k: Secret(v).get() if v.startswith("env:") else v for k, v in self.env.items()}

    @model_validator(mode="after")
    def _transport_target(self) -> PartnerSettings:
        if self.transport == "stdio" and not self.command:
            raise ValueError("a stdio partner needs `command` (a list, e.g. ['python', '-m', 'x'])")
        if self.transport in ("http", "api", "a2a") and not self.url:
            raise ValueError(f"a {self.transport} partner needs `url`")
        return self


class WritePolicy(_Section):
    kinds: list[str] | None = Field(None, description="entry kinds this identity may write (None: all)")
    max_per_hour: int | None = Field(None, ge=1)
    needs_decision: list[str] = Field(default_factory=list, description="kinds held until a human decides")


class AgentSettings(_Section):
    """`[[agents]]`: an identity that may use the shared-context MCP server."""

    name: str
    role: Literal["primary", "partner", "human-readonly"]
    token: Secret | None = None
    policy: WritePolicy = Field(default_factory=WritePolicy)

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    @field_validator("token", mode="before")
    @classmethod
    def _secret(cls, v: Any) -> Any:
        return Secret(v) if isinstance(v, str) else v


class RedactSettings(_Section):
    """`[redact]`: extra patterns on top of the built-in detectors (see docs/redaction.md)."""

    patterns: list[str] = Field(default_factory=list, description='"name=regex" or a bare regex')

    @field_validator("patterns")
    @classmethod
    def _compile(cls, v: list[str]) -> list[str]:
        from .redact.detectors import parse_user_pattern

        for p in v:
            parse_user_pattern(p)  # a ConfigError that says how to write it, at load time
        return v


class SearchSettings(_Section):
    """`[search]`: nothing to set yet; typed so that a key here is an error, not silently ignored."""


class WebhookSettings(_Section):
    """`[humans.webhooks.<backend name>]`: how to check that a webhook really comes from the service."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    secret: Secret = Field(description='"env:NAME" reference to the shared secret set in the service')
    max_age: float = Field(300.0, gt=0, description="seconds a signed timestamp may be old (replays)")

    @field_validator("secret", mode="before")
    @classmethod
    def _secret(cls, v: Any) -> Any:
        return Secret(v) if isinstance(v, str) else v


class HumanSettings(_Section):
    """`[humans]`: how people's comments, reactions and decisions come back (see docs/humans.md)."""

    mirror: bool = Field(True, description="copy human comments to the case's other backends")
    attribution: bool = Field(True, description="mirrored comments end with who wrote them, where, and a link")
    poll: bool = Field(True, description="read threads back periodically (the fallback when webhooks can't reach us)")
    poll_interval: float = Field(30.0, gt=0, description="seconds between read-backs of one case's threads")
    poll_resolved_for: float = Field(3600.0, ge=0, description="keep reading a resolved case back this long")
    decision_timeout: float = Field(3600.0, gt=0, description="default seconds a decision request waits")
    on_timeout: Literal["default", "escalate"] = "default"
    default: str = Field("reject", description="the choice taken on timeout with policy `default`")
    wait_interval: float = Field(0.5, gt=0, description="how often a waiting agent re-reads the journal")
    allow: dict[str, list[str]] = Field(default_factory=dict, description="backend name -> users who may decide")
    webhooks: dict[str, WebhookSettings] = Field(default_factory=dict, description="backend name -> webhook secret")


McpHttpMode = Literal["stream", "json"]
"""How an MCP server answers over Streamable HTTP (see docs/mcp.md, "HTTP modes").

`stream`: the SDK's default. Sessions; each POST is answered with an SSE stream that carries progress
notifications and server-to-client requests before the result. `json`: stateless, `json_response=True`;
each POST gets one `application/json` answer, nothing before it, and no session to keep."""


class ServerSettings(_Section):
    """`[server]`: where `sharedctx serve` listens, who may post alerts, and how much one request may carry.

    Intake auth is a bearer token (`intake_token`) and/or basic auth (`intake_basic_user` +
    `intake_basic_password`), secrets by `env:` reference. Without either, `serve` refuses a
    non-loopback `host` (see docs/intake.md).
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)
    max_alert_bytes: int = Field(1_000_000, ge=1024, le=64 * 1024 * 1024)
    max_alerts_per_request: int = Field(1000, ge=1, le=100_000)
    intake_token: Secret | None = Field(None, description="bearer token for POST /alerts*, 'env:NAME'")
    intake_basic_user: str | None = Field(None, min_length=1, max_length=256)
    intake_basic_password: Secret | None = Field(None, description="basic-auth password, 'env:NAME'")
    # several replicas on one store (docs/decisions.md "failover: one owner per investigation")
    investigation_lease: float = Field(15.0, ge=1.0, le=3600, description="seconds a replica holds an "
                                       "investigation without renewing; after that a surviving replica takes over")
    drain_seconds: float = Field(10.0, ge=0, le=3600, description="on SIGTERM, how long a step in flight may "
                                 "finish before it is abandoned (not recorded) and resumed by another replica")
    mcp_mode: McpHttpMode = Field("stream", description="/mcp: 'stream' (SSE answers, sessions, progress) or "
                                  "'json' (stateless, one JSON answer per POST, no progress); see docs/mcp.md")

    @field_validator("intake_token", "intake_basic_password", mode="before")
    @classmethod
    def _secret(cls, v: Any) -> Any:
        return Secret(v) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _basic_pair(self) -> ServerSettings:
        if (self.intake_basic_user is None) != (self.intake_basic_password is None):
            raise ValueError("basic auth needs both `intake_basic_user` and `intake_basic_password`")
        return self


class Config(BaseModel):
    """The whole configuration. Unknown top-level keys are errors, so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid")
    store: str = ".sharedctx/sharedctx.db"
    agent: AgentIdentity = Field(default_factory=AgentIdentity)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    backends: list[BackendSettings] = Field(default_factory=lambda: [BackendSettings(type="local")])
    partners: list[PartnerSettings] = Field(default_factory=list)
    agents: list[AgentSettings] = Field(default_factory=list)
    server: ServerSettings = Field(default_factory=ServerSettings)
    redact: RedactSettings = Field(default_factory=RedactSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    humans: HumanSettings = Field(default_factory=HumanSettings)
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)

    @model_validator(mode="after")
    def _unique_backends(self) -> Config:
        seen: set[str] = set()
        for b in self.backends:
            if b.name in seen:
                raise ValueError(f"two backends are named {b.name!r}; give one a distinct `name`")
            seen.add(b.name)
        return self

    def path(self, value: str | Path) -> Path:
        """Resolve a path from the config relative to the config file's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    @property
    def store_url(self) -> str:
        """The store to open. `store = "env:NAME"` reads the URL from the environment when it is needed,
        so a PostgreSQL password can live there (or in PGPASSWORD, which libpq reads itself)."""
        store = self.store
        if store.startswith("env:"):
            store = Secret(store).get()
            check_store_url(store, f"the URL in {self.store[4:]}")  # as strict as a URL in the file
        if store.startswith(("postgresql://", "postgres://")):
            return store
        if store == ":memory:":
            return store
        return str(self.path(store.removeprefix("sqlite:///")))


UNKNOWN_KEY = "unknown key (check the spelling; `sharedctx init` writes a commented example)"


def _format_validation_error(exc: ValidationError, source: str) -> str:
    return format_validation_error(exc, f"invalid configuration in {source}:", unknown=UNKNOWN_KEY)


STORE_FORMS = "a SQLite file path (e.g. .sharedctx/sharedctx.db), sqlite:///PATH, or postgresql://USER@HOST:PORT/DB"


def check_store_url(store: Any, source: str = "<config>") -> None:
    """Refuse a store this library cannot open, at load time.

    Anything with `://` that is not PostgreSQL or SQLite used to become a SQLite *file* named like the
    URL, so each process silently got a private journal; `mysql://…` or `postgresql+psycopg://…` must fail."""
    if not isinstance(store, str) or not store.strip():
        raise ConfigError(f"{source}: store: must be {STORE_FORMS}")
    if "://" in store and not store.startswith(("postgresql://", "postgres://", "sqlite:///")):
        scheme = store.split("://", 1)[0]
        raise ConfigError(f"{source}: store: unsupported URL scheme {scheme!r}; use {STORE_FORMS}")


def check_lease_covers_requests(cfg: Config, source: str = "<config>") -> None:
    """Refuse `worker.lease_seconds` shorter than a backend's request timeout.

    A lease that can run out while one request is still in flight hands the row to another worker
    mid-send; the heartbeat renews leases, but only between requests it can see. Backends with no
    request timeout (local files) are not bound by this."""
    from .backends import BACKEND_TYPES, backend_class

    for b in cfg.backends:
        if b.type not in BACKEND_TYPES:
            continue  # unknown types are reported where backends are built, with the known ones listed
        timeout = b.options.get("timeout")
        if timeout is None:
            field = getattr(backend_class(b.type), "Options", None)
            default = getattr(field, "model_fields", {}).get("timeout") if field is not None else None
            timeout = default.default if default is not None else None
        if isinstance(timeout, int | float) and cfg.worker.lease_seconds < timeout:
            raise ConfigError(
                f"{source}: worker.lease_seconds = {cfg.worker.lease_seconds:g} is shorter than "
                f"backends.{b.name}.timeout = {timeout:g}: a delivery could lose its lease while its request is "
                f"still in flight. Raise worker.lease_seconds to at least {timeout:g}, or lower the backend's timeout."
            )


def parse_config(data: dict[str, Any], *, base_dir: Path | None = None, source: str = "<config>") -> Config:
    check_no_literal_secrets(data)
    if "store" in data:
        check_store_url(data["store"], source)
    try:
        cfg = Config.model_validate({**data, "base_dir": base_dir or Path.cwd()})
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None
    check_lease_covers_requests(cfg, source)
    return cfg


def load_config(path: str | Path | None = None) -> Config:
    """Load from an explicit path, `$SHAREDCTX_CONFIG`, or `./sharedctx.toml`; else the defaults."""
    candidate = path or os.environ.get(CONFIG_ENV)
    if candidate is None and Path(CONFIG_NAME).exists():
        candidate = CONFIG_NAME
    if candidate is None:
        return Config(base_dir=Path.cwd())
    p = Path(candidate)
    if not p.exists():
        raise ConfigError(f"config file {p} does not exist (create one with `sharedctx init`)")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p} is not UTF-8 text: {exc}") from None
    return parse_config(data, base_dir=p.resolve().parent, source=str(p))
