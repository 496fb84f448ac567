"""Logging, configured once per process: one JSON object per line in production, plain lines in the demo.

Log records carry ids, counts and states only (the callers' habit, see
:func:`hub.errors.log_failure`); nothing here adds a request body, a query string or
a phone number. The JSON form has fixed keys so a log shipper needs no parsing rules.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import sys

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
