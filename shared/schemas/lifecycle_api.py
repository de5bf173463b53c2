"""Bodies of the vault's lifecycle operations on its internal HTTP API.

These are system operations (the scheduler's, for every tenant), so the tenant
travels in the path rather than in the caller headers. The bounds are shared
with the vault, which checks them again for in-process callers.
"""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared.lifecycle import MAX_REASON_CHARS
from shared.schemas.memcube import LifecycleState

MAX_EXPIRE_BATCH = 10_000  # cubes one expire_due call may expire
MAX_MERGE = 100  # cubes one merge may combine
MAX_NEAR = 100  # near-duplicates one call may return


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExpireDueRequest(_Strict):
    now: AwareDatetime
    limit: int = Field(default=1000, ge=1, le=MAX_EXPIRE_BATCH)


class ExpireDueResponse(_Strict):
    expired: list[str]


class TransitionRequest(_Strict):
    to: LifecycleState
    reason: str = Field(min_length=1, max_length=MAX_REASON_CHARS)


class MergeRequest(_Strict):
    cube_ids: list[str] = Field(min_length=2, max_length=MAX_MERGE)
    reason: str = Field(min_length=1, max_length=MAX_REASON_CHARS)


class NearDuplicate(_Strict):
    id: str
    score: float


class NearDuplicatesResponse(_Strict):
    duplicates: list[NearDuplicate]
