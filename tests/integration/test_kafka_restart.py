"""KafkaEventBus across a broker restart: nothing acknowledged is lost.

Runs its own single-node broker through infra/local (on free ports, with its own
data directory) so that restarting it disturbs no other test. Skipped when
Kafka is not installed in infra's cache (`make infra-up` installs it).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.errors import Unavailable
from shared.schemas.events import EventEnvelope, MemoryAccessed, make_event
from shared.settings import BusSettings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra" / "local" / "memgrid_infra.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Broker:
    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            "MGINFRA_DATA_DIR": str(data_dir),
            "MGINFRA_KAFKA_PORT": str(self.port),
            "MGINFRA_KAFKA_CONTROLLER_PORT": str(free_port()),
        }

    def run(self, action: str) -> None:
        result = subprocess.run(
            [sys.executable, str(INFRA), action, "kafka"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    status = subprocess.run(
        [sys.executable, str(INFRA), "status", "kafka"], capture_output=True, text=True
    )
    if "(installed)" not in status.stdout:
        pytest.skip("Kafka is not installed in infra/local's cache (make infra-up)")
    pytest.importorskip("kafka")
    b = Broker(tmp_path / "infra")
    b.run("up")
    try:
        yield b
    finally:
        b.run("down")


def test_events_published_across_a_broker_restart_all_arrive(broker: Broker) -> None:
    from shared.adapters.bus_kafka import KafkaEventBus

    settings = BusSettings(url=f"kafka://127.0.0.1:{broker.port}", publish_timeout_s=3)
    bus = KafkaEventBus(settings)
    topic = f"restart-{uuid.uuid4().hex[:8]}"
    seen: set[str] = set()
    lock = threading.Lock()

    def handler(e: EventEnvelope) -> None:
        with lock:
            seen.add(e.id)

    def restart() -> None:
        time.sleep(0.5)
        broker.run("down")
        time.sleep(1)  # publishes in flight meanwhile expire (publish_timeout_s)
        broker.run("up")

    try:
        sub = bus.subscribe(f"g-{topic}", [topic], handler)
        restarter = threading.Thread(target=restart)
        restarter.start()
        published, failures = [], 0
        deadline = time.monotonic() + 120
        i = 0
        while (restarter.is_alive() or len(published) < 300) and time.monotonic() < deadline:
            data = MemoryAccessed(
                cube_id=f"c{i % 7}", version=1, channel="search", query_id=str(i), rank=1, score=1
            )
            event = make_event(data, source="tests", tenant="t", namespace="ns")
            while time.monotonic() < deadline:  # as the outbox relay does: retry until acked
                try:
                    bus.publish(topic, event)
                    break
                except Unavailable:
                    failures += 1
                    time.sleep(0.2)
            published.append(event.id)
            i += 1
            time.sleep(0.005)
        restarter.join()
        assert failures > 0, "the restart should have been noticed by publish"
        bus.flush(timeout_s=60)
        assert set(published) <= seen  # every acknowledged event was delivered
        sub.close()
    finally:
        bus.close()
