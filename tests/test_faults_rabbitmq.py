"""RabbitMQ as the broker (BROKER_URL=amqp://...): the finished upload's job goes
through the RabbitMQ running here, under a queue namespace of the test's own."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator

import dramatiq
import httpx
import pytest
from dramatiq import Worker

from upload_service.core.rabbitmq import NamespacedRabbitmqBroker, rabbitmq_broker
from upload_service.core.settings import Settings
from upload_service.http.app import create_app
from upload_service.http.services import Services

pytestmark = pytest.mark.anyio

RABBITMQ = "amqp://guest:guest@127.0.0.1:5672"


@pytest.fixture
def namespace() -> str:
    return f"test-{secrets.token_hex(4)}"


@pytest.fixture
def worker_broker(namespace: str) -> Iterator[NamespacedRabbitmqBroker]:
    broker = rabbitmq_broker(RABBITMQ, namespace)
    yield broker
    for queue in list(broker.queues):
        for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):
            broker.channel.queue_delete(broker.wire_name(name))
    broker.close()


async def test_a_finished_uploads_job_is_processed_through_rabbitmq(
    settings: Settings,
    namespace: str,
    worker_broker: NamespacedRabbitmqBroker,
    make_token: Callable[..., str],
) -> None:
    processed: list[str] = []
    done = threading.Event()

    @dramatiq.actor(actor_name="process_upload", queue_name="media", broker=worker_broker)
    def process_upload(upload_id: str) -> None:
        processed.append(upload_id)
        done.set()

    worker_broker.declare_queue("media", ensure=True)
    on_rabbitmq = Settings(
        **{**settings.__dict__, "broker_url": RABBITMQ, "broker_namespace": namespace}
    )
    token = make_token()
    headers = {"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {token}"}
    # No job queue given: the service makes its own, from BROKER_URL.
    services = Services.from_settings(on_rabbitmq)
    app = create_app(on_rabbitmq, services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        created = await c.post("/files/", headers={**headers, "Upload-Length": "5"})
        upload_id = created.headers["location"].rsplit("/", 1)[-1]
        sent = await c.patch(
            f"/files/{upload_id}",
            content=b"hello",
            headers={
                **headers,
                "Upload-Offset": "0",
                "Content-Type": "application/offset+octet-stream",
            },
        )
        assert sent.status_code == 204
    await services.aclose()
    # The message sits in the namespaced queue, not in a bare `media` one.
    assert worker_broker.get_queue_message_counts("media")[0] == 1
    worker = Worker(worker_broker, worker_threads=1)
    worker.start()
    try:
        assert done.wait(30)
    finally:
        worker.stop()
    assert processed == [upload_id]
