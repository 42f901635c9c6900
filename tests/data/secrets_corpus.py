"""A reusable corpus of fake-but-format-valid secrets and of look-alike non-secrets.

Reuse it for end-to-end checks (backend requests, MCP responses, log lines):

* `SAMPLES`    (type, value, text): `text` embeds `value` in its natural context (env line, YAML, JSON,
  curl header, URL, prose). Embed `text`, then assert `value` never comes out the other side.
  Some types are only detectable *with* their context (an AWS secret key or a Datadog key is a bare
  40/32-char string), so always embed `text`, not `value`.
* `SECRETS`    (type, value): the same, as the brief's interface.
* `LOOKALIKES` strings that must survive redaction (hashes, ids, queries, URLs without passwords).
* `leaked(value, output)`: whether the value or a significant piece of it (an alphanumeric run of 8+
  characters that is not an all-caps armour word like ENCRYPTED) appears in `output`.

Values are generated from a fixed seed at import time rather than stored as literals, so the
repository does not itself contain strings that secret scanners (GitHub push protection, gitleaks)
flag, and the corpus is identical on every run.
"""

from __future__ import annotations

import base64
import json
import random
import re
import string

_rng = random.Random(20240611)
_UPPER_DIGITS = string.ascii_uppercase + "234567"
_ALNUM = string.ascii_letters + string.digits
_LOWER_ALNUM = string.ascii_lowercase + string.digits
_HEX = "0123456789abcdef"
_B64 = string.ascii_letters + string.digits + "+/"
_URLSAFE = string.ascii_letters + string.digits + "-_"


def _r(alphabet: str, n: int) -> str:
    """A random string that has at least one digit, one upper and one lower case letter where possible."""
    while True:
        s = "".join(_rng.choice(alphabet) for _ in range(n))
        classes = [set(string.digits), set(string.ascii_uppercase), set(string.ascii_lowercase)]
        needed = [c for c in classes if c & set(alphabet)]
        if n < 12 or all(c & set(s) for c in needed):
            return s


def _b64url(obj: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).decode().rstrip("=")


def _jwt(claims: dict[str, object]) -> str:
    header = _b64url({"alg": "RS256", "typ": "JWT", "kid": _r(_HEX, 16)})
    return f"{header}.{_b64url(claims)}.{_r(_URLSAFE, 86)}"


def _pem(label: str, lines: int = 6, sep: str = "\n") -> tuple[str, str]:
    body = sep.join(_r(_B64, 64) for _ in range(lines)) + sep + _r(_B64, 20) + "=="
    block = f"-----BEGIN {label}-----{sep}{body}{sep}-----END {label}-----"
    return block, body


def _aws_id(prefix: str = "AKIA") -> str:
    return prefix + _r(_UPPER_DIGITS, 16)


