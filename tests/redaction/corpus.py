"""An independent corpus of realistic secrets, and the encodings they travel in.

Written from the vendors' published token formats (prefixes, lengths, alphabets), not from the
patterns in `sharedctx/redact/`, so it tests the detectors rather than mirroring them. Every call to
`make_secrets(rng)` draws fresh random bodies: each placement in a test gets its own values, so a
leak found in a sink names the one field and encoding it came from.

A `Secret` carries the text a person or a log would actually contain (`text`, e.g. a `.env` line, a
connection string, a whole service-account JSON) and the `bodies` that must never come out anywhere:
the random parts that make it a credential (the password, not the user name; the key material, not
the `-----BEGIN` armour).
"""

from __future__ import annotations

import base64
import json
import random
import string
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

ALNUM = string.ascii_letters + string.digits
LOWER = string.ascii_lowercase + string.digits
HEX = "0123456789abcdef"
B32 = string.ascii_uppercase + "234567"
WINDOW = 12  # a leak is any 12 consecutive characters of a body (random: never there by chance)


@dataclass(frozen=True)
class Secret:
    type: str
    text: str  # as it appears in the wild, with its context
    bodies: tuple[str, ...]  # the parts that must never leave


def _rand(rng: random.Random, alphabet: str, n: int) -> str:
    while True:
        s = "".join(rng.choice(alphabet) for _ in range(n))
        # like real tokens: mixed classes where the alphabet has them (and never all letters)
        if any(c.isdigit() for c in s) or not any(c.isdigit() for c in alphabet):
            return s


def _b64_lines(rng: random.Random, nbytes: int) -> list[str]:
    raw = base64.b64encode(rng.randbytes(nbytes)).decode()
    return [raw[i : i + 64] for i in range(0, len(raw), 64)]


def _pem(label: str, lines: list[str], headers: str = "") -> str:
    return f"-----BEGIN {label}-----\n{headers}" + "\n".join(lines) + f"\n-----END {label}-----\n"


def _pem_bodies(lines: list[str]) -> tuple[str, ...]:
    return tuple(line for line in lines if len(line) >= 2 * WINDOW)


def _password(rng: random.Random) -> str:
    return _rand(rng, ALNUM, 24)


def make_secrets(rng: random.Random) -> list[Secret]:
    """One fresh secret of every type (24 types)."""
    r = rng
    out: list[Secret] = []

    def add(kind: str, text: str, *bodies: str) -> None:
        out.append(Secret(kind, text, bodies))

    key_id = _rand(r, B32, 16)
    add("aws-access-key-id", f"aws_access_key_id = AKIA{key_id}", key_id)
    aws_secret = _rand(r, ALNUM + "+/", 40)
    add("aws-secret-access-key", f"aws_secret_access_key = {aws_secret}", aws_secret)
    classic = _rand(r, ALNUM, 36)
    add("github-pat-classic", f"git clone https://ghp_{classic}@github.com/acme/payments.git", classic)
    fine = f"{_rand(r, ALNUM, 22)}_{_rand(r, ALNUM, 59)}"
    add("github-pat-fine-grained", f"GH_TOKEN=github_pat_{fine}", fine)
    bot = f"{r.randint(10**10, 10**11)}-{r.randint(10**10, 10**11)}-{_rand(r, ALNUM, 24)}"
    add("slack-bot-token", f"slack client init failed for token xoxb-{bot}", bot.rsplit("-", 1)[1])
    hook = f"T{_rand(r, B32, 8)}/B{_rand(r, B32, 10)}/{_rand(r, ALNUM, 24)}"
    add("slack-webhook", f"posting to https://hooks.slack.com/services/{hook}", hook.rsplit("/", 1)[1])
    stripe = _rand(r, ALNUM, 99)
    add("stripe-secret-key", f"Stripe.api_key = 'sk_live_{stripe}'", stripe)
    sa_lines = _b64_lines(r, 1190)
    sa_key = _pem("PRIVATE KEY", sa_lines)
    sa = {
        "type": "service_account", "project_id": "acme-prod-4411", "private_key_id": _rand(r, HEX, 40),
        "private_key": sa_key, "client_email": "deployer@acme-prod-4411.iam.gserviceaccount.com",
        "client_id": str(r.randint(10**20, 10**21)), "token_uri": "https://oauth2.googleapis.com/token",
    }  # fmt: skip
    add("gcp-service-account", json.dumps(sa, indent=2), *_pem_bodies(sa_lines))
    rsa = _b64_lines(r, 1190)
    add("rsa-private-key", _pem("RSA PRIVATE KEY", rsa), *_pem_bodies(rsa))
    ec = _b64_lines(r, 121)
    add("ec-private-key", _pem("EC PRIVATE KEY", ec), *_pem_bodies(ec))
    ssh = ["b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW", *_b64_lines(r, 300)]
    add("openssh-private-key", _pem("OPENSSH PRIVATE KEY", ssh), *_pem_bodies(ssh[1:]))
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=").decode()
    claims = {"sub": _rand(r, LOWER, 12), "iat": r.randint(1_600_000_000, 1_800_000_000), "scope": "incidents:write",
              "jti": _rand(r, ALNUM, 20)}  # fmt: skip
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    sig = base64.urlsafe_b64encode(r.randbytes(32)).rstrip(b"=").decode()
    add("jwt", f"session={header}.{payload}.{sig}; Path=/", sig, payload[-2 * WINDOW :])
    pw = _password(r)
    add("postgres-url", f"DATABASE_URL=postgresql://orders_app:{pw}@db-primary.internal:5432/orders", pw)
    pw = _password(r)
    add("basic-auth-url", f"pulling from https://deploy-bot:{pw}@registry.acme.example/v2/checkout", pw)
    az = base64.b64encode(r.randbytes(64)).decode()
    add("azure-connection-string", "DefaultEndpointsProtocol=https;AccountName=acmelogs;"
        f"AccountKey={az};EndpointSuffix=core.windows.net", az.rstrip("="))  # fmt: skip
    npm = _rand(r, ALNUM, 36)
    add("npm-token", f"//registry.npmjs.org/:_authToken=npm_{npm}", npm)
    twilio = _rand(r, HEX, 32)
    add("twilio-auth-token", f"export TWILIO_AUTH_TOKEN={twilio}", twilio)
    sg = f"{_rand(r, ALNUM + '_-', 22)}.{_rand(r, ALNUM + '_-', 43)}"
    add("sendgrid-key", f"SENDGRID_API_KEY=SG.{sg}", sg.split(".")[1])
    pw = _password(r)
    add("password-json", json.dumps({"database": {"host": "db1", "user": "app", "password": pw}}), pw)
    pw = _password(r)
    add("password-yaml", f"database:\n  host: db1\n  password: {pw}\n  pool: 10\n", pw)
    pw = _password(r)
    add("password-env", f"REDIS_PASSWORD={pw}", pw)
    bearer = _rand(r, ALNUM + "-._~", 48)
    add("bearer-header", f"curl -H 'Authorization: Bearer {bearer}' https://api.acme.example/v1/orders",
        bearer)
    gkey = _rand(r, ALNUM + "_-", 35)
    add("google-api-key", f"maps call failed: key=AIza{gkey}", gkey)
    dd = _rand(r, HEX, 32)
    add("datadog-api-key", f"DD_API_KEY: {dd}", dd)
    return out


