"""The detectors: where in one string a credential is, and of which type (no decoding, no structure).

Why here and why like this
--------------------------
A shared incident journal is where secrets leak: an agent pastes a failing `curl` with its bearer token,
a human quotes a connection string, a log excerpt carries a presigned URL. Entries go to GitHub,
PagerDuty, ServiceNow, Jira and to other agents, and they are immutable once chained — so the only safe
place to remove a secret is *before* `record()` stores it. Every credential found is replaced by
`[REDACTED:<type>]` so a reader still knows *what* was there (an AWS key, a JWT) without seeing it.

`redact()` sits on the hot path of `record()`, so it first runs one cheap combined regex (the
*precheck*: literal token prefixes and `keyword = ` shapes). Text that passes the precheck — almost all
journal text — is returned unchanged without running any detector.

Which detector catches what
---------------------------
Format patterns taken from `detect-secrets` (its plugins' `denylist` regexes, imported at runtime so an
upgrade of the library flows in; we add word boundaries and extend matches to the whole token):

* ``aws-access-key``      AWSKeyDetector (AKIA/ASIA/ABIA/ACCA/A3T… key ids); also its `aws … key "…"` rule
* ``github-token``        GitHubTokenDetector (ghp_/gho_/ghu_/ghs_/ghr_) + ours for `github_pat_…`
* ``gitlab-token``        GitLabTokenDetector (glpat-, gldt-, glrt-, glcbt-, glptt-, GR1348941…)
* ``slack-token`` / ``slack-webhook``  SlackDetector (xox[abposr]-…, hooks.slack.com) + ours for xapp-/xoxe.
* ``stripe-key``          StripeDetector (sk_live_/rk_live_) + ours for sk_test_/rk_test_/whsec_
* ``sendgrid-key``        SendGridDetector (SG.x.y)
* ``twilio-key``          TwilioKeyDetector (AC…/SK… sids)
* ``openai-key``          OpenAIDetector (legacy T3BlbkFJ keys) + ours for sk-proj-/sk-svcacct-/sk-…
* ``mailchimp-key``, ``pypi-token``, ``square-secret``  the corresponding detect-secrets plugins
* ``azure-storage-key``   AzureStorageKeyDetector (`AccountKey=`), widened to any length
* ``private-key``         PrivateKeyDetector's BEGIN headers, extended to the whole PEM block (real or
  JSON-escaped `\\n` newlines, truncated blocks too) and PuTTY key files
* ``password`` (URL)      BasicAuthDetector's `scheme://user:pass@host` idea, widened to passwords that
  contain RFC 3986 sub-delimiters (`!$&'()*+,;=`) and `@`; only the password is replaced.
* keyword assignments     detect-secrets' KeywordDetector keyword list (password, passwd, pwd, secret,
  api_key, private_key, …) plus token, credential, passphrase, access/app/routing/integration/signing keys.
  We use our own value grammar: detect-secrets' SECRET pattern runs to the end of the line (it would
  eat `host=db2` after `password=x` in a log line) and it picks regexes by file type, which we don't have.

Our own patterns (no detect-secrets plugin exists, or its pattern does not fit redaction): ``jwt``
(detect-secrets' JWT pattern is lazy and stops before the signature), ``gcp-api-key`` (AIza…),
``gcp-oauth-secret`` (GOCSPX-), ``gcp-access-token`` (ya29.), ``anthropic-key``, ``npm-token``
(npm_…, `.npmrc` `_authToken=`/`_auth=`), ``vault-token`` (hvs./hvb./hvr.), ``atlassian-token`` (ATATT3…),
``grafana-token``, ``newrelic-key``, ``docker-token``, ``shopify-token``, ``azure-sas`` (`sig=`,
`SharedAccessSignature=`), ``aws-signature`` (presigned `X-Amz-Signature`/`X-Amz-Security-Token`),
``authorization`` headers (``bearer-token``, ``basic-auth`` — only if the value decodes to `user:pass` —,
``pagerduty-key`` for PagerDuty's `Token token=…`), ``cookie`` headers, `--password value` CLI flags,
`<password>…</password>` XML. Keyword assignments are typed from the key name: ``password``,
``aws-secret-key``, ``aws-session-token``, ``pagerduty-key`` (routing/integration keys), ``datadog-key``
(DD_API_KEY, DD-APPLICATION-KEY), ``azure-storage-key`` (AccountKey), ``api-key``, ``token``,
``private-key``, ``secret``. User patterns from `[redact] patterns = ["name=regex", …]` come first.

Why not `detect_secrets.core.scan.scan_line`: it mutates the library's global settings on every call,
returns values rather than positions, runs the high-entropy plugins, and — if the verification filter
is enabled in the process — *calls the vendor's API with the secret to verify it*, which is exactly the
leak we are preventing. So we use the plugins' regexes, never their `verify`.

What is NOT caught (on purpose, or because there is no signal)
--------------------------------------------------------------
* Bare high-entropy strings with no keyword and no known prefix: an AWS *secret* key, a Twilio auth
  token, a Datadog or PagerDuty key, a Heroku key pasted alone in prose. detect-secrets'
  HighEntropyString plugins would catch some, but they would also eat sha256/sha1 hashes, git commit
  ids, trace ids and base64 blobs, which are the substance of incident notes. Put such values behind a
  key (`DD_API_KEY=…`) or add a `[redact] patterns` entry.
* Passwords in prose ("the password is hunter2"), `mysql -phunter2`, DSNs without a scheme
  (`user:pass@host`), unquoted passphrases with spaces that are not a `key: value` line on their own.
* Discord, Telegram, Artifactory and IBM formats (detect-secrets has them; they need patterns without a
  cheap anchor, or they match their surrounding characters) — add them as user patterns if needed.
* Over-redaction we accept: any value of a secret-sounding key is replaced, even if it is not a
  secret (`secret="tls-cert"` in a PromQL label matcher, `token: expired`).
"""


