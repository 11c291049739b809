"""Structured logs: one JSON object a line, with stable event names and the request id.

Records are formatted and written by a thread of their own, the standard
library's QueueHandler and QueueListener: on the event loop, a write to a slow
stderr pipe would stall every request, and formatting would take the loop's time.
One write per record, on both paths (UPLOAD_FAST_PATH): gathering records into
one write per batch saves the writer thread a wake-up per record, too little to
show in the bench's per-upload figures.
"""

from __future__ import annotations

import atexit
import contextvars
import json
import logging
import logging.handlers
import queue
import signal
import sys
import threading
from typing import Any, TextIO

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        rid = _request_id(record)
        if rid:
            entry["request_id"] = rid
        entry.update(getattr(record, "fields", {}))
        exc = _exception_text(self, record)
        if exc:
            entry["exc"] = exc
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in getattr(record, "fields", {}).items())
        rid = _request_id(record)
        prefix = (
            f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} {record.getMessage()}"
        )
        text = " ".join(p for p in (prefix, f"request_id={rid}" if rid else "", fields) if p)
        exc = _exception_text(self, record)
        if exc:
            text += "\n" + exc
        return text


def _request_id(record: logging.LogRecord) -> str | None:
    # Stamped when the record was queued: the writer thread has no request context.
    stamped: str | None = getattr(record, "request_id", None)
    return stamped or request_id.get()


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    if record.exc_text:
        return record.exc_text
    return formatter.formatException(record.exc_info) if record.exc_info else None


class _Enqueue(logging.handlers.QueueHandler):
    """Hands records to the writer thread, with what only the caller's thread knows."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # Not QueueHandler's default, which formats the traceback into the message
        # and copies the record: the formatters keep the traceback apart, and this
        # is the root's only handler, so nothing else sees the record changed.
        record.msg, record.args = record.getMessage(), None
        if record.exc_info:  # tracebacks do not cross threads well: keep their text
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        record.request_id = request_id.get()
        return record


_listener: logging.handlers.QueueListener | None = None


@atexit.register
def stop_writer() -> None:
    """Write what is queued and stop the writer thread (also run at exit); records
    logged after this are written at once, by the caller."""
    global _listener
    if _listener is not None:
        _listener.stop()
        logging.getLogger().handlers[:] = list(_listener.handlers)
        _listener = None


def configured() -> bool:
    return _listener is not None


def configure(level: str = "INFO", as_json: bool = True, stream: TextIO | None = None) -> None:
    global _listener
    handler: logging.StreamHandler[TextIO] = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else TextFormatter())
    stop_writer()
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    _listener = logging.handlers.QueueListener(records, handler)
    _listener.start()
    # Fields no formatter here prints, looked up for every record otherwise.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [_Enqueue(records)]
    root.setLevel(level)


def flush_on_sigterm() -> None:
    """Let a SIGTERM write what is queued before it kills (see _flush_then_die).

    Only where SIGTERM's handler is ours to set: in a worker process of `serve`,
    uvicorn's own handler shuts the server down gracefully, and the app's
    lifespan writes the queue out at the end (stop_writer)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _flush_then_die)


def _flush_then_die(signum: int, frame: object) -> None:
    """SIGTERM kills without running atexit: write the queued records first.

    uvicorn captures SIGTERM while serving and raises it again once shut down,
    into the handler that was there before: this one, so its last lines land.
    """
    stop_writer()
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    logger.log(level, event, extra={"fields": fields})
