"""Decisions: what the scheduler decided, why, and the command that carries it out.

A decision is a plain record: its kind, the cubes, the namespace, a reason with
the numbers that caused it, and the time it was taken (the tick's or the
event's, never the processor's clock). Its ``command_id`` is a UUIDv5 of those
inputs, so replaying the same events and ticks into a fresh scheduler gives
identical decisions, ids included, and a command published twice has one id
(consumers dedupe on it: it is also the command envelope's id).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

_ID_SPACE = uuid.UUID("6f1c3c8e-5a0b-4e4b-9a55-3b1f1d0c7a42")  # memgrid scheduler decisions


class Kind(StrEnum):
    activate = "activate"  # hot plaintext → a KV cache (command to inference)
    evict = "evict"  # a cold or superseded KV cache dropped (command + memory.demoted)
    train = "train"  # stable plaintext → a LoRA adapter (command to trainer)
    retire = "retire"  # an adapter whose sources changed (command + memory.demoted)
    expire_ttl = "expire_ttl"  # the vault expired a cube past its TTL
    expire_decay = "expire_decay"  # a decay-rule cube fell under the floor
    merge = "merge"  # near-duplicates merged into one new cube
    timeout = "timeout"  # a command was not confirmed in time; may be issued again


def command_id(kind: str, tenant: str, namespace: str, cube_ids: tuple[str, ...], at: float) -> str:
    """Deterministic id of a decision (and of its command)."""
    key = json.dumps([kind, tenant, namespace, sorted(cube_ids), round(at, 6)])
    return str(uuid.uuid5(_ID_SPACE, key))


@dataclass(frozen=True)
class Decision:
    kind: Kind
    tenant: str
    namespace: str
    cube_ids: tuple[str, ...]
    reason: str
    at: float  # epoch seconds (UTC): the tick or event time
    command_id: str
    target_id: str | None = None  # the cache, adapter or merged cube it concerns
    numbers: dict[str, float] = field(default_factory=dict, compare=True, hash=False)

    @classmethod
    def make(
        cls,
        kind: Kind,
        tenant: str,
        namespace: str,
        cube_ids: list[str] | tuple[str, ...],
        reason: str,
        at: float,
        *,
        target_id: str | None = None,
        numbers: dict[str, float] | None = None,
    ) -> Decision:
        ids = tuple(cube_ids)
        # A timeout or eviction is about its target as much as its cubes.
        salt = ids if target_id is None else (*ids, "target:" + target_id)
        return cls(
            kind=kind,
            tenant=tenant,
            namespace=namespace,
            cube_ids=ids,
            reason=reason,
            at=at,
            command_id=command_id(kind, tenant, namespace, salt, at),
            target_id=target_id,
            numbers={k: round(v, 6) for k, v in (numbers or {}).items()},
        )

    @property
    def when(self) -> datetime:
        return datetime.fromtimestamp(self.at, UTC)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; ``from_dict`` reads it back."""
        return {
            "kind": str(self.kind),
            "tenant": self.tenant,
            "namespace": self.namespace,
            "cube_ids": list(self.cube_ids),
            "reason": self.reason,
            "at": self.at,
            "command_id": self.command_id,
            "target_id": self.target_id,
            "numbers": dict(self.numbers),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        return cls(
            kind=Kind(data["kind"]),
            tenant=data["tenant"],
            namespace=data["namespace"],
            cube_ids=tuple(data.get("cube_ids", ())),
            reason=data.get("reason", ""),
            at=float(data["at"]),
            command_id=data["command_id"],
            target_id=data.get("target_id"),
            numbers=dict(data.get("numbers", {})),
        )

    def entry(self, max_cubes: int = 0) -> dict[str, Any]:
        """The per-cube journal entry (explain): the decision without the long
        list of its other cubes (a training batch names a thousand)."""
        body = self.to_dict()
        body["at"] = self.when.isoformat()
        body["cube_count"] = len(self.cube_ids)
        if len(self.cube_ids) > max_cubes:
            del body["cube_ids"]
        return body