from __future__ import annotations

import base64
import binascii
import functools
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..errors import ConfigError

PLACEHOLDER_PREFIX = "[REDACTED:"
_PLACEHOLDER_RE = re.compile(r"\[REDACTED:[a-z0-9][a-z0-9-]*\]")
_TYPE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,40}$")
_MAX_VALUE = 4096


def placeholder(kind: str) -> str:
    """The text that replaces a secret of type `kind` (e.g. `[REDACTED:jwt]`)."""
    return f"{PLACEHOLDER_PREFIX}{kind}]"


@dataclass(frozen=True, slots=True)
class Finding:
    """One secret found in a text: its type and where it is (the value only, not its key)."""

    type: str
    start: int
    end: int
    priority: int = 5


# A check receives the match and returns the placeholder type, or None to reject the match.
_Check = Callable[[re.Match[str], str], "str | None"]


@dataclass(frozen=True, slots=True)
class _Rule:
    """One detector. `gates`: lowercase literals, at least one of which must be in the lowered text for
    the rule to run at all (empty: run whenever the text passes the precheck)."""

    type: str
    regex: re.Pattern[str]
    group: int | str = 0
    priority: int = 0
    check: _Check | None = None
    gates: tuple[str, ...] = ()
    fmt: bool = False  # a token format whose prefix the precheck regex covers
    finder: Callable[[str], list[tuple[int, int]]] | None = None  # used instead of `regex` when set


# --------------------------------------------------------------------------------------------- keywords

# Extra keywords on top of detect-secrets' KeywordDetector.DENYLIST (`_?` there means "optional _").
_EXTRA_KEYWORDS = (
    "token",
    "credentials?",
    "passphrase",
    "access_?key",
    "app_?key",
    "application_?key",
    "routing_?key",
    "integration_?key",
    "signing_?key",
    "encryption_?key",
    "master_?key",
    "secret_?key",
    "session_?key",
)
# Words after the keyword that make the key a *reference to* or *property of* a secret, not the secret.
_SUFFIX_SKIP = frozenset(
    {
        "name", "names", "ref", "keyref", "file", "path", "dir", "url", "uri", "arn", "type", "kind",
        "count", "length", "len", "size", "limit", "ttl", "expiry", "expires", "expiresat", "expiresin",
        "expiration", "timeout", "version", "policy", "rotation", "rotatedat", "createdat", "updatedat",
        "enabled", "required", "present", "set", "header", "field", "label", "provider", "store",
        "manager", "mount", "backend", "source", "env", "var", "min", "max", "usage", "budget",
        "endpoint", "izer", "ization", "format", "hint", "id", "ids",
    }
)
_TOKEN_PREFIX_SKIP = re.compile(
    r"(?:max|num|total|prompt|completion|input|output|page|next|continuation|cursor|sync|refresh_?count|"
    r"cache|reasoning)[_.\-]?$",
    re.IGNORECASE,
)
_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_NOT_SECRET_VALUES = frozenset(
    {"", "null", "none", "nil", "true", "false", "undefined", "redacted", "<redacted>", "n/a", "yes", "no"}
)
_REFERENCE_PREFIXES = ("env:", "${", "$(", "{{", "%(", "<", "vault:", "secretref:", "ref+", "!!")


def _keyword_pattern(ds_denylist: Iterable[str]) -> str:
    words = {w.replace("_?", "[_.-]?") for w in ds_denylist}
    words.update(w.replace("_?", "[_.-]?") for w in _EXTRA_KEYWORDS)
    return "|".join(sorted(words, key=len, reverse=True))


