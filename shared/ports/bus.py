"""EventBus: publish facts and commands; consume them in consumer groups.

Delivery contract (every adapter):

* ``publish`` returns once the event is durably accepted by the bus (Kafka:
  acks=all from an idempotent producer). It raises shared.errors.Unavailable
  otherwise, so the caller (the vault's outbox relay) retries later.
* Delivery is at least once, in order per key (the cube id). A consumer group
  sees each event at least once; handlers must be idempotent (dedupe on
  ``event.id`` or check versions).
* A handler's offset is committed only after it returns: its effect must be
  durable before it returns.
* A handler that raises is retried up to ``max_delivery_attempts``; then the
  event goes to the dead-letter topic with the error attached, and the group
  moves on. Nothing is silently dropped.
* An event arrives as published except ``traceparent``: with tracing on, the
  adapter stamps its producer span's context there (same trace), so consumer
  spans hang under the publish (docs/observability.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from shared.schemas.events import EventEnvelope

Handler = Callable[[EventEnvelope], None]


@runtime_checkable
class Subscription(Protocol):
    def close(self) -> None: ...


@runtime_checkable
class EventBus(Protocol):
    def publish(self, topic: str, event: EventEnvelope, key: str | None = None) -> None: ...
    def subscribe(self, group: str, topics: Sequence[str], handler: Handler) -> Subscription: ...
    def flush(self, timeout_s: float = 10.0) -> None:
        """Blocks until events published so far are handled by running subscribers
        (in process) or acknowledged by the broker (Kafka)."""
        ...

    def close(self) -> None: ...
