"""Namespace-level state of the scheduler: one JSON-ready record per namespace.

The policies decide per namespace (its hot set, its training batch), so their
state is keyed by namespace id and lives in any ``MutableMapping[str, dict]``:
a dict in embedded mode, a faust Table (keyed like the namespace-keyed
memory.promoted / memory.demoted and command topics) in distributed mode.

A record holds:

* ``members``: a compact summary of every live plaintext cube of the namespace
  (what the scores need), refreshed from the cube's usage record whenever an
  event touched it. This is what lets a namespace's policies run without
  reading the per-cube table, which in distributed mode is partitioned by cube.
* ``caches`` / ``adapters``: the KV caches and LoRA adapters that exist, learnt
  from memory.promoted / memory.demoted, with the sources that went stale since.
* ``pending``: commands issued and not yet confirmed (no duplicate while one
  pends; dropped after a timeout so the policy may issue it again).
* ``dedupe``: new cubes awaiting the near-duplicate check at the next tick.

Every change here is idempotent (summaries are overwritten, sets are sets, and
promoted/demoted event ids are remembered), as at-least-once delivery needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.scheduler.usage import CubeUsage
from shared.schemas.events import MemoryDemoted, MemoryPromoted
from shared.schemas.memcube import Tier

_RECENT = 64  # promoted/demoted event ids and retired targets remembered


@dataclass
class Member:
    """A cube as the namespace's policies see it (satisfies scores.Scorable)."""

    freq: float = 0.0
    freq_at: float | None = None
    last_access: float | None = None
    created_at: float | None = None
    updated_at: float | None = None
    sessions: int = 0
    tokens: int | None = None
    decay_half_life_s: float | None = None
    vitality: float = 0.0
    vitality_at: float | None = None
    first_access: float | None = None

    def to_list(self) -> list[Any]:
        return list(self.__dict__.values())

    @classmethod
    def from_list(cls, row: list[Any]) -> Member:
        return cls(*row[: len(_MEMBER_FIELDS)])  # a longer row: written by a newer version

    @classmethod
    def of(cls, usage: CubeUsage) -> Member:
        return cls(
            freq=usage.freq,
            freq_at=usage.freq_at,
            last_access=usage.last_access,
            created_at=usage.created_at,
            updated_at=usage.updated_at,
            sessions=len(usage.sessions),
            tokens=usage.tokens,
            decay_half_life_s=usage.decay_half_life_s,
            vitality=usage.vitality,
            vitality_at=usage.vitality_at,
            first_access=usage.first_access,
        )

    @property
    def born(self) -> float | None:
        return self.created_at if self.created_at is not None else self.first_access

    @property
    def last_edit(self) -> float | None:
        return self.updated_at if self.updated_at is not None else self.created_at

    @property
    def session_count(self) -> int:
        return self.sessions


_MEMBER_FIELDS = tuple(Member.__dataclass_fields__)
IDX_FREQ, IDX_FREQ_AT, IDX_LAST = 0, 1, 2  # positions in a member row (hot loops)
IDX_CREATED = _MEMBER_FIELDS.index("created_at")
IDX_TOKENS = _MEMBER_FIELDS.index("tokens")


