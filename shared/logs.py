"""JSON logs: one object per line, cheap enough to write one per handled message.

python-json-logger is used for the formatter (a maintained library, stdlib ``logging``
underneath), so third-party log records come out as JSON too.
"""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

_configured = False


def _drop_color_message(record: logging.LogRecord) -> bool:
    """uvicorn attaches an ANSI-coloured copy of each message; JSON logs do not want it."""
    record.__dict__.pop("color_message", None)
    return True


class _ServiceName(logging.Filter):
    """Tag a record with its service: the one its ``m1.<service>`` logger names, else the
    process's first (several services share a process in tests and benchmarks)."""

    def __init__(self, default: str) -> None:
        super().__init__()
        self.default = default

    def filter(self, record: logging.LogRecord) -> bool:
        parts = record.name.split(".", 2)
        record.service = parts[1] if parts[0] == "m1" and len(parts) > 1 else self.default
        return True


def setup_logging(service: str, level: str = "INFO") -> logging.Logger:
    """Route every log record to stdout as one JSON line tagged with the service name."""
    global _configured
    if not _configured:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(
            JsonFormatter(
                "%(levelname)s %(name)s %(message)s %(service)s",
                rename_fields={"levelname": "level", "name": "logger"},
                timestamp="ts",  # ISO 8601 in UTC
            )
        )
        handler.addFilter(_drop_color_message)
        handler.addFilter(_ServiceName(service))
        root = logging.getLogger()
        root.handlers[:] = [handler]
        root.setLevel(level)
        # aio-pika / aiormq are chatty at INFO during reconnects; keep their warnings.
        for noisy in ("aiormq", "aio_pika", "faststream.access"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        _configured = True
    return logging.getLogger(f"m1.{service}")
