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
_FORGOTTEN = 256  # retired cubes remembered (a tick's merges and expiries)


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
    expires_at: float | None = None  # TTL: only for the reasons of expiry decisions

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
            expires_at=usage.expires_at,
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
IDX_UPDATED = _MEMBER_FIELDS.index("updated_at")
IDX_EXPIRES = _MEMBER_FIELDS.index("expires_at")
IDX_TOKENS = _MEMBER_FIELDS.index("tokens")


@dataclass(frozen=True)
class Summary:
    """What a namespace needs to know of one cube: its state, tier and Member row.

    Built from a usage record by the cube's worker and applied to the namespace
    record by the namespace's (``Space.observe_summary``); travels as a list."""

    cube_id: str
    state: str  # CubeUsage.state
    tier: str | None
    row: list[Any]

    @classmethod
    def of(cls, usage: CubeUsage) -> Summary:
        return cls(usage.cube_id, usage.state, usage.tier, Member.of(usage).to_list())

    @classmethod
    def of_record(cls, data: dict[str, Any]) -> Summary:
        """From a stored usage record (CubeUsage.to_dict) without building the
        object: the distributed scheduler summarises every touched cube per batch."""
        if data.get("deleted_at") is not None:
            state = "deleted"
        elif data.get("expired_at") is not None:
            state = "expired"
        else:
            state = data.get("retired") or "active"
        row = [data.get(f) for f in _MEMBER_FIELDS]
        row[_IDX_SESSIONS] = len(data.get("sessions") or ())
        if row[0] is None:  # freq of a record written before it existed
            row[0] = 0.0
        row[_IDX_VITALITY] = data.get("vitality", 0.0)
        return cls(data["cube_id"], state, data.get("tier"), row)

    def to_list(self) -> list[Any]:
        return [self.cube_id, self.state, self.tier, self.row]

    @classmethod
    def from_list(cls, item: list[Any]) -> Summary:
        return cls(item[0], item[1], item[2], list(item[3]))


_IDX_SESSIONS = _MEMBER_FIELDS.index("sessions")
_IDX_VITALITY = _MEMBER_FIELDS.index("vitality")


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
    # Cubes this scheduler expired or merged: a summary of one still in flight
    # (distributed mode) must not bring it back.
    forgotten: list[str] = field(default_factory=list)

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
        # "invalid" lists are appended to in place: copied, so that the stored
        # value only changes when the record is written back.
        space.caches = {k: _target(v) for k, v in space.caches.items()}
        space.adapters = {k: _target(v) for k, v in space.adapters.items()}
        space.pending = {k: dict(v) for k, v in space.pending.items()}
        space.seen = list(space.seen)
        space.gone = list(space.gone)
        space.forgotten = list(space.forgotten)
        return space

    # --- cube summaries ----------------------------------------------------------

    def observe(self, usage: CubeUsage) -> bool:
        """Refreshes the summary of one cube; True if the record changed."""
        return self.observe_summary(Summary.of(usage))

    def observe_summary(self, summary: Summary) -> bool:
        """``observe`` from a Summary: what travels to the namespace's worker in
        distributed mode, where the cube's usage record lives on another one."""
        cube = summary.cube_id
        if cube in self.forgotten:
            return False  # retired by a tick; a summary sent before that is stale
        if summary.state != "active" or summary.tier not in (None, Tier.plaintext):
            gone = self.members.pop(cube, None) is not None
            if cube in self.dedupe:
                self.dedupe.remove(cube)
            if summary.state != "active":
                why = "deleted" if summary.state == "deleted" else "expired"
                gone = self._invalidate(cube, why) or gone
            return gone
        old = self.members.get(cube)
        row = summary.row
        if old == row:
            return False
        self.members[cube] = row
        created = row[IDX_CREATED] is not None
        if created and (old is None or old[IDX_CREATED] is None) and summary.tier == Tier.plaintext:
            self.dedupe.append(cube)  # new: check it for near-duplicates at the next tick
        updated_at = row[IDX_UPDATED]
        if updated_at is not None:
            for kind in ("caches", "adapters"):
                for target in getattr(self, kind).values():
                    if cube in target["cube_ids"] and updated_at > target["at"]:
                        _add(target["invalid"], cube)
        return True

    def forget(self, cube_ids: list[str] | tuple[str, ...], why: str) -> None:
        """Cubes the scheduler itself retired (expired, merged)."""
        for cube in cube_ids:
            if cube not in self.forgotten:
                _remember(self.forgotten, cube, _FORGOTTEN)
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


def _remember(ring: list[str], item: str, size: int = _RECENT) -> None:
    ring.append(item)
    if len(ring) > size:
        del ring[: len(ring) - size]


def _target(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "invalid": list(data.get("invalid", []))}
