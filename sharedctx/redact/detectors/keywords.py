"""Secret-named keys: which keys hold a secret, which of their values are one, and where such
`key = value` assignments are in a text.

Most credentials in incident notes have no recognisable format (an AWS secret key, a Datadog key, a
database password); what gives them away is the key they are assigned to. That grammar — the keyword
list, the suffixes that make a key a *reference to* a secret, the values that are placeholders rather
than secrets — is used by the text scan, by the `<password>…</password>` rule and by `Redactor` for the
keys of nested values, so it is one module.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from .model import _MAX_VALUE, PLACEHOLDER_PREFIX, Finding
from .rules import _STEMS, _detectors

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


def _keyed(m: re.Match[str], kind: str) -> str | None:
    """`<password>…</password>`: type from the tag name; skip references and masks."""
    key = m.group("key")
    t = classify_key(key)
    if t is None or not _value_is_secret(t, m.group("val")):
        return None
    return t


# ------------------------------------------------------------------------------------ keyword findings

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
