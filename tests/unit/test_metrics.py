"""Prometheus metrics (shared.metrics): the interface's /metrics, consumer lag,
KV cache hits, training jobs, bus counters."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from shared.adapters.bus_memory import MemoryEventBus
from shared.metrics import lag_by_partition, record_lag
from tests.conftest import ADMIN_KEY
from tests.unit.test_telemetry import created

pytestmark = pytest.mark.unit


def scraped(body: str, name: str, **labels: str) -> float:
    """The value of sample ``name`` with ``labels`` in a /metrics body (0 if absent)."""
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_interface_metrics_count_requests_by_route_template(api_client: TestClient) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    route = {"service": "interface", "method": "POST", "route": "/v1/tenants"}
    before = api_client.get("/metrics")
    assert before.status_code == 200
    assert before.headers["content-type"].startswith("text/plain")
    created_before = scraped(before.text, "memgrid_http_requests_total", **route, status="201")
    bad_before = scraped(before.text, "memgrid_http_errors_total", **route, status="422")

    for name in ("m1", "m2"):
        assert api_client.post("/v1/tenants", json={"name": name}, headers=admin).status_code == 201
    assert api_client.post("/v1/tenants", json={}, headers=admin).status_code == 422

    after = api_client.get("/metrics").text
    assert (
        scraped(after, "memgrid_http_requests_total", **route, status="201") == created_before + 2
    )
    assert scraped(after, "memgrid_http_errors_total", **route, status="422") == bad_before + 1
    latency = scraped(
        after,
        "memgrid_http_request_duration_seconds_count",
        service="interface",
        method="POST",
        route="/v1/tenants",
    )
    assert latency >= 3
    assert "process_cpu_seconds_total" in after


def test_unrouted_paths_share_one_series(api_client: TestClient) -> None:
    labels = {"service": "interface", "method": "GET", "route": "unmatched", "status": "404"}
    before = value("memgrid_http_requests_total", **labels)
    api_client.get("/no/such/path/1")
    api_client.get("/no/such/path/2")
    assert value("memgrid_http_requests_total", **labels) == before + 2
    assert 'route="/no/such/path/1"' not in api_client.get("/metrics").text


def test_lag_is_end_offset_minus_position() -> None:
    ends = {("memory.created", 0): 120, ("memory.created", 1): 40, ("memory.created", 2): 9}
    positions = {("memory.created", 0): 100, ("memory.created", 1): 45}
    # Partition 2 has no position yet: left out. A position past a stale end is 0.
    assert lag_by_partition(ends, positions) == {
        ("memory.created", 0): 20,
        ("memory.created", 1): 0,
    }
    record_lag("g-lag", ends, positions)
    labels = {"group": "g-lag", "topic": "memory.created"}
    assert value("memgrid_consumer_lag", **labels, partition="0") == 20
    assert value("memgrid_consumer_lag", **labels, partition="1") == 0
    assert REGISTRY.get_sample_value("memgrid_consumer_lag", {**labels, "partition": "2"}) is None


class TP(NamedTuple):
    topic: str
    partition: int


class FakeFaustConsumer:
    """faust's Consumer as the lag sampler uses it: ``highwater`` known from its
    fetches, ``position`` awaited; partition 9 is moving away (position raises)."""

    offsets = {TP("memory.accessed", 0): (500, 470), TP("memory.accessed", 5): (80, 80)}

    def assignment(self) -> set[TP]:
        return {*self.offsets, TP("memory.accessed", 9)}

    def highwater(self, tp: TP) -> int:
        return self.offsets[tp][0] if tp in self.offsets else 1000

    async def position(self, tp: TP) -> int:
        if tp not in self.offsets:
            raise RuntimeError("partition not assigned")
        return self.offsets[tp][1]


def test_faust_lag_sample_reads_highwater_and_position() -> None:
    pytest.importorskip("faust")
    from shared.streams import sample_faust_lag

    lags = asyncio.run(sample_faust_lag(FakeFaustConsumer(), "memgrid-scheduler-lag"))
    assert lags == {("memory.accessed", 0): 30, ("memory.accessed", 5): 0}
    labels = {"group": "memgrid-scheduler-lag", "topic": "memory.accessed"}
    assert value("memgrid_consumer_lag", **labels, partition="0") == 30
    assert value("memgrid_consumer_lag", **labels, partition="5") == 0


@dataclass
class FakePrefix:
    nbytes: int


def test_kv_cache_hits_and_misses_are_counted() -> None:
    from services.inference.kv import KVLru

    lru = KVLru(1_000)
    hits, misses = value("memgrid_kv_cache_hits_total"), value("memgrid_kv_cache_misses_total")
    lru.put(("t1", "kv1"), FakePrefix(10))  # type: ignore[arg-type]
    assert lru.get(("t1", "kv1")) is not None
    assert lru.get(("t1", "kv1")) is not None
    assert lru.get(("t1", "other")) is None
    assert value("memgrid_kv_cache_hits_total") == hits + 2
    assert value("memgrid_kv_cache_misses_total") == misses + 1


@pytest.mark.parametrize(
    ("accept", "outcome"), [(True, "succeeded"), (False, "rejected"), (None, "failed")]
)
def test_training_jobs_are_counted_by_outcome(
    tmp_path: Path, accept: bool | None, outcome: str
) -> None:
    from shared.schemas.commands import make_command
    from tests.unit.test_trainer_service import make_env

    env = make_env(tmp_path, accept=bool(accept))
    if accept is None:

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("ray worker died")

        env.service._train = broken
    started = value("memgrid_training_jobs_total", outcome="started")
    finished = value("memgrid_training_jobs_total", outcome=outcome)
    durations = value("memgrid_training_job_duration_seconds_count", outcome=outcome)
    try:
        ids = env.add("Orla Fenwick was born in Caskmoor.")
        event = make_command(env.command(ids), tenant=env.caller.tenant)
        if accept is None:
            with pytest.raises(RuntimeError):
                env.service.handle(event)
        else:
            env.service.handle(event)
    finally:
        env.vault.close()
        env.bus.close()
    assert value("memgrid_training_jobs_total", outcome="started") == started + 1
    assert value("memgrid_training_jobs_total", outcome=outcome) == finished + 1
    assert value("memgrid_training_job_duration_seconds_count", outcome=outcome) == durations + 1


def test_bus_counts_published_consumed_and_dead_lettered_events() -> None:
    bus = MemoryEventBus(max_delivery_attempts=2, retry_backoff_s=0.001)
    published = value("memgrid_events_published_total", topic="memory.created")
    labels = {"group": "g-count", "topic": "memory.created"}
    consumed = value("memgrid_events_consumed_total", **labels)

    def handler(event: Any) -> None:
        if event.subject == "bad":
            raise ValueError("cannot handle")

    bus.subscribe("g-count", ["memory.created"], handler)
    bus.publish("memory.created", created("good"))
    bus.publish("memory.created", created("bad"))
    bus.flush(5)
    bus.close()
    assert value("memgrid_events_published_total", topic="memory.created") == published + 2
    assert value("memgrid_events_consumed_total", **labels) == consumed + 2
    assert value("memgrid_event_handler_failures_total", **labels) == 2
    assert value("memgrid_events_dead_lettered_total", **labels) == 1
