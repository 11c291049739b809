"""Logs are written by a thread of their own and still carry the request id and tracebacks."""

from __future__ import annotations

import io
import json
import logging
import signal
import threading
from collections.abc import Callable, Iterator

import pytest
from conftest import LiveServer

from upload_service.core import logs


class WritesRecorded(io.StringIO):
    """A log stream that remembers each write: its text and the thread that made it."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, str]] = []

    def write(self, text: str) -> int:
        self.writes.append((threading.current_thread().name, text))
        return super().write(text)


@pytest.fixture
def captured() -> Iterator[WritesRecorded]:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    stream = WritesRecorded()
    logs.configure("INFO", as_json=True, stream=stream)
    yield stream
    logs.stop_writer()
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


def test_records_are_written_off_the_calling_thread_with_their_request_id(
    captured: WritesRecorded,
) -> None:
    token = logs.request_id.set("req-42")
    try:
        logs.log_event(logging.getLogger("t"), "upload.created", upload_id="abc")
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("t").exception("failed %s", "badly")
    finally:
        logs.request_id.reset(token)
    logs.stop_writer()  # flushes the queue

    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    assert [entry["event"] for entry in lines] == ["upload.created", "failed badly"]
    assert all(entry["request_id"] == "req-42" for entry in lines)
    assert lines[0]["upload_id"] == "abc"
    assert "ValueError: boom" in lines[1]["exc"]
    writers = {thread for thread, _ in captured.writes}
    assert writers and threading.current_thread().name not in writers


def test_a_burst_of_records_is_written_at_once_and_stopping_cuts_the_wait_short(
    captured: WritesRecorded, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A linger far longer than the burst: all fifty records wait for one write,
    # which stop_writer makes at once instead of after the linger.
    monkeypatch.setattr(logs, "LINGER", 60.0)
    log = logging.getLogger("t")
    for i in range(50):
        logs.log_event(log, "http.request", n=i)
    assert captured.writes == []  # gathered, not written one by one
    logs.stop_writer()
    assert len(captured.writes) == 1
    assert [json.loads(line)["n"] for line in captured.getvalue().splitlines()] == list(range(50))
    logs.log_event(log, "after.stop")  # written at once by the caller from now on
    assert captured.writes[-1][0] == threading.current_thread().name


def test_a_record_that_cannot_be_formatted_loses_only_itself(captured: WritesRecorded) -> None:
    log = logging.getLogger("t")
    logs.log_event(log, "before")
    log.info("odd", extra={"fields": 42})  # the writer's formatter cannot merge these
    logs.log_event(log, "after")
    logs.stop_writer()
    events = [json.loads(line)["event"] for line in captured.getvalue().splitlines()]
    assert events[0] == "before" and events[-1] == "after"


def test_a_terminated_server_writes_its_last_lines_before_it_exits(
    server_factory: Callable[..., LiveServer],
) -> None:
    # One process: SIGTERM ends it without atexit, so the queued records must be
    # written by the signal handler, or the shutdown lines are lost.
    server = server_factory(UPLOAD_SERVER_WORKERS="1")
    assert server.process is not None and server.log_path is not None
    server.process.terminate()
    assert server.process.wait(15) == -signal.SIGTERM
    last_lines = server.log_path.read_text().splitlines()[-3:]
    expected = ["server.stopped", "Application shutdown complete.", "Finished server process"]
    assert [e in line for e, line in zip(expected, last_lines, strict=True)] == [True] * 3, (
        last_lines
    )


def test_each_worker_process_shuts_down_gracefully_and_logs_it(
    server_factory: Callable[..., LiveServer],
) -> None:
    # Several processes: the parent stops its workers with SIGTERM, and each must
    # shut down as uvicorn does (requests drained, the app's shutdown run), with
    # its lines written, rather than die on the spot.
    server = server_factory(UPLOAD_SERVER_WORKERS="2")
    assert server.process is not None and server.log_path is not None
    server.process.terminate()
    assert server.process.wait(30) == 0
    # Text lines (LOG_JSON=false): "12:00:00 INFO    <event> <fields>".
    events = [line.split(None, 2)[2] for line in server.log_path.read_text().splitlines()]
    started = [e for e in events if e.startswith("Started server process")]
    assert len(started) == 2
    for line in started:
        assert line.replace("Started", "Finished") in events, events
    assert sum(e.startswith("server.started") for e in events) == 2
    assert sum(e.startswith("server.stopped") for e in events) == 2
    assert events[-1].startswith("Stopping parent process")
