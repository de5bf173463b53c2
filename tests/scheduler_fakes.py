"""Fakes for the scheduler's tests: the vault's lifecycle operations, event makers,
and stand-ins for inference and trainer that confirm the scheduler's commands."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from services.scheduler.engine import Outgoing
from shared.errors import IllegalTransition, NotFound
from shared.schemas.commands import BuildActivation, TrainAdapter
from shared.schemas.events import (
    EventEnvelope,
    MemoryAccessed,
    MemoryCreated,
    MemoryDeleted,
    MemoryExpired,
    MemoryPromoted,
    MemoryUpdated,
    make_event,
)
from shared.schemas.memcube import LifecycleState, MemCube, PlaintextPayload, Tier

T0 = datetime(2025, 1, 1, tzinfo=UTC)
TENANT = "t1"


def _id(*parts: object) -> str:
    """Deterministic event ids: a replayed log must be the same log."""
    return str(uuid.uuid5(uuid.NAMESPACE_OID, "/".join(map(str, parts))))


def created(
    cube: str,
    ns: str,
    at: datetime = T0,
    *,
    ttl_s: float | None = None,
    decay_s: int | None = None,
    tokens: int | None = 64,
) -> EventEnvelope:
    data = MemoryCreated(
        cube_id=cube,
        version=1,
        tier=Tier.plaintext,
        origin="user_input",
        semantic_type="fact",
        expires_at=None if ttl_s is None else at + timedelta(seconds=ttl_s),
        decay_half_life_seconds=decay_s,
        token_estimate=tokens,
    )
    event = make_event(data, source="/test", tenant=TENANT, namespace=ns, time=at)
    return event.model_copy(update={"id": _id("created", cube)})


def accessed(
    cube: str, ns: str, at: datetime, *, session: str | None = None, n: int = 0
) -> EventEnvelope:
    data = MemoryAccessed(
        cube_id=cube,
        version=1,
        channel="search",
        query_id="q",
        rank=1,
        score=0.5,
        principal="p1",
        session_id=session,
    )
    event = make_event(data, source="/test", tenant=TENANT, namespace=ns, time=at)
    return event.model_copy(update={"id": _id("accessed", cube, at.isoformat(), n)})


def updated(
    cube: str, ns: str, at: datetime, version: int = 2, changed: Sequence[str] = ("text",)
) -> EventEnvelope:
    data = MemoryUpdated(
        cube_id=cube, version=version, previous_version=version - 1, changed=list(changed)
    )
    event = make_event(data, source="/test", tenant=TENANT, namespace=ns, time=at)
    return event.model_copy(update={"id": _id("updated", cube, version)})


def deleted(cube: str, ns: str, at: datetime) -> EventEnvelope:
    data = MemoryDeleted(cube_id=cube, version=2)
    event = make_event(data, source="/test", tenant=TENANT, namespace=ns, time=at)
    return event.model_copy(update={"id": _id("deleted", cube)})


def promoted(
    cube_ids: Sequence[str], ns: str, to: Tier, target: str, at: datetime, command_id: str | None
) -> EventEnvelope:
    data = MemoryPromoted(
        cube_ids=list(cube_ids),
        from_tier=Tier.plaintext,
        to_tier=to,
        target_id=target,
        reason="built",
        command_id=command_id,
    )
    event = make_event(data, source="/test", tenant=TENANT, namespace=ns, time=at)
    return event.model_copy(update={"id": _id("promoted", target)})


def confirmations(messages: list[Outgoing], at: datetime) -> list[EventEnvelope]:
    """What inference and trainer would publish once they did the work, plus the
    scheduler's own memory.demoted as its subscription would see it."""
    out = []
    for message in messages:
        data = message.event.data
        ns = message.event.namespace or ""
        cmd = data.get("command_id", "")
        if message.topic == BuildActivation.topic:
            out.append(promoted(data["cube_ids"], ns, Tier.activation, "kv-" + cmd[:8], at, cmd))
        elif message.topic == TrainAdapter.topic:
            out.append(promoted(data["cube_ids"], ns, Tier.parametric, "lora-" + cmd[:8], at, cmd))
        elif message.topic == "memory.demoted":
            out.append(message.event)
    return out


class FakeLifecycleVault:
    """The four lifecycle operations over an in-memory table of cubes; expired
    events go to ``outbox`` (the test feeds them back, as the bus would)."""

    def __init__(self) -> None:
        self.cubes: dict[str, dict[str, object]] = {}  # id -> namespace, state, expires
        self.duplicates: dict[str, list[tuple[str, float]]] = {}
        self.outbox: list[EventEnvelope] = []
        self.calls: list[tuple[str, ...]] = []

    def add(self, cube: str, ns: str, expires_at: datetime | None = None) -> None:
        self.cubes[cube] = {"ns": ns, "state": LifecycleState.generated, "expires": expires_at}

    def _cube(self, cube: str, ns: str) -> MemCube:
        return MemCube(
            id=cube,
            version=1,
            tenant=TENANT,
            namespace=ns,
            created_at=T0,
            updated_at=T0,
            payload=PlaintextPayload(text=cube),
        )

    def _expire(self, cube: str, reason: str, at: datetime) -> None:
        row = self.cubes[cube]
        previous = row["state"]
        row["state"] = LifecycleState.expired
        data = MemoryExpired(cube_id=cube, version=1, reason=reason, previous_state=previous)
        event = make_event(data, source="/vault", tenant=TENANT, namespace=str(row["ns"]), time=at)
        self.outbox.append(event.model_copy(update={"id": _id("expired", cube)}))

    def expire_due(self, now: datetime, limit: int = 1000) -> list[str]:
        self.calls.append(("expire_due", now.isoformat()))
        due = sorted(
            c
            for c, row in self.cubes.items()
            if row["expires"] is not None
            and row["expires"] <= now  # type: ignore[operator]
            and row["state"] == LifecycleState.generated
        )[:limit]
        for cube in due:
            self._expire(cube, "ttl", now)
        return due

    def transition(self, tenant: str, cube_id: str, to: LifecycleState, reason: str) -> MemCube:
        self.calls.append(("transition", cube_id, str(to)))
        row = self.cubes.get(cube_id)
        if row is None:
            raise NotFound(f"no cube {cube_id}")
        if row["state"] != LifecycleState.generated:
            raise IllegalTransition(str(row["state"]), str(to))
        self._expire(cube_id, reason, T0)
        return self._cube(cube_id, str(row["ns"]))

    def merge(self, tenant: str, cube_ids: Sequence[str], reason: str) -> MemCube:
        self.calls.append(("merge", *cube_ids))
        ns = str(self.cubes[cube_ids[0]]["ns"])
        for cube in cube_ids:
            self.cubes[cube]["state"] = LifecycleState.merged
        new = "merged-" + "+".join(cube_ids)
        self.add(new, ns)
        return self._cube(new, ns)

    def near_duplicates(
        self, tenant: str, cube_id: str, threshold: float, limit: int = 5
    ) -> list[tuple[str, float]]:
        self.calls.append(("near_duplicates", cube_id))
        return [(c, s) for c, s in self.duplicates.get(cube_id, []) if s >= threshold][:limit]