@functools.lru_cache(maxsize=8192)  # keys repeat (field names, attrs keys): pure, so cached
def classify_key(key: str) -> str | None:
    """The placeholder type for a value stored under `key`, or None if the key does not hold a secret.

    The key is split around its last secret keyword (`aws_secret_access_` `key`, `secret` `_name`) so
    that keys which name, count or point to secrets — `secret_name`, `max_tokens`, `password_file` —
    are skipped.
    """
    matches = list(_detectors().key_keyword.finditer(key))
    if not matches:
        return None
    m = matches[-1]
    kw, prefix, rest = m.group(0).lower(), key[: m.start()], key[m.end() :]
    k = key.lower().replace("-", "_").replace(".", "_")
    rest_norm = rest.lower().strip("_.-\"'`]").replace("_", "").replace("-", "").replace(".", "")
    if rest_norm in _SUFFIX_SKIP and not (rest_norm == "id" and kw == "secret"):
        return None
    if kw.startswith("token") and (rest_norm == "s" or _TOKEN_PREFIX_SKIP.search(prefix)):
        return None
    if "aws" in k or "amz" in k:
        return "aws-session-token" if "token" in k else "aws-secret-key"
    if "pagerduty" in k or "routing_key" in k or "integration_key" in k or "routingkey" in k:
        return "pagerduty-key"
    if "datadog" in k or k.startswith("dd_") or "_dd_" in k:
        return "datadog-key"
    if "twilio" in k:
        return "twilio-key"
    if "accountkey" in k:
        return "azure-storage-key"
    if "sharedaccesskey" in k:
        return "azure-key"
    if "npm" in k:
        return "npm-token"
    if "pass" in k or "pwd" in k or "contrase" in k:
        return "password"
    if "priv" in k:
        return "private-key"
    if "apikey" in k or "api_key" in k:
        return "api-key"
    if "token" in k:
        return "token"
    return "secret"


def _value_is_secret(kind: str, value: str) -> bool:
    """Whether `value` under a key of type `kind` should be redacted (skips null, masks, references)."""
    v = value.strip()
    low = v.lower()
    if low in _NOT_SECRET_VALUES or v.startswith(PLACEHOLDER_PREFIX) or low.startswith(_REFERENCE_PREFIXES):
        return False
    if v.startswith("$") and v[1:].replace("_", "").isalnum() and v[1:2].isalpha():  # $VAR
        return False
    if not any(c.isalnum() for c in v) or set(v) <= {"*", "x", "X", "•", "."}:
        return False
    # a password can be short or numeric; a token, key or secret that is cannot be one
    return kind == "password" or (not v.isdigit() and len(v) >= 6)


# ------------------------------------------------------------------------------------------------ checks


def _has_digit_and_mixed_case(m: re.Match[str], kind: str) -> str | None:
    v = m.group(0)
    ok = any(c.isdigit() for c in v) and any(c.isupper() for c in v) and any(c.islower() for c in v)
    return kind if ok else None


def _has_digit(m: re.Match[str], kind: str) -> str | None:
    return kind if any(c.isdigit() for c in m.group("val")) else None


