"""A faust agent built with shared.streams consumes what KafkaEventBus publishes.

The agent runs as a faust worker in a subprocess (faust installs signal
handlers, which only the main thread may do). Its consumer group starts at the
current end of memory.accessed, so whatever else the shared broker holds is
not replayed, and events are told apart by a random tenant.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.schemas.events import EventEnvelope, MemoryAccessed, make_event
from shared.settings import BusSettings
from tests.contract.adapters import reachable

pytestmark = pytest.mark.integration

KAFKA = ("127.0.0.1", 9092)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def bus_settings() -> BusSettings:
    if not reachable(*KAFKA):
        pytest.skip("nothing listens on 127.0.0.1:9092 (make infra-up)")
    pytest.importorskip("faust")
    return BusSettings(
        url="kafka://127.0.0.1:9092",
        dead_letter_topic=f"test-dead-{uuid.uuid4().hex[:8]}",
        max_delivery_attempts=2,
        retry_backoff_s=0.05,
    )


def start_group_at_end(bus_settings: BusSettings, group: str, topic: str) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import OffsetSpec
    from kafka.structs import TopicPartition

    admin = KafkaAdminClient(bootstrap_servers="127.0.0.1:9092")
    try:
        (described,) = admin.describe_topics([topic])
        tps = [TopicPartition(topic, p["partition_index"]) for p in described["partitions"]]
        admin.reset_group_offsets(group, dict.fromkeys(tps, OffsetSpec.LATEST))
    finally:
        admin.close()


@pytest.fixture
def worker(
    bus_settings: BusSettings, tmp_path: Path
) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    from shared.adapters.bus_kafka import KafkaEventBus

    KafkaEventBus(bus_settings).close()  # declares memory.accessed and the dead-letter topic
    app_id = f"test-faust-{uuid.uuid4().hex[:8]}"
    start_group_at_end(bus_settings, app_id, "memory.accessed")
    out = tmp_path / "handled.jsonl"
    out.touch()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MEMGRID_")},
        "MEMGRID_BUS__URL": bus_settings.url,
        "MEMGRID_BUS__DEAD_LETTER_TOPIC": bus_settings.dead_letter_topic,
        "MEMGRID_BUS__MAX_DELIVERY_ATTEMPTS": str(bus_settings.max_delivery_attempts),
        "MEMGRID_BUS__RETRY_BACKOFF_S": str(bus_settings.retry_backoff_s),
        "MEMGRID_DATA_DIR": str(tmp_path / "data"),
    }
    log = (tmp_path / "worker.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.faust_probe", app_id, str(out)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield app_id, out, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def accessed(tenant: str, query_id: str) -> EventEnvelope:
    data = MemoryAccessed(
        cube_id=f"cube-{query_id}", version=1, channel="search", query_id=query_id, rank=1, score=1
    )
    return make_event(data, source="tests", tenant=tenant, namespace="ns")


def test_faust_agent_handles_bus_events_and_dead_letters_failures(
    bus_settings: BusSettings, worker: tuple[str, Path, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    from shared.adapters.bus_kafka import KafkaEventBus

    app_id, out, proc = worker
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    bus = KafkaEventBus(bus_settings)
    dead: list[EventEnvelope] = []
    try:
        dsub = bus.subscribe(f"dlq-{app_id}", [bus_settings.dead_letter_topic], dead.append)
        events = [accessed(tenant, str(i)) for i in range(200)]
        poison = accessed(tenant, "fail")
        for e in events[:100]:
            bus.publish("memory.accessed", e)
        bus.publish("memory.accessed", poison)
        for e in events[100:]:
            bus.publish("memory.accessed", e)

        deadline = time.monotonic() + 90
        handled: set[str] = set()
        while time.monotonic() < deadline and proc.poll() is None:
            lines = out.read_text().splitlines()
            handled = {r["id"] for r in map(json.loads, lines) if r["tenant"] == tenant}
            if len(handled) >= len(events) and dead:
                break
            time.sleep(0.2)
        worker_log = (tmp_path / "worker.log").read_text()
        assert handled == {e.id for e in events}, worker_log[-3000:]
        assert poison.id not in handled
        bus.flush(timeout_s=30)
        assert len(dead) == 1, worker_log[-3000:]
        letter = dead[0].data
        assert letter["group"] == app_id
        assert letter["topic"] == "memory.accessed"
        assert letter["attempts"] == bus_settings.max_delivery_attempts
        assert "probe handler refuses" in letter["error"]
        # As sent, except the traceparent the publishing span stamps (same trace).
        dead_event = EventEnvelope.model_validate(letter["event"])
        assert dead_event.model_dump(exclude={"traceparent"}) == poison.model_dump(
            exclude={"traceparent"}
        )
        dsub.close()
    finally:
        bus.close()
