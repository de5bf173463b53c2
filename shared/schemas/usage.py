"""``GET /v1/memories/{id}/usage``: a memory's usage as the scheduler sees it.

The scheduler's explain view (services.scheduler.engine.explain, or the faust
app's ``/usage/{cube_id}``) is read into ``MemoryUsage``. Unknown fields are
ignored rather than refused: the scheduler may add to its view before the
interface knows the field, and that must not turn a read into an error. The
fields the scheduler computes only in some modes (scores, caches, adapters,
decisions) are optional or empty by default.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.schemas.memcube import LifecycleState, MemCube


class _View(BaseModel):
    model_config = ConfigDict(extra="ignore", validate_by_name=True, validate_by_alias=True)


class UsageScores(_View):
    """At ``MemoryUsage.as_of``; formulas and defaults in docs/scheduler.md."""

    decayed_frequency: float = Field(description="accesses, each halved every half_life_s")
    hotness: float = Field(description="decayed frequency plus a recency bonus")
    stability: float = Field(ge=0, le=1, description="age, quiet since last edit, sessions")
    vitality: float | None = Field(
        default=None, description="decay-rule memories only; expired under the decay floor"
    )


class UsageDecision(_View):
    """One decision of the scheduler that concerns the memory, with its reason."""

    kind: str = Field(
        description="activate, evict, train, retire, expire_ttl, expire_decay, merge, timeout"
    )
    reason: str
    numbers: dict[str, int | float] = Field(
        default_factory=dict, description="the values behind it"
    )
    at: datetime = Field(description="the scheduler's tick time")
    command_id: str = Field(description="id of the command it sent (deterministic)")
    target_id: str | None = Field(default=None, description="the cache, adapter or merged memory")
    namespace: str = ""
    cube_count: int = Field(default=1, description="memories the decision covers")


class MemoryUsage(_View):
    id: str = Field(validation_alias="cube_id", description="the memory")
    namespace: str | None = None
    tracked: bool = Field(
        default=True,
        description="false: the scheduler has no record of the memory yet (counters are zero)",
    )
    access_count: int = 0
    first_access: datetime | None = None
    last_access: datetime | None = None
    distinct_principals: int = 0
    distinct_sessions: int = 0
    members_capped: bool = Field(
        default=False, description="distinct counts reached the tracking cap: read 'at least'"
    )
    version: int = Field(default=0, description="highest version the scheduler has seen")
    state: str = Field(
        default="active", description="as the scheduler sees it: active, merged, expired, deleted"
    )
    tier: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    expires_at: datetime | None = None
    expired_at: datetime | None = None
    deleted_at: datetime | None = None
    decay_half_life_s: float | None = None
    scores: UsageScores | None = Field(
        default=None, description="null when the scheduler does not compute them (distributed)"
    )
    caches: list[str] = Field(default_factory=list, description="KV caches holding the memory")
    adapters: list[str] = Field(default_factory=list, description="adapters trained on it")
    decisions: list[UsageDecision] = Field(default_factory=list, description="oldest first")
    as_of: datetime | None = Field(default=None, description="the time the scores are for")

    @classmethod
    def from_view(cls, view: dict[str, Any]) -> MemoryUsage:
        """Reads the scheduler's view; raises pydantic.ValidationError for a bad one."""
        return cls.model_validate(view)

    @classmethod
    def untracked(cls, cube: MemCube) -> MemoryUsage:
        """A memory the scheduler has not seen (yet): zero counters, no decisions.
        Its scores are zero by their formulas at any time (no access, no session),
        hence no ``as_of``."""
        retired = {LifecycleState.merged, LifecycleState.expired, LifecycleState.deleted}
        state = cube.lifecycle.state
        return cls(
            id=cube.id,
            namespace=cube.namespace,
            tracked=False,
            version=cube.version,
            state=str(state) if state in retired else "active",
            tier=str(cube.tier),
            created_at=cube.created_at,
            updated_at=cube.updated_at,
            expires_at=cube.governance.lifespan.expires_at,
            decay_half_life_s=cube.governance.lifespan.decay_half_life_seconds,
            scores=UsageScores(decayed_frequency=0.0, hotness=0.0, stability=0.0),
        )
