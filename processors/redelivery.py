"""A dead worker's messages back in their queues within a minute, on the Redis broker.

Dramatiq's Redis broker requeues the unacked messages of a worker whose
heartbeat stopped (SIGKILL, OOM, a lost machine) only in a "maintenance pass"
of its dispatch script, run on a random `maintenance_chance` per million of
broker commands and only for the queue that command touched. At the default
chance a killed worker's job came back after about twenty minutes.

Here every worker process runs that pass itself, for each of its queues, every
WORKER_MAINTENANCE_INTERVAL seconds: a message of a worker silent for
WORKER_HEARTBEAT_TIMEOUT is back in its queue at most one interval later. The
pass is the broker's own script (`qsize`, a read, with maintenance forced on),
so it moves exactly what Dramatiq's random pass would. A live worker heartbeats
on every fetch, about once a second per idle queue, so the timeout can be far
below a minute without a busy worker looking dead.

The RabbitMQ broker needs none of this: RabbitMQ requeues a consumer's unacked
messages the moment its connection closes.
"""

from __future__ import annotations

import logging
import threading
import time

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware

from upload_service.core.logs import log_event

log = logging.getLogger("processors.redelivery")


def requeue_dead_workers_messages(broker: RedisBroker) -> None:
    """One maintenance pass over every queue this broker consumes (delay queues too)."""
    dispatch = broker.scripts["dispatch"]
    queues = sorted(broker.get_declared_queues() | broker.get_declared_delay_queues())
    for queue_name in queues:
        dispatch(
            keys=[broker.namespace],
            args=[
                "qsize",
                int(time.time() * 1000),
                queue_name,
                broker.broker_id,
                broker.heartbeat_timeout,
                broker.dead_message_ttl,
                1,  # do the maintenance pass
                broker._max_unpack_size(),
            ],
        )


class DeadWorkerRequeue(Middleware):
    """In each worker process, a daemon thread running the pass every `interval` seconds."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if not isinstance(broker, RedisBroker) or self.interval <= 0:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(broker,), name="dead-worker-requeue", daemon=True
        )
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self, broker: RedisBroker) -> None:
        while not self._stop.wait(self.interval):
            try:
                requeue_dead_workers_messages(broker)
            except Exception as exc:  # Redis away: the next pass tries again
                log_event(log, "worker.requeue_failed", logging.WARNING, error=repr(exc))
