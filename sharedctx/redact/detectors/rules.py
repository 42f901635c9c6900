"""The rule table: one regex (or block finder) per credential format and contextual shape, and the
precheck that lets almost all journal text skip every rule.

The table is built once per process, on first use, because building it imports detect-secrets (and
`requests` with it); the `_detectors()` cache here is the only copy of it.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from typing import Any, NamedTuple

from .model import _MAX_VALUE, PLACEHOLDER_PREFIX, _Check, _Rule

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

    # Here, not at the top: `keywords` imports this module (`classify_key` reads the built table's keyword
    # regex), and the `<password>…</password>` rule below needs `classify_key`.
    from .keywords import _keyed, _keyword_pattern

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
        # `scheme://user:pass@`. Not `[^\\s/@]*:[^\\s/]*@`: that backtracks over every `:` of a run with no space
        # or `/` (quadratic: seconds for 64 KB of colons, and `sanitize` looks at a whole entry at once, NUL
        # being no stop). A text holds that only if its first `:` after `://` comes before any `@` and an `@`
        # follows that `:` before any space or `/`; so stop at the first `:` and then at the first `@`.
        "|://[^\\s/@:]*:[^\\s/@]*@"
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
