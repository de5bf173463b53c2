"""The API's decisions, published without making the API depend on Kafka.

An outbox for the interface, which has no database: a decision the bus does not
take at once (broker down, restarting) is appended to a local spool file and
fsynced before the answer leaves, and a relay thread publishes the spool when
the bus is back. Only when the spool cannot be written either does the request
fail (closed: services/interface/audit_trail.py). Delivery is at least once: a
relay interrupted half-way publishes some decisions again, and the audit log
keeps one record per event id.

While the spool holds anything, new decisions join it (no broker round trip per
request during an outage, and the order stays that of the requests).
One interface process per spool file (``data_dir/interface/decisions.spool``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from shared.ports.bus import EventBus
from shared.schemas.events import EventEnvelope

log = logging.getLogger(__name__)


class SpooledPublisher:
    def __init__(self, bus: EventBus, path: Path, retry_s: float = 2.0) -> None:
        self._bus = bus
        self.path = path
        self._retry_s = retry_s
        self._lock = threading.Lock()
        self._bypass_until = 0.0  # after a failed publish: straight to the spool
        path.parent.mkdir(parents=True, exist_ok=True)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._relay, name="decision-spool", daemon=True)
        self._thread.start()

    def __call__(self, event: EventEnvelope) -> None:
        """Returns once the decision is on the bus or durably spooled; raises otherwise."""
        if time.monotonic() >= self._bypass_until and not self.path.exists():
            try:
                self._bus.publish(event.topic, event, key=event.tenant)
                return
            except Exception as exc:
                log.warning("audit decisions spooled: the bus refused (%s)", type(exc).__name__)
                self._bypass_until = time.monotonic() + self._retry_s
        line = event.model_dump_json().encode() + b"\n"
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)

    def drain(self) -> int:
        """Publishes the spool in order and removes it; returns how many were sent.
        On a failure the spool stays whole (sent ones go again: at least once)."""
        with self._lock:
            if not self.path.exists():
                return 0
            lines = self.path.read_bytes().splitlines()
            sent = 0
            for raw in lines:
                if not raw.strip():
                    continue
                try:
                    event = EventEnvelope.model_validate_json(raw)
                except ValueError:
                    log.error("unreadable line in %s dropped", self.path)
                    continue
                try:
                    self._bus.publish(event.topic, event, key=event.tenant)
                except Exception as exc:
                    log.warning("spooled decisions wait: the bus refused (%s)", type(exc).__name__)
                    return sent
                sent += 1
            self.path.unlink()
            return sent

    def _relay(self) -> None:
        while not self._stop.wait(self._retry_s):
            try:
                self.drain()
            except Exception:  # the relay must outlive any one failure
                log.exception("decision spool relay failed; retrying")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        try:
            self.drain()
        except Exception:
            log.exception("decision spool not drained at close; sent at next start")
