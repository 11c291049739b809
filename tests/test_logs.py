"""Logs are written by a thread of their own and still carry the request id and tracebacks;
a stopping server writes its last lines."""

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


class SlowStream(io.StringIO):
    """A log stream that cannot take a line until the test lets it (a full stderr pipe)."""

    def __init__(self) -> None:
        super().__init__()
        self.open = threading.Event()

    def write(self, text: str) -> int:
        self.open.wait(30)
        return super().write(text)


@pytest.fixture
def captured() -> Iterator[SlowStream]:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    stream = SlowStream()
    logs.configure("INFO", as_json=True, stream=stream)
    yield stream
    stream.open.set()
    logs.stop_writer()
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


def test_a_log_call_never_waits_for_a_stuck_stream(captured: SlowStream) -> None:
    # The stream takes nothing yet: a caller that wrote itself would hang here,
    # as a request on the event loop would behind a full stderr pipe.
    logged = threading.Event()

    def log_some() -> None:
        for i in range(100):
            logs.log_event(logging.getLogger("t"), "http.request", n=i)
        logged.set()

    caller = threading.Thread(target=log_some, daemon=True)
    caller.start()
    assert logged.wait(20), "a log call waited for the stream"
    assert captured.getvalue() == ""
    captured.open.set()
    logs.stop_writer()  # everything queued is written, in order
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    assert [entry["n"] for entry in lines] == list(range(100))


def test_records_keep_their_request_id_and_traceback(captured: SlowStream) -> None:
    captured.open.set()
    token = logs.request_id.set("req-42")
    try:
        logs.log_event(logging.getLogger("t"), "upload.created", upload_id="abc")
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("t").exception("failed %s", "badly")
    finally:
        logs.request_id.reset(token)
    logs.log_event(logging.getLogger("t"), "outside.a.request")
    logs.stop_writer()

    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    assert [entry["event"] for entry in lines] == [
        "upload.created",
        "failed badly",
        "outside.a.request",
    ]
    assert [entry.get("request_id") for entry in lines] == ["req-42", "req-42", None]
    assert lines[0]["upload_id"] == "abc"
    assert "ValueError: boom" in lines[1]["exc"]
    # After the writer stopped (at exit), a record is still written, at once.
    logs.log_event(logging.getLogger("t"), "after.stop")
    assert json.loads(captured.getvalue().splitlines()[-1])["event"] == "after.stop"


def test_a_record_that_cannot_be_formatted_loses_only_itself(captured: SlowStream) -> None:
    captured.open.set()
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
