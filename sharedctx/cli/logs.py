"""Log redaction for the whole CLI process, with the redactor built when the first record arrives."""

from __future__ import annotations

import logging
import threading


class _RedactOnFirstRecord(logging.Filter):
    """Log redaction that builds its redactor when the first record arrives, not at start-up.

    The redactor compiles detect-secrets' patterns (importing `requests` on the way): ~0.12 s that `--help`
    and `init`, which log nothing, must not pay (issue 13). Every record still passes the real
    `RedactingFilter` before any handler writes it, so the promise is unchanged.
    """

    def __init__(self) -> None:
        super().__init__()
        self._real: logging.Filter | None = None
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if self._real is None:
            with self._lock:
                if self._real is None:
                    from ..redact import RedactingFilter

                    self._real = RedactingFilter()
        return bool(self._real.filter(record))


def install_lazy_log_redaction() -> None:
    """What `redact.install_log_redaction()` does (a filter on every root handler and on `lastResort`),
    with the redactor built on first use."""
    flt = _RedactOnFirstRecord()
    handlers = [*logging.getLogger().handlers, *([logging.lastResort] if logging.lastResort else [])]
    for h in handlers:
        h.addFilter(flt)
