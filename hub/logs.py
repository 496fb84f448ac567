"""Logging, configured once per process: one JSON object per line in production, plain lines in the demo.

Log records carry ids, counts and states only (the callers' habit, see
:func:`hub.errors.log_failure`); nothing here adds a request body, a query string or
a phone number. The JSON form has fixed keys so a log shipper needs no parsing rules.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
from collections.abc import Mapping, MutableMapping

_HANDLER_NAME = "refhub"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "at": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            # Frames and type only: an exception's text can carry the data it choked on.
            entry["error"] = record.exc_info[0].__name__ if record.exc_info[0] else None
        return json.dumps(entry, ensure_ascii=False, separators=(",", ":"))


def configure_logging(settings, stream=None) -> None:
    """Give the ``hub`` loggers one handler (once per process, whoever calls first)."""
    redact_request_logs()
    root = logging.getLogger("hub")
    if any(h.get_name() == _HANDLER_NAME for h in root.handlers):
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    if settings.mode == "production":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False


# -- secrets in URLs ---------------------------------------------------------------------------------
# A one-tap link (/a/<token>) and an invitation (/invite/<token>) are capabilities: whoever reads
# the URL can act. Request logs (the development server's, gunicorn's access log) and sent texts
# kept in the outbox carry them with the token replaced.

_SECRET_PATH = re.compile(r"(/(?:a|invite)/)[A-Za-z0-9_\-]{8,}")
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """``text`` with the token of every one-tap or invitation path replaced by ``[redacted]``."""
    return _SECRET_PATH.sub(lambda m: m.group(1) + REDACTED, text)


class RedactingFilter(logging.Filter):
    """Rewrites a record's message and arguments through :func:`redact` (request lines, referers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        args = record.args
        if isinstance(args, MutableMapping):  # gunicorn's access log: its dict of atoms, changed in place
            for key, value in list(args.items()):
                if isinstance(value, str):
                    args[key] = redact(value)
        elif isinstance(args, Mapping):
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in args.items()}
        elif isinstance(args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in args)
        return True


REQUEST_LOGGERS = ("werkzeug", "gunicorn.access", "gunicorn.error")


def redact_request_logs() -> None:
    """Put :class:`RedactingFilter` on the request loggers of this process (once)."""
    for name in REQUEST_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
