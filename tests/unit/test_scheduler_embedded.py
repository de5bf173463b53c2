"""The embedded scheduler: on the in-process bus, ticking on an injected clock,
its state surviving a restart through the state file."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest

from services.scheduler.inproc import EmbeddedScheduler, start_scheduler
from services.scheduler.persist import StateFile
from shared.adapters.bus_memory import MemoryEventBus
from shared.schemas.events import EventEnvelope
from shared.settings import SchedulerSettings
from tests.scheduler_fakes import T0, FakeLifecycleVault, accessed, created

pytestmark = pytest.mark.unit

SETTINGS = SchedulerSettings(policy={"hot_min_cubes": 2}, tick_interval_s=0.05)  # type: ignore[arg-type]


def publish(bus: MemoryEventBus, *events: EventEnvelope) -> None:
    for e in events:
        bus.publish(e.topic, e, key=e.key)
    bus.flush()


def workload(bus: MemoryEventBus) -> None:
    publish(bus, created("c1", "ns"), created("c2", "ns"))
    publish(
        bus,
        *(
            accessed(c, "ns", T0 + timedelta(seconds=i), session=f"s{i % 3}", n=i)
            for i in range(8)
            for c in ("c1", "c2")
        ),
    )


def test_restart_keeps_counters_scores_and_decisions(tmp_path: Path) -> None:
    bus = MemoryEventBus()
    clock = [T0 + timedelta(minutes=1)]
    first = EmbeddedScheduler(
        bus, SETTINGS, state=StateFile(tmp_path / "scheduler.db"), clock=lambda: clock[0]
    ).start(ticking=False)
    workload(bus)
    first.tick()
    before = first.explain("c1")
    first.close()  # flushes

    again = EmbeddedScheduler(
        MemoryEventBus(),
        SETTINGS,
        state=StateFile(tmp_path / "scheduler.db"),
        clock=lambda: clock[0],
    ).start(ticking=False)
    after = again.explain("c1")
    assert after == before
    assert after is not None and after["access_count"] == 8 and after["distinct_sessions"] == 3
    assert [d["kind"] for d in after["decisions"]] == ["activate"]
    # The pending build survived too: no duplicate command after the restart.
    assert again.tick().decisions == []
    again.close()


def test_commands_are_published_on_the_bus_by_the_tick_thread(tmp_path: Path) -> None:
    bus = MemoryEventBus()
    got: list[EventEnvelope] = []
    seen = threading.Event()

    def on_command(event: EventEnvelope) -> None:
        got.append(event)
        seen.set()

    bus.subscribe("inference", ["commands.activation.build"], on_command)
    vault = FakeLifecycleVault()
    sched = start_scheduler(
        bus, SETTINGS, tmp_path, vault=vault, clock=lambda: T0 + timedelta(minutes=1)
    )
    try:
        workload(bus)
        assert seen.wait(5), "the tick thread published no build command"
        (command,) = got
        assert command.type == "io.memgrid.commands.activation.build"
        assert command.namespace == "ns" and sorted(command.data["cube_ids"]) == ["c1", "c2"]
        assert command.time == T0 + timedelta(minutes=1)  # the injected clock's time
        assert ("expire_due", (T0 + timedelta(minutes=1)).isoformat()) in vault.calls
    finally:
        sched.close()
    assert (tmp_path / "scheduler.db").exists()


def test_a_vault_without_lifecycle_operations_turns_expiry_off(tmp_path: Path) -> None:
    sched = start_scheduler(MemoryEventBus(), SETTINGS, tmp_path, vault=object())
    try:
        assert sched.scheduler.vault is None
    finally:
        sched.close()


def test_state_file_writes_only_changed_keys(tmp_path: Path) -> None:
    state = StateFile(tmp_path / "s.db")
    state["cubes"]["a"] = {"n": 1}
    state["journal"]["a"] = [1]
    assert state.flush() == 2
    assert state.flush() == 0
    del state["cubes"]["a"]
    state.close()
    reopened = StateFile(tmp_path / "s.db")
    assert dict(reopened["cubes"]) == {} and dict(reopened["journal"]) == {"a": [1]}
    reopened.close()
