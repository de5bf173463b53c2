"""What is particular to the embedded blob store and event bus (contracts: tests/contract)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from shared.adapters import BLOB_STORES, EVENT_BUSES, create_blob_store, create_event_bus
from shared.adapters.blob_fs import FileBlobStore, fs_root
from shared.adapters.bus_memory import MemoryEventBus
from shared.errors import ConfigError
from shared.schemas.events import EventEnvelope, MemoryAccessed, make_event
from shared.settings import BlobSettings, BusSettings, Settings

pytestmark = pytest.mark.unit


def ev(n: int, cube: str = "c1") -> EventEnvelope:
    data = MemoryAccessed(
        cube_id=cube, version=1, channel="search", query_id=str(n), rank=1, score=1
    )
    return make_event(data, source="tests", tenant="t", namespace="ns")


def test_registries_refuse_unknown_schemes() -> None:
    assert "file" in BLOB_STORES.names()
    assert "memory" in EVENT_BUSES.names()
    with pytest.raises(ConfigError, match=r"known: .*file"):
        create_blob_store(BlobSettings(url="nosuch://bucket"))
    with pytest.raises(ConfigError, match=r"known: .*memory"):
        create_event_bus(BusSettings(url="nosuch://127.0.0.1:9092"))
    with pytest.raises(ConfigError):
        create_event_bus(BusSettings(url="memory"))


def test_default_settings_build_the_embedded_adapters(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    blobs = create_blob_store(settings.blob)
    assert isinstance(blobs, FileBlobStore) and blobs.root == (tmp_path / "blobs").resolve()
    bus = create_event_bus(settings.bus)
    assert isinstance(bus, MemoryEventBus)
    bus.close()


def test_file_urls() -> None:
    assert fs_root("file:///var/lib/memgrid%20blobs") == Path("/var/lib/memgrid blobs")
    assert fs_root("file://localhost/x") == Path("/x")
    for bad in ("file://host/x", "file:relative", "s3://b"):
        with pytest.raises(ConfigError):
            fs_root(bad)


def test_blob_files_are_complete_and_read_only(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    ref = store.put("t", "ns", b"abc")
    path = tmp_path / ref.key
    assert path.read_bytes() == b"abc"
    assert not (path.stat().st_mode & 0o222)
    assert [p.name for p in path.parent.iterdir()] == [ref.digest]  # no temp files left


def test_flush_times_out_on_a_stuck_handler() -> None:
    bus = MemoryEventBus()
    release = threading.Event()
    bus.subscribe("g", ["t"], lambda e: release.wait())
    bus.publish("t", ev(0))
    with pytest.raises(TimeoutError, match="g/t"):
        bus.flush(timeout_s=0.2)
    release.set()
    bus.flush()
    bus.close()


def test_a_standby_member_takes_over() -> None:
    bus = MemoryEventBus()
    first: list[int] = []
    second: list[int] = []
    s1 = bus.subscribe("g", ["t"], lambda e: first.append(int(e.data["query_id"])))
    s2 = bus.subscribe("g", ["t"], lambda e: second.append(int(e.data["query_id"])))
    bus.publish("t", ev(0))
    bus.flush()
    s1.close()
    bus.publish("t", ev(1))
    bus.flush()
    assert first == [0] and second == [1]
    s2.close()
    bus.close()


def test_a_failing_dead_letter_handler_does_not_loop() -> None:
    bus = MemoryEventBus(dead_letter_topic="dlq", max_delivery_attempts=2, retry_backoff_s=0)
    calls: list[str] = []

    def boom(e: EventEnvelope) -> None:
        calls.append(e.topic)
        raise RuntimeError("always")

    bus.subscribe("g", ["t"], boom)
    bus.subscribe("dlq-reader", ["dlq"], boom)
    bus.publish("t", ev(0))
    bus.flush()
    time.sleep(0.05)
    assert calls == ["memory.accessed", "memory.accessed", "deadletter", "deadletter"]
    bus.close()


def test_handlers_get_their_own_copy() -> None:
    bus = MemoryEventBus()
    seen: list[EventEnvelope] = []

    def mutate(e: EventEnvelope) -> None:
        e.data["query_id"] = "changed"

    bus.subscribe("a", ["t"], mutate)
    bus.subscribe("b", ["t"], seen.append)
    original = ev(7)
    bus.publish("t", original)
    bus.flush()
    assert seen[0].data["query_id"] == "7" and original.data["query_id"] == "7"
    bus.close()


def test_flush_inside_a_handler_does_not_deadlock() -> None:
    bus = MemoryEventBus()
    done = threading.Event()

    def handler(e: EventEnvelope) -> None:
        bus.flush(timeout_s=1)
        done.set()

    bus.subscribe("g", ["t"], handler)
    bus.publish("t", ev(0))
    assert done.wait(2)
    bus.close()
