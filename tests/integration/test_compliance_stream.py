"""The compliance scanner as a faust agent of the governance worker, on Kafka.

``memgrid serve --service governance`` runs in a subprocess (faust installs
signal handlers, which only a main thread may do) with its own app id, whose
consumer group starts at the current end of every memory.* topic, so the
shared broker's history is not replayed; events are told apart by a random
tenant. The counts are read from the worker's ``/stats/compliance`` page.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.schemas.events import (
    EventEnvelope,
    MemoryCreated,
    MemoryDeleted,
    MemoryUpdated,
    make_event,
)
from shared.schemas.memcube import Origin, SemanticType, Tier
from shared.settings import BusSettings
from shared.topics import FACT_TOPICS
from tests.contract.adapters import reachable

pytestmark = pytest.mark.integration

KAFKA = ("127.0.0.1", 9092)
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def bus_settings() -> BusSettings:
    if not reachable(*KAFKA):
        pytest.skip("nothing listens on 127.0.0.1:9092 (make infra-up)")
    pytest.importorskip("faust")
    return BusSettings(url="kafka://127.0.0.1:9092")


def start_group_at_end(group: str) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import OffsetSpec
    from kafka.structs import TopicPartition

    from shared.topics import ensure_topics

    admin = KafkaAdminClient(bootstrap_servers="127.0.0.1:9092")
    try:
        ensure_topics(admin, FACT_TOPICS)
        tps = []
        for described in admin.describe_topics([s.name for s in FACT_TOPICS]):
            tps += [
                TopicPartition(described["name"], p["partition_index"])
                for p in described["partitions"]
            ]
        admin.reset_group_offsets(group, dict.fromkeys(tps, OffsetSpec.LATEST))
    finally:
        admin.close()


@pytest.fixture
def governance(bus_settings: BusSettings, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    app_id = f"test-governance-{uuid.uuid4().hex[:8]}"
    start_group_at_end(app_id)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MEMGRID_")},
        "MEMGRID_MODE": "distributed",
        "MEMGRID_BUS__URL": bus_settings.url,
        "MEMGRID_GOVERNANCE__APP_ID": app_id,
        "MEMGRID_GOVERNANCE__WEB_PORT": str(port),
        "MEMGRID_GOVERNANCE__FSYNC": "false",
        "MEMGRID_DATA_DIR": str(tmp_path / "data"),
    }
    log_path = tmp_path / "governance.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "serve", "--service", "governance"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield f"http://127.0.0.1:{port}", log_path
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def created(tenant: str, cube: str, tags: list[str]) -> EventEnvelope:
    data = MemoryCreated(
        cube_id=cube,
        version=1,
        tier=Tier.plaintext,
        origin=Origin.user_input,
        semantic_type=SemanticType.fact,
        sensitivity_tags=tags,
    )
    return make_event(data, source="tests", tenant=tenant, namespace="ns1")


def test_governance_worker_counts_sensitive_memories(
    bus_settings: BusSettings, governance: tuple[str, Path]
) -> None:
    from shared.adapters.bus_kafka import KafkaEventBus

    url, log_path = governance
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    updated = MemoryUpdated(
        cube_id="a", version=2, previous_version=1, changed=["text"], sensitivity_tags=["pii:iban"]
    )
    events = [
        ("memory.created", created(tenant, "a", ["pii:email"])),
        ("memory.created", created(tenant, "b", ["pii:card", "secret:token"])),
        ("memory.created", created(tenant, "c", [])),
        ("memory.updated", make_event(updated, source="t", tenant=tenant, namespace="ns1")),
        (
            "memory.deleted",
            make_event(
                MemoryDeleted(cube_id="c", version=2), source="t", tenant=tenant, namespace="ns1"
            ),
        ),
    ]
    bus = KafkaEventBus(bus_settings)
    try:
        for topic, ev in events:
            bus.publish(topic, ev, key=ev.data["cube_id"])
            if ev.data["cube_id"] == "a" and topic == "memory.created":
                bus.publish(topic, ev, key="a")  # redelivered: counted once
        bus.flush(timeout_s=30)
    finally:
        bus.close()

    want = {
        "sensitive_memories": 2,
        "by_kind": {"pii:card": 1, "pii:iban": 1, "secret:token": 1},
    }
    got: Any = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{url}/stats/compliance", params={"tenant": tenant}, timeout=2)
            got = r.json()["tenants"].get(tenant, {}).get("ns1")
            if got == want:
                break
        except (httpx.HTTPError, ValueError):
            pass  # still starting
        time.sleep(0.5)
    assert got == want, log_path.read_text()[-3000:]
