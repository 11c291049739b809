"""The webhook attempts log: every event sent for an upload and every attempt to send it.

One JSONL file per upload, `<data>/webhooks/<upload id>.jsonl`, written by the
workers and read by the status API. Two kinds of line:

    {"kind": "event", "event": {"id", "type", "timestamp", "data"}}
    {"kind": "attempt", "event_id", "type", "attempt", "status", "duration_ms",
     "error", "at", "outcome", "retry_in"}

This is the file form of the state's DeliveryLog (`upload_service.core.state`);
PostgreSQL keeps the same lines as rows. The event line keeps the body so
that `POST .../events/{id}/resend` can send the very same event again. Lines
are appended with one `write(2)` on an `O_APPEND` descriptor and fsynced:
concurrent workers never interleave a line, and an attempt that was logged
survives a crash. A torn last line (power loss mid-write)
is skipped on read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from upload_service.core.ids import UnsafeId, safe_child
from upload_service.core.state.base import Attempt, Event, assemble_history

# What an attempt ended in: the receiver took it, a retry is scheduled,
# the receiver answered 410 (stop), or the retry schedule ran out.
OUTCOMES = ("delivered", "retrying", "stopped", "gave_up")


class WebhookLog:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path(self, upload_id: str) -> Path:
        try:
            return safe_child(self.directory, upload_id, ".jsonl")
        except UnsafeId:
            raise KeyError(upload_id) from None

    def _append(self, upload_id: str, line: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
        fd = os.open(self.path(upload_id), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def record_event(self, event: Event) -> None:
        """Keeps the event's body once, however often it is attempted."""
        upload_id = event["data"]["id"]
        if self.find_event(upload_id, event["id"]) is None:
            self._append(upload_id, {"kind": "event", "event": event})

    def record_attempt(self, upload_id: str, attempt: Attempt) -> None:
        self._append(upload_id, {"kind": "attempt", **attempt})

    def _lines(self, upload_id: str) -> list[dict[str, Any]]:
        try:
            raw = self.path(upload_id).read_bytes()
        except (FileNotFoundError, KeyError):
            return []
        lines = []
        for text in raw.splitlines():
            try:
                lines.append(json.loads(text))
            except ValueError:
                continue  # a torn line from a crash mid-append
        return lines

    def exists(self, upload_id: str) -> bool:
        try:
            return self.path(upload_id).exists()
        except KeyError:
            return False

    def find_event(self, upload_id: str, event_id: str) -> Event | None:
        for line in self._lines(upload_id):
            if line.get("kind") == "event" and line["event"]["id"] == event_id:
                event: Event = line["event"]
                return event
        return None

    def history(self, upload_id: str) -> list[dict[str, Any]]:
        """Events in the order they were first attempted, each with its attempts."""
        return assemble_history(self._lines(upload_id))

    def delete(self, upload_id: str) -> None:
        try:
            self.path(upload_id).unlink(missing_ok=True)
        except KeyError:
            return
