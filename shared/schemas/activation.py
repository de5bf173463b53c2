"""Activation memory (KV caches) over HTTP: the public build endpoint and the
vault's internal record of which cache is current (docs/inference.md#activation)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from shared.schemas.memcube import ActivationPayload, MemCube


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ActivationBuildRequest(_Strict):
    """``POST /v1/namespaces/{id}/activation``. The cache holds, in this order, the
    memories named by ``cube_ids``, else the top ``top_k`` memories retrieved for
    ``query`` (what plaintext injection would pick for it); one of the two is needed."""

    cube_ids: list[str] | None = Field(default=None, min_length=1, max_length=256)
    query: str | None = Field(default=None, min_length=1, max_length=4000)
    top_k: int | None = Field(default=None, ge=1, le=256)
    token_budget: int | None = Field(default=None, ge=1, description="memory tokens at most")


class ActivationBuilt(_Strict):
    cache_id: str = Field(description="the manifest's blob key; the target_id of the events")
    namespace: str
    model: str
    token_count: int
    sources: list[str] = Field(description="cube_id@version, in the cache's order")
    record: str | None = Field(
        default=None, description="the vault's activation cube version recording it (id@version)"
    )


# --- the vault's internal API ------------------------------------------------------


class ActivationRecordRequest(_Strict):
    payload: ActivationPayload
    reason: str = Field(max_length=2000)
    command_id: str | None = None


class ActivationDemoteRequest(_Strict):
    target_id: str
    reason: str = Field(max_length=2000)


class ActivationCurrent(_Strict):
    cube: MemCube | None = None
