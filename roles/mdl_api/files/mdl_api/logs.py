"""JSON log lines with the plan's Pino fields, for Promtail's json stage.

Each line: ``level`` (the label: "debug", "info", "warn", "error", "fatal",
as Pino writes with formatters.level), ``time`` (epoch milliseconds), ``msg``,
``pid``, ``hostname``, ``service``, the request's ``reqId``, ``correlationId``
and ``userId`` when known, and ``trace_id``/``span_id`` (hex) of the current
span when tracing is on. Fields passed with ``extra={"fields": {...}}`` are
added after redaction: every key named in ``log.redact`` (case-insensitive,
at any depth) is replaced by "[REDACTED]".

The file handler is a ``WatchedFileHandler``: after logrotate moves the file,
the next line reopens the path.
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.handlers
import os
import socket
import traceback
from collections.abc import Callable
from typing import Any

REDACTED = "[REDACTED]"
LOGGER_NAME = "mdl_api"
_LEVELS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warn",
    logging.ERROR: "error",
    logging.CRITICAL: "fatal",
}
_CONFIG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

# The current request's fields (reqId, correlationId, userId): set by the app per request.
request_fields: contextvars.ContextVar[dict | None] = contextvars.ContextVar("mdl_request_fields", default=None)


def redact(value: Any, keys: frozenset[str]) -> Any:
    """``value`` with every dict entry whose key (lower-cased) is in ``keys`` replaced by [REDACTED]."""
    if isinstance(value, dict):
        return {k: (REDACTED if str(k).lower() in keys else redact(v, keys)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, keys) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str, redact_keys: list[str], span_ids: Callable[[], tuple[str, str] | None]):
        super().__init__()
        self._service = service
        self._keys = frozenset(k.lower() for k in redact_keys)
        self._span_ids = span_ids
        self._pid = os.getpid()
        self._hostname = socket.gethostname()

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "level": _LEVELS.get(record.levelno, record.levelname.lower()),
            "time": int(record.created * 1000),
            "pid": self._pid,
            "hostname": self._hostname,
            "service": self._service,
        }
        ctx = request_fields.get()
        if ctx:
            entry.update({k: v for k, v in ctx.items() if v is not None})
        ids = self._span_ids()
        if ids:
            entry["trace_id"], entry["span_id"] = ids
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(redact(fields, self._keys))
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            entry["err"] = {
                "type": type(exc).__name__,
                "message": str(exc),
                "stack": "".join(traceback.format_exception(exc)).rstrip(),
            }
        entry["msg"] = record.getMessage()
        return json.dumps(entry, default=str, separators=(",", ":"))


def setup(cfg: dict, span_ids: Callable[[], tuple[str, str] | None]) -> logging.Logger:
    """The service logger writing JSON lines to ``log.path`` (its directory created if missing)."""
    path = cfg["log"]["path"]
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    handler = logging.handlers.WatchedFileHandler(path, encoding="utf-8")
    handler.setFormatter(JsonFormatter(cfg["service_name"], cfg["log"]["redact"], span_ids))
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers[:] = [handler]
    logger.setLevel(_CONFIG_LEVELS[cfg["log"]["level"].lower()])
    logger.propagate = False
    # Library warnings (psycopg_pool, the OTLP exporter, waitress) go to the same file.
    for name in ("psycopg", "psycopg_pool", "opentelemetry", "waitress"):
        lib = logging.getLogger(name)
        lib.handlers[:] = [handler]
        lib.setLevel(logging.WARNING)
        lib.propagate = False
    return logger
