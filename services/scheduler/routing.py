"""The distributed scheduler's state split by owner, without faust (unit-testable).

In distributed mode the state is partitioned two ways: usage records and the
decision journal by cube (like memory.accessed), namespace records by namespace
(like memory.promoted / demoted). A worker may only write the partitions it
owns, so whatever one side learns about the other's keys travels as a message
keyed by the other side's key, on an internal topic that is co-partitioned with
the other side's table (services.scheduler.stream wires the topics):

* cube side → namespace side: after each batch of events, one ``summaries``
  message per namespace with the Summary of every cube the batch touched
  (``CubeSide.process``). Once per batch per namespace, not per event: the
  per-event path stays what it was.
* namespace side → cube side: after a tick, one ``CubeNote`` per cube with the
  decisions about it (its journal) and, for a cube the tick merged or expired,
  the retired mark (``TickScheduler``, ``CubeSide.apply_notes``).

Every message is idempotent to apply twice: summaries overwrite, journal
entries already present are skipped, a retired mark is set once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.scheduler.decisions import Decision
from services.scheduler.engine import LifecycleVault, Scheduler, TickResult
from services.scheduler.spaces import IDX_EXPIRES, Space, Summary
from services.scheduler.usage import BatchResult, Delivery
from shared.schemas.events import EventEnvelope
from shared.settings import SchedulerSettings


def _dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass
class CubeNote:
    """What a tick decided about one cube, for the worker that owns the cube."""

    cube_id: str
    entries: list[dict[str, Any]] = field(default_factory=list)  # Decision.entry()
    retired: str | None = None  # "merged" / "expired"

    def encode(self) -> bytes:
        return _dumps({"cube_id": self.cube_id, "entries": self.entries, "retired": self.retired})

    @classmethod
    def decode(cls, raw: bytes) -> CubeNote:
        body = json.loads(raw)
        if not isinstance(body, dict) or not isinstance(body.get("cube_id"), str):
            raise ValueError("not a cube note")
        entries = body.get("entries") or []
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ValueError("cube note entries must be objects")
        return cls(body["cube_id"], entries, body.get("retired"))


@dataclass
class SummaryBatch:
    """Summaries of one namespace's cubes from one batch of the cube side."""

    namespace: str
    tenant: str
    summaries: list[Summary]

    def encode(self) -> bytes:
        return _dumps(
            {
                "namespace": self.namespace,
                "tenant": self.tenant,
                "cubes": [s.to_list() for s in self.summaries],
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> SummaryBatch:
        body = json.loads(raw)
        if not isinstance(body, dict) or not isinstance(body.get("namespace"), str):
            raise ValueError("not a summary batch")
        return cls(body["namespace"], body["tenant"], [Summary.from_list(c) for c in body["cubes"]])


class CubeSide:
    """The cube-partitioned half: usage records and the decision journal."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def process(
        self, deliveries: Sequence[Delivery], notes: Sequence[CubeNote] = ()
    ) -> tuple[BatchResult, list[SummaryBatch]]:
        """Applies a batch of events and notes; returns the summaries to forward."""
        result = self.scheduler.usage.process(deliveries)
        cubes = dict.fromkeys(result.touched)
        if result.duplicates:
            # A redelivery after a crash may come after the records were written
            # but before their summaries were sent: send them (again) anyway.
            for d in deliveries:
                cube = d.event.data.get("cube_id")
                if isinstance(cube, str):
                    cubes.setdefault(cube)
        cubes.update(dict.fromkeys(self.apply_notes(notes)))
        return result, self.summarise(cubes)

    def summarise(self, cube_ids: Iterable[str]) -> list[SummaryBatch]:
        state = self.scheduler.cubes
        batches: dict[str, SummaryBatch] = {}
        for cube in cube_ids:
            data = state.get(cube)
            if data is None or not data.get("namespace"):
                continue
            namespace = data["namespace"]
            batch = batches.get(namespace)
            if batch is None:
                batch = batches[namespace] = SummaryBatch(namespace, data["tenant"], [])
            batch.summaries.append(Summary.of_record(data))
        return list(batches.values())

    def apply_notes(self, notes: Sequence[CubeNote]) -> list[str]:
        """Journal entries and retired marks; returns the cubes whose record changed."""
        keep = self.scheduler.settings.decision_history
        journal = self.scheduler.journal
        changed = []
        for note in notes:
            if note.entries:
                past = list(journal.get(note.cube_id) or [])
                fresh = [e for e in note.entries if e not in past]  # a redelivered note
                if fresh:
                    journal[note.cube_id] = (past + fresh)[-keep:]
            if note.retired:
                record = self.scheduler.usage.usage(note.cube_id)
                if record is not None and record.retired is None:
                    record.retired = note.retired
                    self.scheduler.cubes[note.cube_id] = record.to_dict()
                    changed.append(note.cube_id)
        return changed


class SpaceSide:
    """The namespace-partitioned half: namespace records, facts and summaries."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def apply(self, facts: Iterable[EventEnvelope], batches: Iterable[SummaryBatch]) -> int:
        """memory.promoted / demoted, then the summaries (one write per namespace)."""
        applied = self.scheduler.apply_facts(facts)
        merged: dict[str, SummaryBatch] = {}
        for batch in batches:
            into = merged.get(batch.namespace)
            if into is None:
                merged[batch.namespace] = SummaryBatch(
                    batch.namespace, batch.tenant, list(batch.summaries)
                )
            else:
                into.summaries.extend(batch.summaries)  # later ones after earlier ones
        for namespace, batch in merged.items():
            self.scheduler.observe_summaries(namespace, batch.tenant, batch.summaries)
        return applied


class _Directory(MutableMapping[str, Any]):
    """Read-only stand-in for the cube table during a tick: tenant, namespace and TTL
    of the cubes of the namespaces at hand (all the TTL sweep needs to know of an
    expired cube). Writes never come (TickScheduler overrides retire_cubes)."""

    def __init__(self, spaces: Mapping[str, dict[str, Any]]) -> None:
        self._spaces = spaces

    def __getitem__(self, key: str) -> Any:
        for namespace, data in self._spaces.items():
            row = data.get("members", {}).get(key)
            if row is not None:
                expires_at = row[IDX_EXPIRES] if len(row) > IDX_EXPIRES else None
                return {
                    "cube_id": key,
                    "tenant": data["tenant"],
                    "namespace": namespace,
                    "expires_at": expires_at,
                }
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __setitem__(self, key: str, value: Any) -> None:
        raise TypeError("the cube table is not written during a tick")

    def __delitem__(self, key: str) -> None:
        raise TypeError("the cube table is not written during a tick")

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


class TickScheduler(Scheduler):
    """A tick over some namespaces' records, in plain dicts (a copy of the owned
    part of the namespace table), whose cube-side effects become CubeNotes."""

    def __init__(
        self,
        settings: SchedulerSettings,
        spaces: dict[str, dict[str, Any]],
        vault: LifecycleVault | None,
    ) -> None:
        super().__init__(settings, cubes=_Directory(spaces), spaces=spaces, journal={}, vault=vault)
        self.notes: dict[str, CubeNote] = {}

    def _note(self, cube: str) -> CubeNote:
        note = self.notes.get(cube)
        if note is None:
            note = self.notes[cube] = CubeNote(cube)
        return note

    def journal_decisions(self, decisions: list[Decision]) -> None:
        for d in decisions:
            entry = d.entry()
            for cube in d.cube_ids:
                self._note(cube).entries.append(entry)

    def retire_cubes(self, cube_ids: Sequence[str], state: str) -> None:
        for cube in cube_ids:
            self._note(cube).retired = state


@dataclass
class TickOutcome:
    result: TickResult
    spaces: dict[str, dict[str, Any]]  # namespace records the tick changed
    notes: list[CubeNote]


def run_tick(
    settings: SchedulerSettings,
    spaces: Mapping[str, dict[str, Any]],
    vault: LifecycleVault | None,
    now: datetime,
    *,
    sweep: bool,
) -> TickOutcome:
    """One tick over ``spaces`` (namespace → stored record; not modified).

    Runs without touching any faust table, so the caller may run it in a thread
    (the vault calls block) and write the outcome back on the event loop."""
    work = dict(spaces)
    scheduler = TickScheduler(settings, work, vault)
    result = scheduler.tick(now, sweep=sweep)
    changed = {ns: data for ns, data in work.items() if data != spaces.get(ns)}
    return TickOutcome(result, changed, list(scheduler.notes.values()))


def space_targets(data: Mapping[str, Any] | None, cube_id: str) -> dict[str, list[str]]:
    """The caches and adapters of a namespace record that contain ``cube_id``."""
    space = data or {}
    return {
        kind: sorted(t for t, v in space.get(kind, {}).items() if cube_id in v["cube_ids"])
        for kind in ("caches", "adapters")
    }


def space_view(data: Mapping[str, Any]) -> dict[str, Any]:
    """The public JSON view of a namespace record (``GET /spaces/{namespace}``)."""
    space = Space.from_dict(dict(data))
    return {
        "namespace": space.namespace,
        "tenant": space.tenant,
        "members": len(space.members),
        "awaiting_dedupe": len(space.dedupe),
        "caches": space.caches,
        "adapters": space.adapters,
        "pending": space.pending,
        "last_build_at": space.last_build_at,
        "last_train_at": space.last_train_at,
    }
