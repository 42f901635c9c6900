"""Log redaction: a filter on the root logger's handlers, so no log line carries a credential."""

from __future__ import annotations

import logging

from .redactor import Redactor, default_redactor


class RedactingFilter(logging.Filter):
    """Redacts every record passing through a handler: message, args, exception and stack text.

    The message is formatted (`msg % args`) *before* redacting and args are cleared, because a secret is
    often split between the two (`log.info("password=%s", pw)`): neither half alone shows it is one.
    """

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor or default_redactor()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_sharedctx_redacted", False):
            return True
        r = self.redactor
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep what we can, redacted
            message = f"{record.msg!s} {record.args!r}"
        record.msg = r.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = r.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = r.redact(record.stack_info)
        record._sharedctx_redacted = True
        return True


def install_log_redaction(redactor: Redactor | None = None, logger: logging.Logger | None = None) -> RedactingFilter:
    """Attach one `RedactingFilter` to every handler of the root logger (and `logging.lastResort`).

    Handler filters, not logger filters: records from child loggers propagate to the root's handlers
    without passing the root logger's own filters. Calling it again adds nothing twice; handlers added
    later need another call.
    """
    target = logger or logging.getLogger()
    flt = next(
        (f for h in target.handlers for f in h.filters if isinstance(f, RedactingFilter)),
        None,
    ) or RedactingFilter(redactor)
    handlers = list(target.handlers)
    if logging.lastResort is not None and logger is None:
        handlers.append(logging.lastResort)
    for h in handlers:
        if not any(isinstance(f, RedactingFilter) for f in h.filters):
            h.addFilter(flt)
    return flt


_default: Redactor | None = None
