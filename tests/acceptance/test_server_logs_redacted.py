"""`sharedctx serve`'s web server logs through the redacted root handlers, not uvicorn's own.

uvicorn's default logging config installs its own stderr handlers on `uvicorn.error`; a traceback or a
warning quoting a request would then reach the terminal without passing the redaction filter.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SECRET = "ghp_" + "Zq7RkV2mXw9LpT4sNb8YcJ3hFd6GaE1uQo5K"

SCRIPT = textwrap.dedent(
    f"""
    import logging, uvicorn
    from unittest import mock
    from sharedctx import SharedContext, cli, server

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cli.install_lazy_log_redaction()

    def fake_run(app, **kw):  # what serve() hands uvicorn, then a log line as uvicorn would write it
        uvicorn.Config(app, **kw).configure_logging()
        logging.getLogger("uvicorn.error").error("bad request with token {SECRET}")

    with mock.patch.object(uvicorn, "run", fake_run):
        with SharedContext.open(worker=False) as ctx:
            server.serve(ctx, host="127.0.0.1", port=0, say=lambda _: None)
    """
)


def test_a_secret_in_a_uvicorn_log_line_is_redacted(tmp_path: object) -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120,
                          cwd=str(tmp_path))  # fmt: skip
    out = proc.stdout + proc.stderr
    assert "bad request with token" in out, out[-2000:]
    assert SECRET not in out and SECRET[4:16] not in out
