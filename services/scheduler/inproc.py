"""The usage processor on the EventBus port (embedded mode; no faust, no Kafka).

The bus hands events over one at a time and retries a handler that raises, then
dead-letters the event; a poison event therefore raises here, and the bus does
the rest. State is whatever mapping the caller passes (a dict in embedded mode).
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

from services.scheduler.usage import TRACKED_TOPICS, Delivery, UsageProcessor, UsageStats
from shared.ports.bus import EventBus, Subscription
from shared.schemas.events import EventEnvelope


class BusUsageConsumer:
    """Feeds ``processor`` from ``bus`` in consumer group ``group``."""

    def __init__(
        self,
        bus: EventBus,
        processor: UsageProcessor,
        *,
        group: str = "memgrid-scheduler",
        stats: UsageStats | None = None,
    ) -> None:
        self.processor = processor
        self.stats = stats or UsageStats()
        self._bus = bus
        self._group = group
        self._sub: Subscription | None = None

    def start(self) -> None:
        if self._sub is None:
            self._sub = self._bus.subscribe(self._group, TRACKED_TOPICS, self._handle)

    def _handle(self, event: EventEnvelope) -> None:
        result = self.processor.process([Delivery(event)])
        if result.rejected:
            raise result.rejected[0][1]  # the bus retries, then dead-letters it
        self.stats.record(result, 1, time.time())

    def close(self) -> None:
        if self._sub is not None:
            self._sub.close()
            self._sub = None


def start_embedded(
    bus: EventBus, state: MutableMapping[str, Any] | None = None, **options: Any
) -> BusUsageConsumer:
    """A running consumer over a fresh processor (``options`` go to UsageProcessor)."""
    consumer = BusUsageConsumer(bus, UsageProcessor({} if state is None else state, **options))
    consumer.start()
    return consumer