def _basic_auth(m: re.Match[str], kind: str) -> str | None:
    """`Basic xxx` is only a credential if xxx is base64 of `user:pass` (so 'basic troubleshooting' stays)."""
    val = m.group("val")
    try:
        decoded = base64.b64decode(val + "=" * (-len(val) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return kind if ":" in text and text.isprintable() else None


def _auth_header(m: re.Match[str], kind: str) -> str | None:
    scheme = (m.group("scheme") or "").lower()
    val = m.group("val")
    if val.startswith(PLACEHOLDER_PREFIX):
        return None
    if scheme == "bearer":
        return "bearer-token"
    if scheme == "basic":
        return "basic-auth"
    if scheme == "token":  # PagerDuty's REST API header is `Authorization: Token token=<key>`
        return "pagerduty-key" if val.lower().startswith("token=") else "token"
    return "authorization"


def _not_placeholder(m: re.Match[str], kind: str) -> str | None:
    return None if m.group("val").startswith(PLACEHOLDER_PREFIX) else kind


def _keyed(m: re.Match[str], kind: str) -> str | None:
    """`<password>…</password>`: type from the tag name; skip references and masks."""
    key = m.group("key")
    t = classify_key(key)
    if t is None or not _value_is_secret(t, m.group("val")):
        return None
    return t


# ------------------------------------------------------------------------------------------ rule table


def _bounded(pattern: str, tail: str = "", left: str = r"(?<![A-Za-z0-9_])", right: str = "") -> str:
    return f"{left}(?:{pattern}){tail}{right}"


_PEM_BEGIN = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
_PEM_END = re.compile(r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
# What follows a BEGIN line when no END comes (a truncated paste): base64 lines and `Proc-Type:` headers,
# separated by real or JSON-escaped newlines.
_PEM_BODY = re.compile(r"(?:(?:\s|\\[nr])+(?:[A-Za-z0-9+/=]{16,}|[A-Za-z][A-Za-z-]+:[^\n\\]*))*")
_PUTTY_BEGIN = re.compile(r"PuTTY-User-Key-File-\d:")
_PUTTY_END = re.compile(r"Private-MAC:[ \t]*[0-9a-fA-F]+")
_MAX_BLOCK = 16384


def _block_spans(
    text: str, begin: re.Pattern[str], end: re.Pattern[str], rest: re.Pattern[str]
) -> list[tuple[int, int]]:
    """BEGIN…END blocks, or BEGIN plus what `rest` matches when no END follows within `_MAX_BLOCK`.

    Linear in the text: the next END is searched once and reused while BEGINs come before it (a lazy
    `BEGIN[\\s\\S]*?END` regex is quadratic on text with many BEGINs and no END).
    """
    spans: list[tuple[int, int]] = []
    pos = 0
    end_m: re.Match[str] | None = None
    no_more_end = False
    while (b := begin.search(text, pos)) is not None:
        if not no_more_end and (end_m is None or end_m.start() < b.end()):
            end_m = end.search(text, b.end())
            no_more_end = end_m is None
        if end_m is not None and end_m.start() >= b.end() and end_m.start() - b.end() <= _MAX_BLOCK:
            stop = end_m.end()
        else:
            r = rest.match(text, b.end())
            stop = r.end() if r else b.end()
        spans.append((b.start(), stop))
        pos = max(stop, b.end())
    return spans


def _pem_spans(text: str) -> list[tuple[int, int]]:
    return _block_spans(text, _PEM_BEGIN, _PEM_END, _PEM_BODY)


def _putty_spans(text: str) -> list[tuple[int, int]]:
    return _block_spans(text, _PUTTY_BEGIN, _PUTTY_END, _PEM_BODY)


# Lowercase stems of every secret keyword (detect-secrets' list and ours): finding none of them with
# `str.find` rules out all keyword detectors in a few µs, without a case-insensitive regex pass.
_STEMS = ("pass", "pwd", "secret", "token", "key", "credential", "contrase")
# Contextual literals: their presence (lowercased) sends the text to the full scan.
_CONTEXT_LITERALS = ("authorization", "bearer", "basic", "cookie", "x-amz-", "sig=", "sharedaccess")
_PRECHECK_LITERALS = _STEMS + _CONTEXT_LITERALS


def _build_rules() -> tuple[list[_Rule], re.Pattern[str], str]:
    """Rules in priority order, the precheck regex, and the keyword alternation.

    detect-secrets is imported here (not at module import) because it pulls in `requests`; processes that
    never redact should not pay for it.
    """
    from detect_secrets.plugins.aws import AWSKeyDetector
    from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
    from detect_secrets.plugins.github_token import GitHubTokenDetector
    from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
    from detect_secrets.plugins.keyword import DENYLIST as DS_KEYWORDS
    from detect_secrets.plugins.mailchimp import MailchimpDetector
    from detect_secrets.plugins.openai import OpenAIDetector
    from detect_secrets.plugins.pypi_token import PypiTokenDetector
    from detect_secrets.plugins.sendgrid import SendGridDetector
    from detect_secrets.plugins.slack import SlackDetector
    from detect_secrets.plugins.square_oauth import SquareOAuthDetector
    from detect_secrets.plugins.stripe import StripeDetector
    from detect_secrets.plugins.twilio import TwilioKeyDetector

    def ds(plugin: Any, i: int = 0) -> re.Pattern[str]:
        pattern: re.Pattern[str] = list(plugin.denylist)[i]
        return pattern

    tok = r"[A-Za-z0-9_]*"
    rules: list[_Rule] = []

    def add(kind: str, pattern: str, *, gates: tuple[str, ...], group: int | str = 0, prio: int = 0,
            flags: int = 0, check: _Check | None = None, fmt: bool | None = None) -> None:
        fmt = prio == 0 if fmt is None else fmt
        rules.append(_Rule(kind, re.compile(pattern, flags), group, prio, check, gates, fmt))

    # -- known formats (priority 0: the most specific type wins when spans overlap) --------------------
    aws_id = ds(AWSKeyDetector, 0)
    add("aws-access-key", _bounded(aws_id.pattern, right=r"(?![A-Za-z0-9])"),
        gates=("akia", "asia", "abia", "acca", "a3t"))
    aws_secret = ds(AWSKeyDetector, 1)
    add("aws-secret-key", aws_secret.pattern, group=1, flags=aws_secret.flags, gates=("aws",), fmt=False)
    add("aws-signature", r"(?i)[?&]X-Amz-(?:Signature|Security-Token)=(?P<val>[^&\s\"'<>]+)", group="val",
        gates=("x-amz-",), fmt=False)
    add("gcp-api-key", _bounded(r"AIza[0-9A-Za-z_\-]{35}", r"[0-9A-Za-z_\-]*"), gates=("aiza",))
    add("gcp-oauth-secret", _bounded(r"GOCSPX-[A-Za-z0-9_\-]{20,}"), gates=("gocspx-",))
    add("gcp-access-token", _bounded(r"ya29\.[0-9A-Za-z_\-]{20,}"), gates=("ya29.",))
    gh = ds(GitHubTokenDetector)
    add("github-token", _bounded(gh.pattern, tok), gates=("ghp_", "gho_", "ghu_", "ghs_", "ghr_"))
    add("github-token", _bounded(r"github_pat_[A-Za-z0-9_]{22,}"), gates=("github_pat_",))
    gl_gates = ("glpat-", "gldt-", "glft-", "glsoat-", "glrt-", "gr1348941", "glcbt-", "glimt-", "glptt-",
                "glagent-", "gloas-")
    for p in GitLabTokenDetector.denylist:
        add("gitlab-token", _bounded(p.pattern), flags=p.flags, gates=gl_gates)
    add("gitlab-token", _bounded(r"glpat-[A-Za-z0-9_\-]{20,}"), gates=("glpat-",))
    slack_tok, slack_hook = ds(SlackDetector, 0), ds(SlackDetector, 1)
    add("slack-token", _bounded(slack_tok.pattern, r"[A-Za-z0-9-]*"), flags=slack_tok.flags, gates=("xox",))
    add("slack-token", _bounded(r"(?:xoxe\.xox[a-z]|xoxe|xapp)-\d-[A-Za-z0-9-]{20,}"), gates=("xoxe", "xapp-"))
    add("slack-webhook", slack_hook.pattern + r"[A-Za-z0-9_]*", flags=slack_hook.flags,
        gates=("hooks.slack.com",))
    add("stripe-key", _bounded(ds(StripeDetector).pattern, r"[0-9a-zA-Z]*"), gates=("k_live_",))
    add("stripe-key", _bounded(r"(?:sk|rk)_(?:live|test)_[0-9a-zA-Z]{16,}|whsec_[A-Za-z0-9+/=]{24,}"),
        gates=("k_live_", "k_test_", "whsec_"))
    add("sendgrid-key", _bounded(ds(SendGridDetector).pattern, r"[A-Za-z0-9_-]*"), gates=("sg.",))
    for p in TwilioKeyDetector.denylist:
        add("twilio-key", _bounded(p.pattern, right=r"(?![A-Za-z0-9])"), gates=("ac", "sk"))
    add("openai-key", _bounded(ds(OpenAIDetector).pattern, r"[A-Za-z0-9_-]*"), gates=("t3blbkfj",))
    add("anthropic-key", _bounded(r"sk-ant-[a-z]{2,8}\d{2}-[A-Za-z0-9_\-]{20,}"), gates=("sk-ant-",))
    add("openai-key", _bounded(r"sk-(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{20,}"), gates=("sk-",))
    add("openai-key", _bounded(r"sk-[A-Za-z0-9]{32,}"), check=_has_digit_and_mixed_case, gates=("sk-",))
    add("mailchimp-key", _bounded(ds(MailchimpDetector).pattern, right=r"(?![A-Za-z0-9])"), gates=("-us",))
    for p in PypiTokenDetector.denylist:
        add("pypi-token", _bounded(p.pattern), gates=("pypi-",))
    add("square-secret", _bounded(ds(SquareOAuthDetector).pattern + r"|sq0atp-[0-9A-Za-z\-_]{22,}"),
        gates=("sq0",))
    az = ds(AzureStorageKeyDetector)
    add("azure-storage-key", r"(?i)(?<=AccountKey=)" + az.pattern.removeprefix("AccountKey=")
        .replace("{88}", "{20,}"), gates=("accountkey=",), fmt=False)
    add("azure-sas", r"(?i)SharedAccessSignature=(?P<val>[^;\s\"'<>]+)", group="val",
        gates=("sharedaccesssignature",), fmt=False)
    add("azure-sas", r"[?&;]sig=(?P<val>[A-Za-z0-9%+/=]{16,})", group="val", gates=("sig=",), fmt=False)
    add("npm-token", _bounded(r"npm_[A-Za-z0-9]{36}", tok), gates=("npm_",))
    add("npm-token", r":_(?:authToken|auth|password)\s*=\s*(?P<val>[^\s\"']+)", group="val",
        check=_not_placeholder, gates=(":_",))
    add("vault-token", _bounded(r"hv[sbr]\.[A-Za-z0-9_\-]{24,}"), gates=("hvs.", "hvb.", "hvr."))
    add("atlassian-token", _bounded(r"ATATT3[A-Za-z0-9_\-=]{40,}"), gates=("atatt3",))
    add("grafana-token", _bounded(r"gl(?:sa|c)_[A-Za-z0-9_+/=\-]{32,}"), gates=("glsa_", "glc_"))
    add("newrelic-key", _bounded(r"NR(?:AK|AA|II)-[A-Z0-9]{27}"), gates=("nrak-", "nraa-", "nrii-"))
    add("docker-token", _bounded(r"dckr_pat_[A-Za-z0-9_\-]{24,}"), gates=("dckr_pat_",))
    add("shopify-token", _bounded(r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"), gates=("shp",))
    add("jwt", _bounded(r"eyJ[A-Za-z0-9_\-]{8,}={0,2}\.[A-Za-z0-9_\-]{4,}={0,2}"
                        r"(?:\.[A-Za-z0-9_\-+/]*={0,2}){0,3}", left=r"(?<![A-Za-z0-9_\-])"), gates=("eyj",))
    rules.append(_Rule("private-key", _PEM_BEGIN, gates=("private key",), fmt=True, finder=_pem_spans))
    rules.append(_Rule("private-key", _PUTTY_BEGIN, gates=("putty-user",), fmt=True, finder=_putty_spans))

    # -- contextual (priority 1, 2) ---------------------------------------------------------------------
    add("password", r"://(?P<user>[^\s:/@?#\"'<>]*):(?P<val>[^\s/?#\"'<>]+)@(?=[^\s@/?#\"'<>]*)",
        group="val", prio=1, check=_not_placeholder, gates=("://",))
    add("authorization",
        r"(?i)(?<![A-Za-z0-9-])(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?"
        r"(?:(?P<scheme>bearer|basic|token|digest|negotiate|ntlm|apikey|sso-key|key|dsn|aws4-hmac-sha256)"
        r"\s+)?(?P<val>[^\s\"',;]+(?:,\s*[A-Za-z]+=[^\s,\"']+)*)",
        group="val", prio=1, check=_auth_header, gates=("authorization",))
    add("bearer-token", r"(?i)\bbearer\s+(?P<val>[A-Za-z0-9\-._~+/]{16,}=*)", group="val", prio=1,
        check=_has_digit, gates=("bearer",))
    add("basic-auth", r"(?i)\bbasic\s+(?P<val>[A-Za-z0-9+/]{8,}={0,2})(?![A-Za-z0-9+/=])", group="val",
        prio=1, check=_basic_auth, gates=("basic",))
    add("cookie", r"(?im)(?<![A-Za-z0-9-])(?:set-)?cookie[\"']?\s*:\s*[\"']?(?P<val>[^\r\n\"']+)",
        group="val", prio=1, check=_not_placeholder, gates=("cookie",))
    kw = _keyword_pattern(DS_KEYWORDS)
    add("secret", rf"(?i)<(?P<key>[\w:.-]*(?:{kw})[\w.-]*)>(?P<val>[^<]{{1,{_MAX_VALUE}}})</(?P=key)>",
        group="val", prio=2, check=_keyed, gates=("</",))

    def lb(*xs: str) -> str:
        return "|".join(f"(?<={x})" for x in xs)

    # The precheck for the token formats above: every branch starts with a rare character (`_`, `-`, `.`,
    # an upper-case letter) and confirms the prefix with a look-behind, so `re` can skip from one
    # candidate character to the next instead of trying 40 alternatives at every position.
    precheck = re.compile(
        "_(?:" + lb("gh[pousr]_", "github_pat_", "k_live_", "k_test_", "whsec_", "npm_", "dckr_pat_",
                    "shp[a-z][a-z]_", "glsa_", "glc_", ":_") + ")"
        "|-(?:us\\d|" + lb("glpat-", "gldt-", "glft-", "glsoat-", "glrt-", "glcbt-", "glimt-", "glptt-",
                          "glagent-", "gloas-", "[Xx][Oo][Xx][A-Za-z]-", "xoxe-", "xapp-", "[^A-Za-z0-9]sk-", "pypi-",
                          "sq0csp-", "sq0atp-", "GOCSPX-", "NR[AI][AKI]-", "[Xx]-[Aa]mz-") + ")"
        "|\\.(?:" + lb("hv[sbr]\\.", "SG\\.", "ya29\\.", "xoxe\\.", "hooks\\.") + ")"
        "|=(?<=sig=)"
        "|A(?:KIA|SIA|BIA|CCA|3T[A-Z0-9]|Iza|C[a-z0-9]{32}|TATT3|ccountKey)|SK[a-z0-9]{32}|GR1348941"
        "|SharedAccess|PRIVATE KEY|PuTTY-User|J(?<=eyJ)|T3BlbkFJ"
        "|://[^\\s/@]*:[^\\s/]*@"
    )
    return rules, precheck, kw


class _Detectors(NamedTuple):
    rules: list[_Rule]
    precheck: re.Pattern[str]
    key_keyword: re.Pattern[str]


_built: _Detectors | None = None
_built_lock = threading.Lock()


def _detectors() -> _Detectors:
    """The rules, built on first use rather than at import: building them imports detect-secrets (and with it
    `requests`), about a third of a CLI command's start-up, and most commands (`case list`, `--help`) never
    redact anything. The first redaction in a process pays for it instead; a failure to build is raised
    there, so a record that cannot be redacted is refused (nothing unredacted is written)."""
    global _built
    built = _built
    if built is None:
        with _built_lock:
            if _built is None:
                rules, precheck, kw = _build_rules()
                _built = _Detectors(rules, precheck, re.compile(rf"(?i)(?:{kw})"))
            built = _built
    return built
_STEMS_RE = re.compile("|".join(_STEMS), re.IGNORECASE)
# Anchored at a stem found by `str.find`: the rest of the key, its closing quote, the operator, the value.
_ASSIGN_AT = re.compile(
    r"(?i)(?:contrase|credential|secret|token|pass|pwd|key)(?P<rest>[A-Za-z0-9_.\-]*)(?P<kq>[\"'`]?\]?)[ \t]*"
    r"(?P<op>:=|=>|===?|!==?|=|:)(?!//)[ \t]*"
    rf"(?:\"(?P<dq>(?:[^\"\\\n]|\\.){{0,{_MAX_VALUE}}})\"|'(?P<sq>[^'\n]{{0,{_MAX_VALUE}}})'"
    rf"|`(?P<bq>[^`\n]{{0,{_MAX_VALUE}}})`|(?P<uq>(?:[^\s;&'\"`<>,|]|,(?!\s)){{1,{_MAX_VALUE}}}))"
)
# `--db-password value`, anchored at the key start found from a stem
_CLI_AT = re.compile(r"--?(?P<key>[A-Za-z0-9_.\-]+)[ \t]+(?P<val>[^\s'\"\-][^\s'\"]*|\"[^\"\n]*\"|'[^'\n]*')")
_LINE_START_RE = re.compile(r"[ \t]*(?:-[ \t]+|export[ \t]+)?[\"']?$")
_YAML_COMMENT_RE = re.compile(r"[ \t]+#.*$")


def _stem_positions(text: str, low: str, stems: Iterable[str]) -> list[int]:
    """Where a keyword stem starts in `text` (via `str.find` on the lowered copy, which is fast)."""
    if len(low) != len(text):  # a few non-ASCII letters change length when lowered: use the slow path
        return [m.start() for m in _STEMS_RE.finditer(text)]
    out: list[int] = []
    for stem in stems:
        i = low.find(stem)
        while i >= 0:
            out.append(i)
            i = low.find(stem, i + 1)
    return out


def _keyword_findings(text: str, positions: Iterable[int]) -> list[Finding]:
    """`password=…`, `"api_key": "…"`, `DD_API_KEY: …`, `PGPASSWORD=…`: the value of a secret-named key.

    The key is every key character around the stem (`PGPASSWORD`, `aws_secret_access_key`), and its type
    comes from the whole key (`classify_key`), so `secret_name` or `max_tokens` are left alone.
    """
    out: list[Finding] = []
    seen: set[int] = set()
    covered = nested = 0
    for pos in sorted(positions):
        # A key inside the previous value (`credential: TWILIO_AUTH_TOKEN=…`) is looked at, but only a few
        # times per value: `password=password=…` must not cost 4 KB of matching per stem.
        if pos < covered:
            nested += 1
            if nested > 8:
                continue
        else:
            nested = 0
        start = pos
        while start > 0 and text[start - 1] in _KEY_CHARS:
            start -= 1
        if start in seen:
            continue
        seen.add(start)
        if text.endswith(PLACEHOLDER_PREFIX, 0, start):
            continue  # the type name inside a placeholder, e.g. [REDACTED:password]
        m = _ASSIGN_AT.match(text, pos)
        if m is None:
            if text.startswith("-", start) and (c := _CLI_AT.match(text, start)):
                kind = classify_key(c.group("key"))
                vstart, vend = c.span("val")
                if c.group("val")[0] in "\"'":
                    vstart, vend = vstart + 1, vend - 1
                if kind is not None and vend > vstart and _value_is_secret(kind, text[vstart:vend]):
                    out.append(Finding(kind, vstart, vend, 2))
            continue
        kind = classify_key(text[start : m.end("rest")])
        if kind is None:
            continue
        for g in ("dq", "sq", "bq", "uq"):
            if m.group(g) is not None:
                vstart, vend = m.span(g)
                break
        else:  # pragma: no cover - the regex always sets one group
            continue
        if g == "uq" and m.group("op") == ":":
            # `password: correct horse battery staple` on a line of its own: the value is the rest of line
            line_start = text.rfind("\n", 0, start) + 1
            if _LINE_START_RE.match(text, line_start, start):
                line_end = text.find("\n", vend)
                line_end = len(text) if line_end < 0 else line_end
                line = text[vstart:line_end]
                cut = _YAML_COMMENT_RE.search(line)
                vend = vstart + len((line[: cut.start()] if cut else line).rstrip())
        elif g == "uq" and text.startswith(" ", vend):
            # `Password=p@ss w0rd;Encrypt=true`: in a `;`-separated connection string the value runs to `;`
            semi = text.find(";", vend, vend + 256)
            if semi > 0 and "=" not in text[vend:semi] and "\n" not in text[vend:semi]:
                vend = semi
        value = text[vstart:vend]
        if _value_is_secret(kind, value):
            out.append(Finding(kind, vstart, vend, 2))
            covered = max(covered, vend)
    return out


def _merge(findings: list[Finding]) -> list[Finding]:
    """Union of overlapping spans (never leave part of anything a detector flagged), typed by the most
    specific member: the lowest priority, then the shortest span (`credential: TWILIO_AUTH_TOKEN=…` is a
    twilio-key even though the outer `credential:` value covers it)."""
    findings.sort(key=lambda f: (f.start, f.priority))
    merged: list[Finding] = []
    best: list[Finding] = []
    for f in findings:
        if merged and f.start < merged[-1].end:
            last, top = merged[-1], best[-1]
            if (f.priority, f.end - f.start) < (top.priority, top.end - top.start):
                best[-1] = top = f
            merged[-1] = Finding(top.type, last.start, max(last.end, f.end), top.priority)
        else:
            merged.append(f)
            best.append(f)
    return merged


def parse_user_pattern(spec: str) -> _Rule:
    """`"name=regex"` (placeholder type `name`) or a bare `"regex"` (type `custom`).

    The secret is the group named `secret`, else the only group, else the whole match.
    """
    name, sep, rx = spec.partition("=")
    if sep and _TYPE_NAME_RE.match(name.strip()):
        kind, pattern = name.strip().replace("_", "-"), rx
    else:
        kind, pattern = "custom", spec
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(
            f"[redact] patterns: {spec!r} is not a valid regular expression ({exc}). Write it as "
            f'"name=regex", e.g. "acme-key=ACME-[0-9a-f]{{32}}".'
        ) from exc
    group: int | str = 0
    if "secret" in compiled.groupindex:
        group = "secret"
    elif compiled.groups == 1:
        group = 1
    return _Rule(kind, compiled, group, -1, None)


def _drop_placeholders(text: str, found: list[Finding]) -> list[Finding]:
    """Ignore findings that are (inside) existing placeholders, so redacting twice changes nothing."""
    holes = [m.span() for m in _PLACEHOLDER_RE.finditer(text)]
    if not holes:
        return found
    kept = []
    for f in found:
        start, end = f.start, f.end
        for hs, he in holes:  # a finding never starts or ends inside a placeholder: trim it to the text around
            if hs <= start < he:
                start = he
            if hs < end <= he:
                end = hs
        if start >= end:
            continue
        rest = _PLACEHOLDER_RE.sub("", text[start:end])
        if any(c.isalnum() for c in rest):
            kept.append(f if (start, end) == (f.start, f.end) else Finding(f.type, start, end, f.priority))
    return kept


def may_hold_secret(text: str) -> bool:
    """The precheck alone: False means no built-in detector can fire on `text` (user rules aside)."""
    if _detectors().precheck.search(text) is not None or text.startswith("sk-"):
        return True
    low = text.lower()
    for literal in _PRECHECK_LITERALS:  # noqa: SIM110 - a plain loop: `any(<generator>)` costs more than the look
        if literal in low:
            return True
    return False


def scan(text: str, user_rules: list[_Rule], *, precheck: bool = True) -> list[Finding]:
    """All secrets in `text` as it is (no decoding), merged and sorted. `precheck=False` runs every detector.

    User rules always run; the built-in ones only when the cheap precheck says the text may hold one.
    """
    found: list[Finding] = []
    for rule in user_rules:
        for m in rule.regex.finditer(text):
            if m.group(rule.group):
                found.append(Finding(rule.type, *m.span(rule.group), rule.priority))
    low = text.lower()
    if precheck:
        fmt_hit = _detectors().precheck.search(text) is not None or text.startswith("sk-")
        stems = [s for s in _STEMS if s in low]
        if not (fmt_hit or stems or any(lit in low for lit in _CONTEXT_LITERALS)):
            return _merge(found) if found else found
    else:
        fmt_hit, stems = True, list(_STEMS)
    for rule in _detectors().rules:
        if precheck and ((rule.fmt and not fmt_hit) or not any(g in low for g in rule.gates)):
            continue
        if rule.finder is not None:
            found.extend(Finding(rule.type, a, b, rule.priority) for a, b in rule.finder(text))
            continue
        for m in rule.regex.finditer(text):
            kind = rule.type if rule.check is None else rule.check(m, rule.type)
            if kind is None:
                continue
            s, e = m.span(rule.group)
            if e > s:
                found.append(Finding(kind, s, e, rule.priority))
    if stems:
        found.extend(_keyword_findings(text, _stem_positions(text, low, stems)))
    if not found:
        return found
    if PLACEHOLDER_PREFIX in text:
        found = _drop_placeholders(text, found)
    return _merge(found)
