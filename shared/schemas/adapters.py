"""Parametric memory records: LoRA adapters distilled by the trainer (docs/trainer.md).

The adapter files live in the BlobStore (``shared.lora``); the vault records each
adapter in the graph as a version of the namespace's parametric cube
``lora_<namespace>`` with DERIVED_FROM edges to the source cube versions, so
"which adapters contain this cube?" is an edge lookup. ``AdapterRecord`` is the
view the API, the CLI and the trainer share.

States: ``serving`` (the namespace's current adapter, inference loads it),
``stale`` (a source was updated, deleted, expired or erased; still served until
the trainer's policy acts), ``withdrawn`` (no longer served: retired, stale under
the ``withdraw`` policy, or its replacement failed), ``superseded`` (a newer
adapter of the namespace took over).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.schemas.memcube import ParametricPayload


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AdapterState(StrEnum):
    serving = "serving"
    stale = "stale"
    withdrawn = "withdrawn"
    superseded = "superseded"


class AdapterDetails(_Strict):
    """What a training run recorded beside the files (also in the manifest)."""

    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    data_size: int = Field(default=0, ge=0, description="training examples")
    duration_s: float = Field(default=0.0, ge=0)
    command_id: str | None = Field(default=None, description="the command it carried out")


class AdapterRecord(_Strict):
    id: str = Field(description="immutable adapter id, name@version+digest")
    tenant: str
    namespace: str
    state: AdapterState
    reason: str = Field(description="why it is in this state")
    created_at: str
    updated_at: str
    base_model: str = Field(description="the base model's fingerprint, short form")
    manifest_key: str
    sources: list[str] = Field(description="cube_id@version it was distilled from")
    stale_sources: list[str] = Field(
        default_factory=list, description="sources updated, deleted, expired or erased since"
    )
    details: AdapterDetails = Field(default_factory=AdapterDetails)
    record: str = Field(description="the graph cube version holding this state (id@version)")


class AdapterList(_Strict):
    adapters: list[AdapterRecord]


class AdapterTrainRequest(_Strict):
    """``POST /v1/namespaces/{id}/adapters``: distil these plaintext memories of the
    namespace into a new adapter (a TrainAdapter command, as the scheduler sends)."""

    cube_ids: list[str] = Field(min_length=1, max_length=1024)
    reason: str = Field(default="requested through the API", max_length=500)


class AdapterTrainAccepted(_Strict):
    command_id: str
    namespace: str
    cube_ids: list[str]


# --- the vault's internal API ------------------------------------------------------


class AdapterRecordRequest(_Strict):
    namespace: str
    payload: ParametricPayload
    details: AdapterDetails
    reason: str


class AdapterStateRequest(_Strict):
    state: AdapterState
    reason: str
    stale_sources: list[str] = Field(default_factory=list)
