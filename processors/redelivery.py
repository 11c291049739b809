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

import time

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from .periodic import PeriodicTask


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


class DeadWorkerRequeue(PeriodicTask):
    """In each worker process, the pass above every `every` seconds."""

    name = "dead-worker-requeue"

    def runs_on(self, broker: dramatiq.Broker) -> bool:
        return isinstance(broker, RedisBroker) and self.every > 0

    def tick(self, broker: dramatiq.Broker) -> None:
        assert isinstance(broker, RedisBroker)
        requeue_dead_workers_messages(broker)
