"""The scheduler's faust app (``memgrid serve --service scheduler``) on real Kafka.

Each test runs the worker as a subprocess with its own app id (so its own
tables and internal topics) and a one-second tick, and starts its consumer
group at the current end of the shared topics, so nothing another test left on
the broker is replayed; its events use a fresh tenant and namespace.

* accessed events on Kafka → a BuildActivation command on its topic, and the
  explain view (``/usage/{cube}``) shows the decision with its reason;
* the worker killed with SIGKILL and restarted keeps its counters (redelivered
  events are not counted twice), its decisions and its pending command (no
  second build).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.schemas.events import EventEnvelope, MemoryAccessed, MemoryCreated, make_event
from shared.settings import BusSettings
from tests.contract.adapters import reachable

pytestmark = pytest.mark.integration

KAFKA = ("127.0.0.1", 9092)
REPO = Path(__file__).resolve().parents[2]
SOURCES = (
    "memory.accessed",
    "memory.created",
    "memory.updated",
    "memory.deleted",
    "memory.expired",
    "memory.promoted",
    "memory.demoted",
)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def wait_for(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, urllib.error.URLError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def start_group_at_end(group: str) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import OffsetSpec
    from kafka.structs import TopicPartition

    admin = KafkaAdminClient(bootstrap_servers="127.0.0.1:9092")
    try:
        tps = [
            TopicPartition(d["name"], p["partition_index"])
            for d in admin.describe_topics(list(SOURCES))
            for p in d["partitions"]
        ]
        admin.reset_group_offsets(group, dict.fromkeys(tps, OffsetSpec.LATEST))
    finally:
        admin.close()


class Worker:
    """One scheduler worker process; ``start`` again after ``kill`` to restart it."""

    def __init__(self, bus_url: str, tmp: Path) -> None:
        self.app_id = f"test-sched-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / "worker.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MEMGRID_")},
            "MEMGRID_BUS__URL": bus_url,
            "MEMGRID_DATA_DIR": str(tmp / "data"),
            "MEMGRID_SCHEDULER__APP_ID": self.app_id,
            "MEMGRID_SCHEDULER__WEB_PORT": str(self.port),
            "MEMGRID_SCHEDULER__TICK_INTERVAL_S": "1",
            "MEMGRID_SCHEDULER__SPACE_BATCH_WITHIN_S": "0.2",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "serve", "--service", "scheduler"],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

        def ready() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.tail()
            return bool(get_json(f"{self.url}/readyz")["status"] == "ready")

        wait_for(ready, 120, "the scheduler worker to be ready")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def usage(self, cube: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = get_json(f"{self.url}/usage/{cube}")
            return result
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise


@pytest.fixture
def bus_settings() -> BusSettings:
    if not reachable(*KAFKA):
        pytest.skip("nothing listens on 127.0.0.1:9092 (make infra-up)")
    pytest.importorskip("faust")
    return BusSettings(url="kafka://127.0.0.1:9092")


@pytest.fixture
def worker(bus_settings: BusSettings, tmp_path: Path) -> Iterator[Worker]:
    from shared.adapters.bus_kafka import KafkaEventBus

    KafkaEventBus(bus_settings).close()  # declares the shared topics
    w = Worker(bus_settings.url, tmp_path)
    start_group_at_end(w.app_id)
    try:
        yield w
    finally:
        w.stop()


def accessed(tenant: str, ns: str, cube: str, i: int) -> EventEnvelope:
    data = MemoryAccessed(
        cube_id=cube,
        version=1,
        channel="search",
        query_id=f"q{i}",
        rank=1,
        score=0.9,
        principal="p1",
        session_id=f"s{i % 3}",
    )
    return make_event(data, source="tests", tenant=tenant, namespace=ns)


def created(tenant: str, ns: str, cube: str) -> EventEnvelope:
    data = MemoryCreated(
        cube_id=cube, version=1, tier="plaintext", origin="user_input", semantic_type="fact"
    )
    return make_event(data, source="tests", tenant=tenant, namespace=ns)


class Commands:
    """Collects the BuildActivation commands of one namespace from Kafka."""

    def __init__(self, bus: Any, namespace: str) -> None:
        self.found: list[EventEnvelope] = []
        self.sub = bus.subscribe(
            f"test-commands-{uuid.uuid4().hex[:8]}",
            ["commands.activation.build"],
            lambda e: self.found.append(e) if e.namespace == namespace else None,
        )

    def close(self) -> None:
        self.sub.close()


def publish_workload(bus: Any, tenant: str, ns: str, cubes: list[str], per_cube: int) -> int:
    for cube in cubes:
        bus.publish("memory.created", created(tenant, ns, cube), key=cube)
    n = 0
    for _ in range(per_cube):
        for cube in cubes:
            bus.publish("memory.accessed", accessed(tenant, ns, cube, n), key=cube)
            n += 1
    bus.flush(timeout_s=30)
    return n


def test_accessed_events_lead_to_a_build_command_and_an_explained_decision(
    bus_settings: BusSettings, worker: Worker
) -> None:
    from shared.adapters.bus_kafka import KafkaEventBus

    tenant, ns = f"t_{uuid.uuid4().hex[:8]}", f"ns_{uuid.uuid4().hex[:8]}"
    cubes = [f"c_{uuid.uuid4().hex[:12]}" for _ in range(6)]
    bus = KafkaEventBus(bus_settings)
    commands = Commands(bus, ns)
    try:
        worker.start()
        publish_workload(bus, tenant, ns, cubes, per_cube=5)
        wait_for(lambda: commands.found, 60, f"a BuildActivation for {ns}\n{worker.tail()}")
        command = commands.found[0]
        assert command.type == "io.memgrid.commands.activation.build"
        assert command.tenant == tenant
        assert sorted(command.data["cube_ids"]) == sorted(cubes)
        assert "hot set" in command.data["reason"]

        # The decision reaches the cube's journal as a note routed to the cube's
        # owner (services/scheduler/routing.py), after the command went out.
        view = wait_for(
            lambda: (v := worker.usage(cubes[0])) is not None and v["decisions"] and v,
            30,
            f"the decision in the journal of {cubes[0]}",
        )
        assert view["access_count"] == 5
        assert view["scores"]["hotness"] >= 3.0
        (decision,) = view["decisions"]
        assert decision["kind"] == "activate"
        assert decision["command_id"] == command.data["command_id"] == command.id
        assert decision["reason"] == command.data["reason"]
        space = get_json(f"{worker.url}/spaces/{ns}?tenant={tenant}")
        assert space["members"] == len(cubes)
        assert list(space["pending"]) == [command.id]
    finally:
        commands.close()
        bus.close()


def test_a_killed_and_restarted_worker_keeps_counters_and_decisions(
    bus_settings: BusSettings, worker: Worker
) -> None:
    from shared.adapters.bus_kafka import KafkaEventBus

    tenant, ns = f"t_{uuid.uuid4().hex[:8]}", f"ns_{uuid.uuid4().hex[:8]}"
    cubes = [f"c_{uuid.uuid4().hex[:12]}" for _ in range(5)]
    bus = KafkaEventBus(bus_settings)
    commands = Commands(bus, ns)
    try:
        worker.start()
        n = publish_workload(bus, tenant, ns, cubes, per_cube=40)
        wait_for(lambda: commands.found, 60, f"a BuildActivation for {ns}\n{worker.tail()}")

        def counted() -> int:
            return sum((worker.usage(c) or {}).get("access_count", 0) for c in cubes)

        wait_for(lambda: counted() == n, 60, f"{n} accesses counted")
        before = {c: worker.usage(c) for c in cubes}
        # Right away, so that the last offsets are likely not committed yet:
        # the restarted worker gets some events again and must not count them.
        worker.kill()
        worker.start()
        after = {c: worker.usage(c) for c in cubes}
        for cube in cubes:
            b, a = before[cube], after[cube]
            assert a is not None and b is not None
            for key in ("access_count", "first_access", "last_access", "distinct_sessions"):
                assert a[key] == b[key], (cube, key)
            assert a["decisions"] == b["decisions"]
            assert a["decisions"][0]["kind"] == "activate"
        # More events after the restart count once each, and the pending build
        # survived: a few ticks later there is still exactly one command.
        for i in range(3):
            bus.publish("memory.accessed", accessed(tenant, ns, cubes[0], 10_000 + i), key=cubes[0])
        bus.flush(timeout_s=30)
        wait_for(
            lambda: (worker.usage(cubes[0]) or {}).get("access_count") == 43,
            60,
            "three more accesses counted",
        )
        time.sleep(3)  # three ticks
        assert len(commands.found) == 1, [c.data for c in commands.found]
        stats = get_json(f"{worker.url}/stats/usage?latency=0")
        print(f"\nrestarted scheduler: {stats['duplicates']} redelivered events recognised")
    finally:
        commands.close()
        bus.close()
