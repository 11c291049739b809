"""Test helpers for webhooks: a scriptable HTTP receiver on loopback, a worker harness,
the settings that point them at each other, and the reference verifier."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq_helpers import queued
from standardwebhooks.webhooks import Webhook

from processors.broker import make_broker, redis_client
from upload_service.core.events import build_event
from upload_service.core.jobs import WEBHOOK_QUEUE, DramatiqJobQueue
from upload_service.core.settings import Settings
from upload_service.core.status import iso
from upload_service.core.webhook_log import WebhookLog

# A database of its own: other engineers' workers never see these messages.
WEBHOOK_DB = 7

SECRET = "whsec_" + base64.b64encode(b"receiver-shared-secret-32-bytes!").decode()

# A scripted answer: ("status", code, headers) or ("hang",): wait until the test ends.
Action = tuple[Any, ...]


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 that records every POST and answers as scripted."""

    requests: list[Received] = field(default_factory=list)
    script: list[Action] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver.lock:
                    receiver.requests.append(
                        Received(
                            {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic()
                        )
                    )
                    action = receiver.script.pop(0) if receiver.script else ("status", 200, {})
                if action[0] == "hang":
                    receiver.released.wait(30)
                    return
                _, status, headers = action
                payload = b"" if 200 <= status < 300 else f"scripted {status}".encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.released.set()
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def ids(self) -> list[str]:
        return [r.headers["webhook-id"] for r in self.requests]

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Harness:
    """An in-process Dramatiq worker on the `webhooks` queue of a private Redis db."""

    settings: Settings
    broker: RedisBroker
    worker: dramatiq.Worker
    receiver: Receiver

    def use(self, **changes: Any) -> Settings:
        from processors import webhooks

        self.settings = self.settings.with_changes(**changes)
        webhooks.configure(self.settings)
        return self.settings

    @property
    def log(self) -> WebhookLog:
        return WebhookLog(self.settings.data_dir / "webhooks")

    def event(
        self, event_type: str = "upload.completed", upload_id: str = "up-1"
    ) -> dict[str, Any]:
        record = {
            "id": upload_id,
            "owner": "user-1",
            "state": "uploaded",
            "meta": {"course_id": 12},
            "created_at": iso(),
            "updated_at": iso(),
        }
        return build_event(event_type, record)

    def emit(self, event_type: str = "upload.completed", upload_id: str = "up-1") -> dict[str, Any]:
        """An event, sent as the server sends one."""
        event = self.event(event_type, upload_id)
        DramatiqJobQueue(self.broker).send("deliver_webhook", event)
        return event

    def drain(self, timeout: float = 30) -> None:
        """Returns once no delivery is queued, delayed or running (retries included)."""
        self.broker.join(WEBHOOK_QUEUE, timeout=int(timeout * 1000))
        self.worker.join()

    def wait_for_retry(self, retries: int) -> dict[str, Any]:
        """The delivery message waiting in the delay queue after its `retries`-th failure."""
        client = self.broker.client

        def waiting() -> dict[str, Any] | None:
            for message in queued(client, f"{WEBHOOK_QUEUE}.DQ"):
                if message["options"].get("retries") == retries:
                    return message
            return None

        found: dict[str, Any] = wait_until(waiting, what=f"retry {retries} to be scheduled")
        return found

    def attempts(self, upload_id: str = "up-1") -> list[dict[str, Any]]:
        return [a for e in self.log.history(upload_id) for a in e["attempts"]]


def start_harness(settings: Settings, receiver: Receiver) -> Iterator[Harness]:
    from processors import webhooks

    broker = make_broker(settings, redis_client(settings))
    actor = webhooks.deliver_webhook
    previous = actor.broker
    # The actor was declared on whatever broker was current at import time;
    # bind it to this test's broker so its retries land where the worker listens.
    broker.declare_actor(actor)
    actor.broker = broker
    webhooks.configure(settings)
    worker = dramatiq.Worker(broker, queues={WEBHOOK_QUEUE}, worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        yield Harness(settings, broker, worker, receiver)
    finally:
        worker.stop()
        actor.broker = previous
        webhooks.configure(None)
        broker.client.close()


def wait_until(check: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def webhook_settings(settings: Settings, redis_port: int, receiver: Receiver) -> Settings:
    """`settings` that deliver to `receiver`, queued on an emptied Redis database of their own."""
    url = f"redis://127.0.0.1:{redis_port}/{WEBHOOK_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return settings.with_changes(
        redis_url=url,
        webhook_url=receiver.url,
        webhook_secret=SECRET,
        webhook_schedule=(0.2, 0.2),
        webhook_timeout=5.0,
    )


def std_verify(request_headers: dict[str, str], body: bytes) -> dict:
    """The payload as `standardwebhooks` (an independent implementation) verifies it."""
    payload: dict = Webhook(SECRET).verify(body, request_headers)
    return payload
