"""Process-wide logging from settings: plain text or one JSON object per line.

``setup_logging`` is called once by every service's entry point (``memgrid
serve``); it replaces the root logger's handlers with one stderr handler.
``telemetry.log_format = "json"`` writes lines like::

    {"time": "2026-11-21T17:40:00.123456+00:00", "level": "INFO",
     "logger": "services.vault.outbox", "message": "...", "service": "vault",
     "trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331"}

``trace_id`` and ``span_id`` are those of the span current when the line was
logged (null outside any span), so a log line leads to its trace and back.
The JSON encoding is python-json-logger's (extra fields given to a log call
with ``extra=`` come out as keys too).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

from shared.settings import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
JSON_FIELDS = "%(levelname)s %(name)s %(message)s %(service)s %(trace_id)s %(span_id)s"

_current: dict[str, Any] = {}


class TraceContextFilter(logging.Filter):
    """Adds ``service``, ``trace_id`` and ``span_id`` (of the current span) to
    every record passing the handler it is attached to."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = trace.get_current_span().get_span_context()
        record.service = self.service
        record.trace_id = f"{ctx.trace_id:032x}" if ctx.is_valid else None
        record.span_id = f"{ctx.span_id:016x}" if ctx.is_valid else None
        return True


def make_handler(log_format: str, service: str, stream: Any = None) -> logging.Handler:
    """A stream handler (stderr by default) writing ``log_format`` lines."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(TraceContextFilter(service))
    if log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                JSON_FIELDS,
                rename_fields={"levelname": "level", "name": "logger"},
                timestamp="time",  # ISO 8601 in UTC
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    return handler


def setup_logging(settings: Settings, service: str) -> None:
    """Makes the root logger write ``settings.telemetry.log_format`` lines at
    ``settings.log_level`` to stderr, replacing any handlers it had."""
    _current.update(format=settings.telemetry.log_format, level=settings.log_level, service=service)
    reapply()


def reapply() -> None:
    """Installs the last ``setup_logging`` configuration again: for frameworks
    that configure the root logger themselves when they start (faust's worker)."""
    if not _current:
        return
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(make_handler(_current["format"], _current["service"]))
    root.setLevel(str(_current["level"]).upper())


def uvicorn_log_config(settings: Settings) -> dict[str, Any] | None:
    """``log_config`` for ``uvicorn.run``: None (uvicorn leaves logging alone, and
    its loggers propagate to the root handler) for JSON logs; uvicorn's own
    configuration for text logs, as before."""
    if settings.telemetry.log_format == "json":
        return None
    from uvicorn.config import LOGGING_CONFIG

    return LOGGING_CONFIG