def _samples() -> list[tuple[str, str, str]]:
    s: list[tuple[str, str, str]] = []

    def add(kind: str, value: str, text: str) -> None:
        assert value in text, (kind, value)
        s.append((kind, value, text))

    # AWS
    v = _aws_id()
    add("aws-access-key", v, f"export AWS_ACCESS_KEY_ID={v}")
    v = _aws_id()
    add("aws-access-key", v, f"CloudTrail shows ConsoleLogin from key {v} at 03:12 UTC, revoking it now.")
    v = _aws_id("ASIA")
    add("aws-access-key", v, json.dumps({"level": "info", "msg": "assumed role", "access_key": v}))
    v = _r(_B64, 40)
    add("aws-secret-key", v, f"[default]\naws_access_key_id = {_aws_id()}\naws_secret_access_key = {v}\n")
    v = _r(_B64, 40)
    add("aws-secret-key", v, f"AWS_SECRET_ACCESS_KEY={v} terraform apply -target=module.db")
    v = _r(_B64, 40)
    add("aws-secret-key", v, f'boto3.client("s3", aws_access_key_id=KEY_ID, aws_secret_key="{v}")')
    v = "IQoJb3JpZ2luX2VjE" + _r(_B64, 300)
    add("aws-session-token", v, f"aws_session_token = {v}")
    v = _r(_HEX, 64)
    add("aws-signature", v,
        "https://acme-artifacts.s3.amazonaws.com/dumps/heap.hprof?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        f"&X-Amz-Date=20240611T101500Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature={v}")
    # GCP
    v = "AIza" + _r(_URLSAFE, 35)
    add("gcp-api-key", v, f"maps call failed: GET https://maps.googleapis.com/maps/api/geocode/json?key={v}")
    v = "AIza" + _r(_URLSAFE, 35)
    add("gcp-api-key", v, f"firebase:\n  apiKey: {v}\n  projectId: acme-prod")
    block, body = _pem("PRIVATE KEY", sep="\\n")
    add("private-key", body,
        '{"type": "service_account", "project_id": "acme-prod", "private_key_id": "'
        + _r(_HEX, 40) + f'", "private_key": "{block}\\n", "client_email": "ci@acme-prod.iam.gserviceaccount.com"}}')
    v = "GOCSPX-" + _r(_URLSAFE, 28)
    add("gcp-oauth-secret", v, f"oauth client rotated; old secret {v} must be removed from the helm values")
    v = "ya29." + _r(_URLSAFE, 120)
    add("gcp-access-token", v, f"gcloud auth print-access-token -> {v}")
    # Azure
    v = _r(_ALNUM + "+/", 86) + "=="
    add("azure-storage-key", v,
        f"DefaultEndpointsProtocol=https;AccountName=acmelogs;AccountKey={v};EndpointSuffix=core.windows.net")
    v = _r(_ALNUM + "+/", 43) + "="
    add("azure-key", v, f"Endpoint=sb://acme-bus.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;"
        f"SharedAccessKey={v}")
    v = _r(_ALNUM, 40) + "%3D"
    add("azure-sas", v, "https://acmelogs.blob.core.windows.net/traces/run.json?sv=2022-11-02&ss=b&srt=o&sp=r"
        f"&se=2024-06-12T00:00:00Z&spr=https&sig={v}")
    # GitHub
    for prefix in ("ghp", "gho", "ghu", "ghs", "ghr"):
        v = f"{prefix}_" + _r(_ALNUM, 36)
        ctx = {
            "ghp": f"GITHUB_TOKEN={v}",
            "gho": f"gh auth status: Logged in to github.com as octo (oauth_token: {v})",
            "ghu": f'{{"token": "{v}", "expires_at": "2024-06-11T12:00:00Z"}}',
            "ghs": f"git clone https://x-access-token:{v}@github.com/acme/payments.git",
            "ghr": f"refresh with {v} failed: bad_refresh_token",
        }[prefix]
        add("github-token", v, ctx)
    v = "github_pat_" + _r(_ALNUM, 22) + "_" + _r(_ALNUM, 59)
    add("github-token", v, f"curl -H 'Authorization: token {v}' https://api.github.com/repos/acme/api/issues")
    # GitLab
    v = "glpat-" + _r(_URLSAFE, 20)
    add("gitlab-token", v, f"PRIVATE-TOKEN: {v}")
    v = "glpat-" + _r(_URLSAFE, 20)
    add("gitlab-token", v, f"the runner used {v} to push the hotfix tag")
    v = "gldt-" + _r(_URLSAFE, 20)
    add("gitlab-token", v, f"deploy token {v} (read_registry)")
    # Slack
    v = f"xoxb-{_rng.randint(10**10, 10**11)}-{_rng.randint(10**12, 10**13)}-{_r(_ALNUM, 24)}"
    add("slack-token", v, f"SLACK_BOT_TOKEN={v}")
    n1, n2, n3 = _rng.randint(10**10, 10**11), _rng.randint(10**10, 10**11), _rng.randint(10**12, 10**13)
    v = f"xoxp-{n1}-{n2}-{n3}-{_r(_HEX, 32)}"
    add("slack-token", v, f"posting as user with {v} because the bot lacks chat:write")
    v = f"xapp-1-A{_r(_UPPER_DIGITS, 10)}-{_rng.randint(10**12, 10**13)}-{_r(_HEX, 64)}"
    add("slack-token", v, f"socket mode app token: {v}")
    v = f"https://hooks.slack.com/services/T{_r(_UPPER_DIGITS, 8)}/B{_r(_UPPER_DIGITS, 10)}/{_r(_ALNUM, 24)}"
    add("slack-webhook", v, f'alertmanager receiver slack_configs: [{{api_url: "{v}"}}]')
    # Stripe
    v = "sk_live_" + _r(_ALNUM, 24)
    add("stripe-key", v, f"STRIPE_SECRET_KEY={v}")
    v = "rk_live_" + _r(_ALNUM, 24)
    add("stripe-key", v, f"payments-worker 500: Invalid API Key provided: {v}")
    v = "sk_test_" + _r(_ALNUM, 99)
    add("stripe-key", v, f"stripe.api_key = '{v}'")
    v = "whsec_" + _r(_ALNUM, 32)
    add("stripe-key", v, f"webhook signing secret is {v}")
    # JWT
    v = _jwt({"sub": "svc-checkout", "iss": "https://auth.acme.io", "exp": 1718100000})
    add("jwt", v, f"curl -H \"Authorization: Bearer {v}\" https://api.acme.io/v1/orders")
    v = _jwt({"sub": "1234567890", "name": "Jane Ops", "admin": True})
    add("jwt", v, json.dumps({"id_token": v, "token_type": "Bearer"}))
    v = _jwt({"sid": _r(_HEX, 16), "scope": "read"})
    add("jwt", v, f"set-cookie header echoed in the error page: session={v}; Path=/; HttpOnly")
    # PEM private keys
    block, body = _pem("RSA PRIVATE KEY", lines=8)
    add("private-key", body, f"found in the pod's /root/.ssh/id_rsa:\n{block}\nremoving the volume mount")
    block, body = _pem("EC PRIVATE KEY", lines=3)
    add("private-key", body, f"tls.key: |\n  {block}")
    block, body = _pem("OPENSSH PRIVATE KEY", lines=5)
    add("private-key", body, block)
    block, body = _pem("ENCRYPTED PRIVATE KEY", lines=4)
    add("private-key", body, f"```\n{block}\n```")
    block, body = _pem("PGP PRIVATE KEY BLOCK", lines=4)
    add("private-key", body, block)
    trunc = "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(_r(_B64, 64) for _ in range(3))
    add("private-key", trunc.split("\n", 1)[1], trunc + "\n(output truncated)")
    # Authorization headers
    v = _r(_ALNUM, 40)
    add("bearer-token", v, f"GET /internal/metrics HTTP/1.1\nHost: api\nAuthorization: Bearer {v}\n")
    v = _r(_ALNUM + "-._", 32)
    add("bearer-token", v, f"retrying with bearer {v} after 401")
    v = base64.b64encode(b"deploy-bot:" + _r(_ALNUM, 18).encode()).decode()
    add("basic-auth", v, f"curl -H 'Authorization: Basic {v}' https://jenkins.acme.io/job/deploy/build")
    # passwords
    v = _r(_ALNUM, 14) + "!$"
    add("password", v, f"DATABASE_URL=postgres://orders_app:{v}@orders-db.internal:5432/orders?sslmode=require")
    v = _r(_ALNUM, 20)
    add("password", v, f"redis://:{v}@cache-1.acme.internal:6379/0")
    v = _r(_ALNUM, 12) + "@" + _r(_ALNUM, 6)
    add("password", v, f"mongodb+srv://reporting:{v}@cluster0.ab1cd.mongodb.net/prod?retryWrites=true")
    v = _r(_ALNUM, 16)
    add("password", v, f"amqp://guest:{v}@rabbitmq:5672/ connection refused")
    v = _r(_ALNUM, 10) + " " + _r(_ALNUM, 6)
    add("password", v, "Server=tcp:acme.database.windows.net,1433;Database=billing;User ID=billing;"
        f"Password={v};Encrypt=True;")
    v = _r(_ALNUM, 18)
    add("password", v, f"PGPASSWORD={v} psql -h orders-db -U postgres -c 'select 1'")
    v = _r(_ALNUM, 12)
    add("password", v, f"jdbc:postgresql://db:5432/app?user=app&password={v}&ssl=true")
    v = "correct horse " + _r(string.ascii_lowercase, 9) + " staple"
    add("password", v, f"redis:\n  host: cache\n  password: {v}\n  db: 0")
    v = _r(_ALNUM + "#%^", 16)
    add("password", v, json.dumps({"db": {"user": "ro", "password": v, "host": "db-ro"}}))
    v = _r(_ALNUM, 14)
    add("password", v, f"mysqldump --user=root --password {v} --all-databases")
    v = _r(_ALNUM, 12)
    add("password", v, f"<dataSource><user>sa</user><password>{v}</password></dataSource>")
    v = _r(_ALNUM, 11)
    add("password", v, f"level=error msg=\"login failed\" user=admin db_pass={v} host=10.2.3.4")
    # generic keyword secrets
    v = _r(_ALNUM + "-_", 40)
    add("secret", v, f"client_secret: {v}")
    v = _r(_ALNUM + "!@#%^&*(-_=+)", 50)
    add("secret", v, f"SECRET_KEY = '{v}'")
    v = _r(_HEX, 40)
    add("api-key", v, f"X-API-Key: {v}")
    v = _r(_ALNUM, 32)
    add("api-key", v, f"GET https://api.weather.example/v2/now?city=Berlin&api_key={v}&units=metric")
    v = _r(_ALNUM, 40)
    add("token", v, f"oauth response: access_token={v}&expires_in=3599&token_type=bearer")
    v = _r(_ALNUM, 26)
    add("cookie", v, f"Cookie: sessionid={v}; csrftoken=abc")
    # npm
    v = "npm_" + _r(_ALNUM, 36)
    add("npm-token", v, f"//registry.npmjs.org/:_authToken={v}")
    v = "npm_" + _r(_ALNUM, 36)
    add("npm-token", v, f"publish failed with token {v} (E403)")
    # PagerDuty / Datadog
    v = _r(_HEX, 32)
    add("pagerduty-key", v, json.dumps({"routing_key": v, "event_action": "trigger"}))
    v = "u+" + _r(_ALNUM, 18)
    add("pagerduty-key", v, f"curl -H 'Authorization: Token token={v}' https://api.pagerduty.com/incidents")
    v = _r(_ALNUM + "_", 20)
    add("pagerduty-key", v, f"PAGERDUTY_API_KEY={v}")
    v = _r(_HEX, 32)
    add("datadog-key", v, f"DD_API_KEY={v}")
    v = _r(_HEX, 40)
    add("datadog-key", v, f"curl -H 'DD-APPLICATION-KEY: {v}' https://api.datadoghq.com/api/v1/monitor")
    # SendGrid / Twilio / OpenAI / Anthropic / misc vendors
    v = f"SG.{_r(_URLSAFE, 22)}.{_r(_URLSAFE, 43)}"
    add("sendgrid-key", v, f"SENDGRID_API_KEY={v}")
    v = "SK" + _r(_LOWER_ALNUM[:16] + "0123456789", 32)
    add("twilio-key", v, f"twilio api key sid {v} was used from an unknown IP")
    v = _r(_HEX, 32)
    add("twilio-key", v, f"TWILIO_AUTH_TOKEN={v}")
    v = "sk-proj-" + _r(_URLSAFE, 120)
    add("openai-key", v, f"OPENAI_API_KEY={v}")
    v = "sk-" + _r(_ALNUM, 20) + "T3BlbkFJ" + _r(_ALNUM, 20)
    add("openai-key", v, f"openai.AuthenticationError: Incorrect API key provided: {v}.")
    v = "sk-" + _r(_ALNUM, 48)
    add("openai-key", v, f"the agent echoed its key sk… no wait, full key: {v}")
    v = "sk-ant-api03-" + _r(_URLSAFE, 93) + "AA"
    add("anthropic-key", v, f"x-api-key header was {v}")
    v = "hvs." + _r(_URLSAFE, 90)
    add("vault-token", v, f"VAULT_TOKEN={v} vault kv get secret/payments")
    v = "ATATT3" + _r(_URLSAFE, 170) + "=" + _r(_HEX, 8).upper()
    add("atlassian-token", v, f"jira backend 401 with api token {v}")
    v = _r(_HEX, 32) + "-us6"
    add("mailchimp-key", v, f"mailchimp key {v} in the marketing cron")
    v = "dckr_pat_" + _r(_URLSAFE, 27)
    add("docker-token", v, f"docker login -u acme -p {v}")
    v = "glsa_" + _r(_ALNUM, 32) + "_" + _r(_HEX, 8)
    add("grafana-token", v, f"GRAFANA_TOKEN={v}")
    v = "NRAK-" + _r(_UPPER_DIGITS, 27)
    add("newrelic-key", v, f"newrelic api key {v}")
    return s


SAMPLES: list[tuple[str, str, str]] = _samples()
SECRETS: list[tuple[str, str]] = [(kind, value) for kind, value, _ in SAMPLES]


def _lookalikes() -> list[str]:
    sha256 = [_r(_HEX, 64) for _ in range(4)]
    sha1 = [_r(_HEX, 40) for _ in range(3)]
    uuids = ["3f2b8c1e-9d4a-4e6b-8a7c-1b2d3e4f5a6b", "123e4567-e89b-12d3-a456-426614174000",
             "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"]
    return [
        *sha256,
        *sha1,
        f"sha256:{sha256[0]}",
        f"image: registry.acme.io/checkout@sha256:{sha256[1]}",
        f"commit {sha1[0]} (HEAD -> main, origin/main)",
        f"deployed {sha1[1][:12]} to prod-eu at 2024-06-11T10:15:00Z",
        f"https://github.com/acme/payments/commit/{sha1[2]}",
        *uuids,
        f"request_id={uuids[0]} status=502 upstream=checkout",
        "01HZX3V9KQ7M2N8P4R6T0W5Y1A",
        "case 01J0AB5C7D9EFGHJKMNPQRSTVW opened by primary:triage",
        f"trace_id={_r(_HEX, 32)} span_id={_r(_HEX, 16)}",
        f"traceparent: 00-{_r(_HEX, 32)}-{_r(_HEX, 16)}-01",
        base64.b64encode(b"the quick brown fox jumps over the lazy dog").decode(),
        base64.b64encode(b'{"a":1,"b":"two"}').decode(),
        base64.b64encode(b"checkout latency p99 above 2s for 15 minutes").decode(),
        "checkout-api-7d9f8b6c5d-x2v4q",
        "payments-worker-5c6b7d8f9-kq2lm CrashLoopBackOff (restarts: 14)",
        "pod/ingest-0 OOMKilled, node ip-10-0-3-17.eu-west-1.compute.internal",
        'sum(rate(http_requests_total{job="api",status=~"5.."}[5m])) by (route)',
        'histogram_quantile(0.99, sum(rate(http_request_duration_seconds_bucket{service="checkout"}[5m])) by (le))',
        'kube_secret_info{namespace="payments",secret="tls-cert"}',
        '{app="checkout"} |= "timeout" | json | line_format "{{.msg}}"',
        "2024-06-11T10:15:00.123456Z",
        "Tue, 11 Jun 2024 10:15:00 GMT",
        "https://grafana.acme.io/d/abc123/checkout?orgId=1&from=now-6h&to=now&var-env=prod",
        "http://prometheus.monitoring.svc:9090/graph?g0.expr=up&g0.tab=0",
        "https://acme.pagerduty.com/incidents/Q1W2E3R4T5Y6U7",
        "https://acme.atlassian.net/browse/OPS-1234",
        "git@github.com:acme/payments.git",
        "ssh://git@github.com:22/acme/payments.git",
        "arn:aws:iam::123456789012:role/checkout-prod",
        "max_tokens=4096 prompt_tokens: 1523 completion_tokens: 211",
        "password reset emails are delayed for oncall@acme.io",
        "the secret to a quick recovery was rolling back first",
        "Bearer authentication failed for the partner agent (see the 401 above)",
        "basic troubleshooting: restarted the pod, cleared the cache",
        "secretName: checkout-db-credentials",
        "token_type: Bearer",
        "AccountName=acmelogs;EndpointSuffix=core.windows.net",
        "export PGHOST=orders-db PGPORT=5432 PGUSER=readonly",
        "java.net.SocketTimeoutException: connect timed out at com.acme.Client.call(Client.java:142)",
        "10.0.3.17:8080 -> 172.16.4.2:5432 ESTABLISHED",
        "v1.27.3-eks-a5565ad",
        "ETag: \"33a64df551425fcc55e4d42a148795d9f25f89d4\"",
    ]


LOOKALIKES: list[str] = _lookalikes()

_ARMOUR = re.compile(r"^[A-Z]+$")


def significant_pieces(value: str) -> list[str]:
    """The parts of a secret whose presence in output means it leaked (alphanumeric runs of 8+ chars)."""
    pieces = [p for p in re.split(r"[^A-Za-z0-9]+", value) if len(p) >= 8 and not _ARMOUR.match(p)]
    return pieces


def leaked(value: str, output: str) -> bool:
    """True if `value`, or a significant piece of it, appears in `output`."""
    return value in output or any(p in output for p in significant_pieces(value))