TYPES = [s.type for s in make_secrets(random.Random(0))]


# ---------------------------------------------------------------------------------------- encodings
def _raw(text: str, body: str) -> str:
    return text


def _json_escaped(text: str, body: str) -> str:
    """A log line whose message is the text: `{"level":"error","msg":"…\\"password\\"…"}`."""
    return json.dumps({"level": "error", "msg": text})


def _double_escaped(text: str, body: str) -> str:
    """That log line shipped inside another JSON document (every backslash doubled)."""
    return json.dumps({"stream": "stderr", "log": _json_escaped(text, body)})


def _url_encoded(text: str, body: str) -> str:
    return "https://status.acme.example/report?detail=" + quote(text, safe="")


def _inside_pem(text: str, body: str) -> str:
    """The text as the body of a PEM-armoured block, wrapped at 64 columns like base64 is."""
    flat = text.replace("\n", " ")
    lines = [flat[i : i + 64] for i in range(0, len(flat), 64)]
    return "-----BEGIN ENCRYPTED MESSAGE-----\n" + "\n".join(lines) + "\n-----END ENCRYPTED MESSAGE-----"


def _split(text: str, body: str) -> str:
    """The body broken in two by a line break (a terminal or a mail client wrapped it)."""
    half = len(body) // 2
    return text.replace(body, body[:half] + "\n" + body[half:], 1)


ENCODINGS: dict[str, Callable[[str, str], str]] = {
    "raw": _raw,
    "json-escaped": _json_escaped,
    "double-escaped": _double_escaped,
    "url-encoded": _url_encoded,
    "inside-pem": _inside_pem,
    "split-lines": _split,
}


def encode(secret: Secret, encoding: str) -> str:
    return ENCODINGS[encoding](secret.text, secret.bodies[0])


def windows(body: str) -> set[str]:
    """Every WINDOW-long piece of `body`, as it is and percent-encoded (base64 has `/` and `+`)."""
    pieces = {body[i : i + WINDOW] for i in range(0, max(1, len(body) - WINDOW + 1))}
    return pieces | {quote(p, safe="") for p in pieces if not p.isalnum()}


def leaks(secret: Secret, haystack: str) -> list[str]:
    """The pieces of `secret`'s bodies found in `haystack` (empty: no leak)."""
    return sorted(p for body in secret.bodies for p in windows(body) if p in haystack)
