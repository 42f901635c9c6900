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

Seams (one module each)
-----------------------
* `model`: `Finding`, `_Rule` and the `[REDACTED:<type>]` placeholder, which all the others share.
* `keywords`: secret-named keys — `classify_key`, `_value_is_secret` and the `key = value` findings.
* `rules`: the format and contextual rules, PEM/PuTTY blocks, the precheck, and `_detectors()`, the one
  cache of the built table.
* `scanner`: one pass over a text (`scan`, `may_hold_secret`), merging, placeholders left alone, and
  `parse_user_pattern` for `[redact] patterns`. Not named `scan`: the function re-exported here would
  hide the module (`import sharedctx.redact.detectors.scan` would give the function).

Every name the module had is re-exported here, private ones included (`Redactor` uses `_merge`,
`_value_is_secret`, …), except the cache's own state (`_built`, `_built_lock`), which lives only in
`rules`: a copy here would be a stale `None`.
"""

from __future__ import annotations

from .keywords import (
    _ASSIGN_AT,
    _CLI_AT,
    _EXTRA_KEYWORDS,
    _KEY_CHARS,
    _LINE_START_RE,
    _NOT_SECRET_VALUES,
    _REFERENCE_PREFIXES,
    _STEMS_RE,
    _SUFFIX_SKIP,
    _TOKEN_PREFIX_SKIP,
    _YAML_COMMENT_RE,
    _keyed,
    _keyword_findings,
    _keyword_pattern,
    _stem_positions,
    _value_is_secret,
    classify_key,
)
from .model import (
    _MAX_VALUE,
    _PLACEHOLDER_RE,
    PLACEHOLDER_PREFIX,
    Finding,
    _Check,
    _Rule,
    placeholder,
)
from .rules import (
    _CONTEXT_LITERALS,
    _MAX_BLOCK,
    _PEM_BEGIN,
    _PEM_BODY,
    _PEM_END,
    _PRECHECK_LITERALS,
    _PUTTY_BEGIN,
    _PUTTY_END,
    _STEMS,
    _auth_header,
    _basic_auth,
    _block_spans,
    _bounded,
    _build_rules,
    _Detectors,
    _detectors,
    _has_digit,
    _has_digit_and_mixed_case,
    _not_placeholder,
    _pem_spans,
    _putty_spans,
)
from .scanner import (
    _TYPE_NAME_RE,
    _drop_placeholders,
    _merge,
    may_hold_secret,
    parse_user_pattern,
    scan,
)

__all__ = [
    "PLACEHOLDER_PREFIX",
    "_ASSIGN_AT",
    "_CLI_AT",
    "_CONTEXT_LITERALS",
    "_EXTRA_KEYWORDS",
    "_KEY_CHARS",
    "_LINE_START_RE",
    "_MAX_BLOCK",
    "_MAX_VALUE",
    "_NOT_SECRET_VALUES",
    "_PEM_BEGIN",
    "_PEM_BODY",
    "_PEM_END",
    "_PLACEHOLDER_RE",
    "_PRECHECK_LITERALS",
    "_PUTTY_BEGIN",
    "_PUTTY_END",
    "_REFERENCE_PREFIXES",
    "_STEMS",
    "_STEMS_RE",
    "_SUFFIX_SKIP",
    "_TOKEN_PREFIX_SKIP",
    "_TYPE_NAME_RE",
    "_YAML_COMMENT_RE",
    "Finding",
    "_Check",
    "_Detectors",
    "_Rule",
    "_auth_header",
    "_basic_auth",
    "_block_spans",
    "_bounded",
    "_build_rules",
    "_detectors",
    "_drop_placeholders",
    "_has_digit",
    "_has_digit_and_mixed_case",
    "_keyed",
    "_keyword_findings",
    "_keyword_pattern",
    "_merge",
    "_not_placeholder",
    "_pem_spans",
    "_putty_spans",
    "_stem_positions",
    "_value_is_secret",
    "classify_key",
    "may_hold_secret",
    "parse_user_pattern",
    "placeholder",
    "scan",
]  # fmt: skip
