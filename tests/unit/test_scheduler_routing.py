"""The distributed split of the scheduler (services.scheduler.routing) decides
exactly what the embedded Scheduler decides.

The same workload runs through both: embedded, one Scheduler over three dicts;
split, as the faust app runs it, with the cube side and the namespace side in
separate dicts that meet only through encoded messages (cube summaries one
way, cube notes the other) and ticks run by ``run_tick`` on a copy of the
namespace records. Decisions, commands and every cube's explain view match.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from services.scheduler.engine import Scheduler, TickResult
from services.scheduler.routing import (
    CubeNote,
    CubeSide,
    SpaceSide,
    SummaryBatch,
    run_tick,
    space_targets,
)
from services.scheduler.spaces import Member, Summary
from services.scheduler.usage import CubeUsage, Delivery
from shared.schemas.events import EventEnvelope
from shared.settings import SchedulerSettings
from tests.scheduler_fakes import (
    T0,
    FakeLifecycleVault,
    accessed,
    confirmations,
    created,
    updated,
)

SETTINGS = SchedulerSettings(policy={"train_min_batch": 3, "train_cooldown_s": 3600})  # type: ignore[arg-type]
CUBE_FACTS = (
    "memory.accessed",
    "memory.created",
    "memory.updated",
    "memory.deleted",
    "memory.expired",
)


class Split:
    """The faust app's data flow without faust."""

    def __init__(self, vault: FakeLifecycleVault) -> None:
        self.cubes: dict[str, Any] = {}
        self.journal: dict[str, Any] = {}
        self.spaces: dict[str, Any] = {}
        cube_view = Scheduler(SETTINGS, cubes=self.cubes, spaces={}, journal=self.journal)
        space_view = Scheduler(SETTINGS, cubes={}, spaces=self.spaces, journal={})
        self.cube_side, self.space_side = CubeSide(cube_view), SpaceSide(space_view)
        self.vault = vault
        # For explain: the cube side's tables plus the namespace records.
        self.explainer = Scheduler(
            SETTINGS, cubes=self.cubes, spaces=self.spaces, journal=self.journal
        )

    def process(self, events: list[EventEnvelope], notes: list[CubeNote] | None = None) -> None:
        cube_events = [Delivery(e) for e in events if e.topic in CUBE_FACTS]
        facts = [e for e in events if e.topic not in CUBE_FACTS]
        _, batches = self.cube_side.process(cube_events, notes or [])
        wire = [SummaryBatch.decode(b.encode()) for b in batches]  # over Kafka
        self.space_side.apply(facts, wire)

    def tick(self, now: datetime) -> TickResult:
        outcome = run_tick(SETTINGS, self.spaces, self.vault, now, sweep=True)
        self.spaces.update(outcome.spaces)
        self.process([], [CubeNote.decode(n.encode()) for n in outcome.notes])
        return outcome.result


def test_summary_of_a_stored_record_equals_the_member_row() -> None:
    record = CubeUsage(
        "c1", "t1", "ns", access_count=3, sessions=["a", "b"], freq=1.5, freq_at=10.0, tokens=9
    )
    record.created_at, record.vitality, record.tier = 5.0, 0.7, "plaintext"
    summary = Summary.of_record(record.to_dict())
    assert summary == Summary.of(record)
    assert summary.row == Member.of(record).to_list()
    assert Summary.from_list(summary.to_list()) == summary
    record.expired_at = 11.0
    assert Summary.of_record(record.to_dict()).state == "expired"


def test_the_split_scheduler_decides_what_the_embedded_one_decides() -> None:
    vaults = FakeLifecycleVault(), FakeLifecycleVault()
    embedded = Scheduler(SETTINGS, cubes={}, spaces={}, journal={}, vault=vaults[0])
    split = Split(vaults[1])
    cubes = {ns: [f"{ns}-{i}" for i in range(6)] for ns in ("alpha", "beta")}
    for vault in vaults:
        for ns, ids in cubes.items():
            for cube in ids:
                vault.add(cube, ns, T0 + timedelta(days=2) if cube == "beta-5" else None)
        vault.duplicates["beta-1"] = [("beta-2", 0.97)]

    log: list[list[EventEnvelope]] = [
        [
            created(c, ns, T0, ttl_s=2 * 86_400 if c == "beta-5" else None)
            for ns in cubes
            for c in cubes[ns]
        ],
    ]
    decisions: list[list[Any]] = [[], []]
    now = T0
    for hour in range(0, 24 * 12, 6):
        now = T0 + timedelta(hours=hour)
        # alpha is hot all along; beta's cubes are used in several sessions.
        batch = [
            accessed(c, "alpha", now + timedelta(minutes=k), session=f"s{k % 4}", n=k)
            for k in range(4)
            for c in cubes["alpha"][:5]
        ]
        batch += [accessed(c, "beta", now, session=f"s{hour % 5}") for c in cubes["beta"][:4]]
        if hour == 24 * 9:
            batch.append(updated("alpha-0", "alpha", now))
        log.append(batch)
        results = []
        for runner, vault in ((embedded, vaults[0]), (split, vaults[1])):
            for events in log:
                if isinstance(runner, Scheduler):
                    runner.process([Delivery(e) for e in events])
                else:
                    runner.process(events)
            result = runner.tick(now)
            results.append(result)
            back = confirmations(result.messages, now) + vault.outbox
            vault.outbox = []
            if isinstance(runner, Scheduler):
                runner.process([Delivery(e) for e in back])
            else:
                runner.process(back)
        log = []
        for i, result in enumerate(results):
            decisions[i].extend(d.to_dict() for d in result.decisions)
        assert [m.event for m in results[0].messages] == [m.event for m in results[1].messages]

    kinds = {d["kind"] for d in decisions[0]}
    assert {"activate", "train", "merge", "expire_ttl"} <= kinds, kinds
    assert decisions[0] == decisions[1]
    for cube in [c for ids in cubes.values() for c in ids]:
        assert embedded.explain(cube, now) == split.explainer.explain(cube, now), cube
    assert split.cubes["beta-2"]["retired"] == "merged"


def test_a_redelivered_note_is_journalled_once() -> None:
    split = Split(FakeLifecycleVault())
    split.process([created("c1", "ns", T0)])
    note = CubeNote("c1", [{"kind": "activate", "at": T0.isoformat()}], retired="merged")
    split.process([], [note])
    split.process([], [note])
    assert split.journal["c1"] == note.entries
    assert split.cubes["c1"]["retired"] == "merged"
    assert "c1" not in split.spaces["ns"]["members"]  # and its summary said so


def test_space_targets() -> None:
    data = {"caches": {"kv1": {"cube_ids": ["a", "b"]}}, "adapters": {"l1": {"cube_ids": ["b"]}}}
    assert space_targets(data, "b") == {"caches": ["kv1"], "adapters": ["l1"]}
    assert space_targets(None, "b") == {"caches": [], "adapters": []}
