"""RabbitMQ as the Dramatiq broker (BROKER_URL=amqp://...), for durable queues.

Dramatiq's own RabbitmqBroker, with one addition: BROKER_NAMESPACE puts a prefix
before every queue name on the RabbitMQ side (`<namespace>.media`, and its
`.DQ`/`.XQ` companions), so that several deployments, or test runs, can share
one RabbitMQ vhost. Actors and messages keep their plain queue names; only
what goes over the wire is prefixed, in the one channel and consumer seam.

RabbitMQ redelivers a consumer's unacknowledged messages the moment its
connection closes (a SIGKILLed worker's included): no heartbeat or maintenance
pass is needed, unlike the Redis broker (processors.redelivery).
"""

from __future__ import annotations

from typing import Any

from dramatiq.brokers.rabbitmq import RabbitmqBroker, _RabbitmqConsumer

_BASE_CHANNEL: Any = RabbitmqBroker.__dict__["channel"]  # the property, its getter and deleter


class _PrefixedChannel:
    """A pika channel whose queue names get the namespace prefix."""

    def __init__(self, channel: Any, broker: NamespacedRabbitmqBroker) -> None:
        self._channel = channel
        self._broker = broker

    def queue_declare(self, queue: str, **kwargs: Any) -> Any:
        arguments = dict(kwargs.pop("arguments", None) or {})
        if "x-dead-letter-routing-key" in arguments:
            arguments["x-dead-letter-routing-key"] = self._broker.wire_name(
                arguments["x-dead-letter-routing-key"]
            )
        return self._channel.queue_declare(
            queue=self._broker.wire_name(queue), arguments=arguments, **kwargs
        )

    def basic_publish(self, exchange: str, routing_key: str, **kwargs: Any) -> Any:
        return self._channel.basic_publish(
            exchange=exchange, routing_key=self._broker.wire_name(routing_key), **kwargs
        )

    def queue_purge(self, queue: str) -> Any:
        return self._channel.queue_purge(self._broker.wire_name(queue))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._channel, name)


class _PrefixedConsumer(_RabbitmqConsumer):
    def __init__(self, broker: NamespacedRabbitmqBroker, queue_name: str, *args: Any) -> None:
        super().__init__(broker, broker.wire_name(queue_name), *args)
        self.queue_name = queue_name  # the plain name: the broker re-declares by it


class NamespacedRabbitmqBroker(RabbitmqBroker):
    def __init__(self, *, namespace: str = "", **kwargs: Any) -> None:
        self.namespace = namespace
        super().__init__(**kwargs)

    def wire_name(self, queue_name: str) -> str:
        if not self.namespace or queue_name.startswith(self.namespace + "."):
            return queue_name
        return f"{self.namespace}.{queue_name}"

    @property
    def consumer_class(self) -> type[_RabbitmqConsumer]:
        return _PrefixedConsumer

    @property
    def channel(self) -> Any:
        return _PrefixedChannel(_BASE_CHANNEL.fget(self), self)

    @channel.deleter
    def channel(self) -> None:
        _BASE_CHANNEL.fdel(self)


def rabbitmq_broker(url: str, namespace: str = "") -> NamespacedRabbitmqBroker:
    # confirm_delivery: an enqueue returns once RabbitMQ has the message, so the
    # server's hand-off (core.handoff) knows whether it must try again.
    return NamespacedRabbitmqBroker(url=url, namespace=namespace, confirm_delivery=True)