@dataclass
class Space:
    namespace: str
    tenant: str
    members: dict[str, list[Any]] = field(default_factory=dict)
    dedupe: list[str] = field(default_factory=list)
    caches: dict[str, dict[str, Any]] = field(default_factory=dict)
    adapters: dict[str, dict[str, Any]] = field(default_factory=dict)
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_build_at: float | None = None
    last_train_at: float | None = None
    seen: list[str] = field(default_factory=list)  # promoted/demoted event ids
    gone: list[str] = field(default_factory=list)  # targets evicted or retired

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Space:
        # Shallow: members rows are replaced, never edited, so sharing them with
        # the stored value is safe; the containers themselves are copied.
        known = {k: v for k, v in data.items() if k in _SPACE_FIELDS}
        space = cls(**known)
        space.members = dict(space.members)
        space.dedupe = list(space.dedupe)
        space.caches = {k: dict(v) for k, v in space.caches.items()}
        space.adapters = {k: dict(v) for k, v in space.adapters.items()}
        space.pending = {k: dict(v) for k, v in space.pending.items()}
        space.seen = list(space.seen)
        space.gone = list(space.gone)
        return space

    # --- cube summaries ----------------------------------------------------------

    def observe(self, usage: CubeUsage) -> bool:
        """Refreshes the summary of one cube; True if the record changed."""
        cube = usage.cube_id
        if usage.state != "active" or usage.tier not in (None, Tier.plaintext):
            gone = self.members.pop(cube, None) is not None
            if cube in self.dedupe:
                self.dedupe.remove(cube)
            if usage.state != "active":
                gone = self._invalidate(cube, "deleted" if usage.deleted_at else "expired") or gone
            return gone
        old = self.members.get(cube)
        row = Member.of(usage).to_list()
        if old == row:
            return False
        self.members[cube] = row
        created = usage.created_at is not None
        if created and (old is None or old[IDX_CREATED] is None) and usage.tier == Tier.plaintext:
            self.dedupe.append(cube)  # new: check it for near-duplicates at the next tick
        if usage.updated_at is not None:
            for kind in ("caches", "adapters"):
                for target in getattr(self, kind).values():
                    if cube in target["cube_ids"] and usage.updated_at > target["at"]:
                        _add(target["invalid"], cube)
        return True

    def forget(self, cube_ids: list[str] | tuple[str, ...], why: str) -> None:
        """Cubes the scheduler itself retired (expired, merged)."""
        for cube in cube_ids:
            self.members.pop(cube, None)
            if cube in self.dedupe:
                self.dedupe.remove(cube)
            self._invalidate(cube, why)

    def _invalidate(self, cube: str, why: str) -> bool:
        changed = False
        for kind in ("caches", "adapters"):
            for target in getattr(self, kind).values():
                if cube in target["cube_ids"] and cube not in target["invalid"]:
                    target["invalid"].append(cube)
                    changed = True
        return changed

    # --- facts from inference and trainer ----------------------------------------

    def apply_fact(self, event_id: str, fact: MemoryPromoted | MemoryDemoted, at: float) -> bool:
        """memory.promoted / memory.demoted: which caches and adapters exist."""
        if event_id in self.seen:
            return False
        _remember(self.seen, event_id)
        if isinstance(fact, MemoryPromoted):
            if fact.target_id in self.gone:
                return False  # a late copy of a promotion we already undid
            kind = "caches" if fact.to_tier == Tier.activation else "adapters"
            if fact.to_tier not in (Tier.activation, Tier.parametric):
                return False
            self._confirm(fact)
            getattr(self, kind)[fact.target_id] = {
                "cube_ids": list(fact.cube_ids),
                "at": at,
                "command_id": fact.command_id,
                "invalid": [],
            }
            return True
        _remember(self.gone, fact.target_id)
        self._confirm(fact)
        for kind in ("caches", "adapters"):
            getattr(self, kind).pop(fact.target_id, None)
        return True

    def _confirm(self, fact: MemoryPromoted | MemoryDemoted) -> None:
        """Drops the pending command the fact carries out: by its id, else (a worker
        that did not echo the id) a pending command over the same cubes."""
        if fact.command_id is not None and fact.command_id in self.pending:
            del self.pending[fact.command_id]
            return
        wanted = sorted(fact.cube_ids)
        for cid, cmd in list(self.pending.items()):
            if sorted(cmd["cube_ids"]) == wanted:
                del self.pending[cid]
                return

    def pending_of(self, kind: str) -> list[dict[str, Any]]:
        return [c for c in self.pending.values() if c["kind"] == kind]


_SPACE_FIELDS = frozenset(Space.__dataclass_fields__)


def _add(items: list[str], item: str) -> None:
    if item not in items:
        items.append(item)


def _remember(ring: list[str], item: str) -> None:
    ring.append(item)
    if len(ring) > _RECENT:
        del ring[: len(ring) - _RECENT]
