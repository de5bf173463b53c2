"""Transactional outbox relay: publishes events committed with the vault's writes.

Events are written in the same transaction as the cubes they describe
(GraphStore.write), so a crash between commit and publish loses nothing: on
restart the relay finds them still pending and publishes them. The price is that
an event may be published twice (crash after publish, before ack); consumers
dedupe on the event id, as the bus contract requires of them.
"""

from __future__ import annotations

import logging
import threading

from shared.errors import MemgridError
from shared.ports.bus import EventBus
from shared.ports.graph import GraphStore

log = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(self, store: GraphStore, bus: EventBus, poll_interval_s: float = 0.5) -> None:
        self._store = store
        self._bus = bus
        self._poll = poll_interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one drain at a time keeps publish order = commit order
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)
            self._thread.start()

    def kick(self) -> None:
        """Called after a commit so events go out now rather than at the next poll."""
        self._wake.set()

    def drain(self) -> int:
        """Publishes everything pending; returns how many were published."""
        published = 0
        with self._lock:
            while True:
                items = self._store.outbox_pending(limit=500)
                if not items:
                    return published
                for item in items:
                    self._bus.publish(item.topic, item.event, key=item.event.key)
                self._store.outbox_ack([i.seq for i in items])
                published += len(items)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._poll)
            self._wake.clear()
            try:
                self.drain()
            except MemgridError as exc:  # store or bus down: keep the events, retry later
                log.warning("outbox relay paused: %s", exc.detail)
            except Exception:
                log.exception("outbox relay error; retrying")

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        try:
            self.drain()
        except Exception:
            log.warning("outbox not fully drained at shutdown; it resumes on next start")
