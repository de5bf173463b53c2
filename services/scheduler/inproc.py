"""The scheduler on the EventBus port (embedded mode; no faust, no Kafka).

The bus hands events over one at a time and retries a handler that raises, then
dead-letters the event; a poison event therefore raises here, and the bus does
the rest. State is whatever mapping the caller passes (a dict, or a StateFile's
mappings that survive a restart).

``EmbeddedScheduler`` adds the policies: a thread calls ``tick`` every
``tick_interval_s`` with the time of an injected clock (tests call ``tick``
themselves with simulated times and no thread), publishes the commands the
tick returns, and flushes the state file. One lock serialises events and ticks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, MutableMapping
from datetime import datetime
from pathlib import Path
from typing import Any

from services.scheduler.engine import FACT_TOPICS, LifecycleVault, Scheduler, TickResult
from services.scheduler.persist import StateFile
from services.scheduler.usage import TRACKED_TOPICS, Delivery, UsageProcessor, UsageStats
from shared.ports.bus import EventBus, Subscription
from shared.schemas.events import EventEnvelope
from shared.schemas.memcube import utcnow
from shared.settings import SchedulerSettings

log = logging.getLogger(__name__)

GROUP = "memgrid-scheduler"


class BusUsageConsumer:
    """Feeds ``processor`` from ``bus`` in consumer group ``group`` (usage only)."""

    def __init__(
        self,
        bus: EventBus,
        processor: UsageProcessor,
        *,
        group: str = GROUP,
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


class EmbeddedScheduler:
    """Usage, policies and commands in process, on the shared bus."""

    def __init__(
        self,
        bus: EventBus,
        settings: SchedulerSettings,
        *,
        vault: LifecycleVault | None = None,
        state: StateFile | None = None,
        clock: Callable[[], datetime] = utcnow,
        group: str = GROUP,
    ) -> None:
        maps: dict[str, MutableMapping[str, Any]] = (
            {"cubes": {}, "spaces": {}, "journal": {}} if state is None else dict(state.maps)
        )
        self.scheduler = Scheduler(
            settings,
            cubes=maps["cubes"],
            spaces=maps["spaces"],
            journal=maps["journal"],
            vault=vault,
        )
        self.stats = UsageStats()
        self.clock = clock
        self.interval_s = settings.tick_interval_s
        self._bus = bus
        self._group = group
        self._state = state
        self._lock = threading.Lock()
        self._unobserved: dict[str, None] = {}  # touched cubes, insertion-ordered
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sub: Subscription | None = None

    def start(self, *, ticking: bool = True) -> EmbeddedScheduler:
        """Subscribes; with ``ticking`` also starts the tick thread."""
        if self._sub is None:
            topics = (*TRACKED_TOPICS, *FACT_TOPICS)
            self._sub = self._bus.subscribe(self._group, topics, self._handle)
        if ticking and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="scheduler-tick", daemon=True)
            self._thread.start()
        return self

    def _handle(self, event: EventEnvelope) -> None:
        with self._lock:
            # The bus hands events over one at a time; refreshing the namespace
            # summary per event would copy the namespace record (a row per cube)
            # per event. The touched cubes are summarised before the next tick.
            result = self.scheduler.usage.process([Delivery(event)])
            self.scheduler.apply_facts([event])
            self._unobserved.update(dict.fromkeys(result.touched))
        if result.rejected:
            raise result.rejected[0][1]  # the bus retries, then dead-letters it
        self.stats.record(result, 1, time.time())

    def tick(self, now: datetime | None = None) -> TickResult:
        """Runs the policies at ``now`` (default: the clock's time), flushes the state,
        then publishes the commands (after the flush: see engine.py)."""
        with self._lock:
            self._observe()
            result = self.scheduler.tick(self.clock() if now is None else now)
            if self._state is not None:
                self._state.flush()
        for message in result.messages:
            self._bus.publish(message.topic, message.event, key=message.key)
        return result

    def _observe(self) -> None:
        """Namespace summaries of the cubes touched since the last call (under the lock)."""
        if self._unobserved:
            usage = self.scheduler.usage.usage
            self.scheduler.observe(filter(None, map(usage, self._unobserved)))
            self._unobserved.clear()

    def explain(self, cube_id: str, *, tenant: str | None = None) -> dict[str, Any] | None:
        with self._lock:
            self._observe()
            return self.scheduler.explain(cube_id, self.clock(), tenant=tenant)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.tick()
            except Exception:  # a bug or a dependency down: log, try again next tick
                log.exception("scheduler tick failed")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if self._sub is not None:
            self._sub.close()
            self._sub = None
        if self._state is not None:
            with self._lock:
                self._observe()
                self._state.close()
            self._state = None


def start_scheduler(
    bus: EventBus,
    settings: SchedulerSettings,
    data_dir: Path,
    *,
    vault: object | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> EmbeddedScheduler:
    """The embedded scheduler with its state in ``data_dir/scheduler.db``, running.

    ``vault`` drives expiry and merges when it has the lifecycle operations
    (LifecycleVault); without them those policies are off, the others run."""
    lifecycle = vault if isinstance(vault, LifecycleVault) else None
    if vault is not None and lifecycle is None:
        log.warning("the vault has no lifecycle operations: expiry and merges are off")
    state = StateFile(data_dir / "scheduler.db")
    return EmbeddedScheduler(bus, settings, vault=lifecycle, state=state, clock=clock).start()
