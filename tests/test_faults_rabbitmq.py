"""RabbitMQ as the broker (BROKER_URL=amqp://...): the finished upload's job goes
through the RabbitMQ running here, under a queue namespace of the test's own, to
a stand-in actor in this process, and to the real `upload-service worker`."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import dramatiq
import httpx
import pytest
import redis
from conftest import API_KEY, TOKEN_SECRET, LiveServer, RedisServer, mint_token
from dramatiq import Worker
from live_helpers import wait_until
from media_helpers import make_video
from pipeline_helpers import WorkerProcess, upload_file, wait_for_state

from upload_service.core.jobs import ACTOR_QUEUES
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
    # Every queue the service may have declared under the namespace, this broker or not.
    for queue in set(broker.queues) | set(ACTOR_QUEUES.values()):
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


@pytest.mark.e2e
def test_the_real_worker_processes_an_upload_to_ready_through_rabbitmq(
    tmp_path: Path,
    redis_server: RedisServer,
    namespace: str,
    worker_broker: NamespacedRabbitmqBroker,
) -> None:
    """`upload-service serve` and `worker` with the same BROKER_URL: the job goes
    through RabbitMQ (Redis keeps only the locks, the cache and the sweep's schedule)."""
    settings = Settings(
        data_dir=tmp_path / "data",
        redis_url=redis_server.url.rsplit("/", 1)[0] + "/13",
        token_secret=TOKEN_SECRET,
        api_key=API_KEY,
        log_json=False,
        transcribe=False,
    )
    broker_env = {"BROKER_URL": RABBITMQ + "/", "BROKER_NAMESPACE": namespace}
    clip = make_video(tmp_path / "clip.mp4", seconds=2, size="320x180")
    server = LiveServer(settings, extra_env={"UPLOAD_SERVER_WORKERS": "1", **broker_env})
    server.start()
    worker = WorkerProcess(settings, broker_env, name="rabbitmq-worker").start()
    try:
        upload_id = upload_file(server.url, mint_token(TOKEN_SECRET, "user-1"), clip)
        record = wait_for_state(server.url, API_KEY, upload_id, timeout=120)
        assert record["state"] == "ready", record
        assert [r["height"] for r in record["outputs"]["renditions"]] == [180]
        # The worker logs `ready` just after writing it: a poll can see it first.
        wait_until(
            lambda: f"pipeline.ready upload_id={upload_id}" in worker.log(),
            "the worker's pipeline.ready log line",
        )
        # Through RabbitMQ indeed: the namespaced queue is there, and Redis saw no job.
        assert worker_broker.get_queue_message_counts("media")[0] == 0
        direct = redis.Redis.from_url(settings.redis_url)
        assert not direct.keys("dramatiq:*")
        direct.close()
    finally:
        worker.stop()
        server.stop()
