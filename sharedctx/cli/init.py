"""`sharedctx init`: a commented starter config, every key at its default."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import CONFIG_NAME, err, escape, out

commands = typer.Typer(rich_markup_mode=None)

STARTER = """\
# sharedctx configuration. Every key is optional; these are the defaults.
# Secrets are never written here: use "env:VARIABLE" references.

# Where the journal lives: a SQLite file (default) or a PostgreSQL URL for several agents/workers.
store = ".sharedctx/sharedctx.db"
# store = "postgresql://sharedctx@db.internal:5432/sharedctx"

# Who this process writes as when an entry names no author.
[agent]
name = "operator"
kind = "human"          # primary | partner | human | system

# `sharedctx serve`, the alert intake (docs/intake.md). Listening beyond 127.0.0.1 needs credentials.
# [server]
# host = "0.0.0.0"
# port = 8765
# intake_token = "env:SHAREDCTX_INTAKE_TOKEN"   # Alertmanager: http_config.authorization.credentials_file
# investigation_lease = 15.0  # seconds; several `serve` replicas on one store: a survivor takes over after it
# drain_seconds = 10.0        # on SIGTERM, how long a step in flight may finish before another replica redoes it
# mcp_mode = "stream"     # /mcp: "stream" (SSE, progress) or "json" (stateless, one JSON answer per POST)

# Delivery to backends happens behind record(), in a background worker.
[worker]
enabled = true          # run the worker inside processes that open the context
max_attempts = 8        # then the delivery goes to dead letters (`sharedctx outbox list --dead`)
base_delay = 1.0        # seconds; doubles per attempt, with jitter; Retry-After wins when given
max_delay = 300.0
concurrency = 4         # deliveries in flight per backend
lease_seconds = 60.0    # how long a worker holds a claimed delivery (renewed while in flight);
                        # at least every backend's request `timeout`

# Where humans read cases. Add as many as you like; each gets every entry, in order.
[[backends]]
type = "local"          # Markdown files you can `cat`
path = ".sharedctx/cases"

# [[backends]]
# type = "github"
# repo = "acme/payments"
# token = "env:GITHUB_TOKEN"

# [[backends]]
# type = "redmine"                       # a case is an issue, entries are notes; polled (no webhooks in 5.x)
# url = "https://redmine.example.com"
# api_key = "env:REDMINE_API_KEY"        # its user needs: view/add issues, add notes, edit status
# project = "ops"                        # project identifier
# text_format = "textile"                # or "markdown": the server's Administration > Settings > Text formatting
# external_id_field = 1                  # optional: an issue custom field that holds the case id
# closed_status_id = 5                   # set on resolve (checked by `sharedctx backends check`)
# private_notes = false
# deciders = ["alice", "42"]             # Redmine logins or user ids whose /approve decides

# A thread per case in a Matrix (Element) room; people answer with /approve or a 👍 reaction.
# The bot must have joined the room; people with power level >= 50 (Moderator) may decide.
# [[backends]]
# type = "matrix"
# homeserver = "https://matrix.acme.org"
# room_id = "!incidents:acme.org"
# token = "env:MATRIX_BOT_TOKEN"
# decide_power_level = 50

# A thread per case in a Slack channel (use the channel ID); people answer with /approve or a 👍 reaction.
# Bot scopes: chat:write, channels:history (groups:history if private), reactions:read, users:read.
# Invite the bot to the channel. Events API (message.channels, reaction_added) -> POST /webhooks/slack
# on `sharedctx serve`, with [humans.webhooks.slack] secret = "env:SLACK_SIGNING_SECRET".
# [[backends]]
# type = "slack"
# channel = "C0123456789"
# token = "env:SLACK_BOT_TOKEN"
# deciders = ["U0123ABCD"]      # user IDs or user group IDs (S...) who may decide
# interactivity = false         # true: decision requests carry Approve/Reject buttons
# broadcast_resolution = false  # true: the resolution reply is also sent to the channel
"""


@commands.command()
def init(
    path: Annotated[Path, typer.Option(help="where to write the config")] = Path(CONFIG_NAME),
    force: Annotated[bool, typer.Option(help="overwrite an existing file")] = False,
) -> None:
    """Write a commented starter sharedctx.toml."""
    if path.exists() and not force:
        err.print(f"[red]error:[/] {escape(str(path))} exists; use --force to overwrite it", highlight=False)
        raise typer.Exit(4)
    path.write_text(STARTER, encoding="utf-8")
    out.print(f"wrote {path}")
