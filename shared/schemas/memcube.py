"""The MemCube: memgrid's unit of memory (MemOS §4, DESIGN.md §1).

A cube is a header plus one payload of the three tiers. Cubes are versioned and
never edited in place: an update writes version n+1 and links it to version n
with a VERSION_OF edge. The header is grouped as the MemOS paper groups it:
descriptive identifiers (flat on the cube, as clients read them most), governance
attributes, behavioural usage indicators and the lifecycle state.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


def utcnow() -> datetime:
    return datetime.now(UTC)


class Origin(StrEnum):
    """Origin signature: how the memory came to be."""

    user_input = "user_input"
    inference_extraction = "inference_extraction"
    external_retrieval = "external_retrieval"
    parameter_finetuning = "parameter_finetuning"
    import_ = "import"


class SemanticType(StrEnum):
    fact = "fact"
    preference = "preference"
    event = "event"
    message = "message"
    task_prompt = "task_prompt"
    skill = "skill"
    summary = "summary"


class Tier(StrEnum):
    plaintext = "plaintext"
    activation = "activation"
    parametric = "parametric"


class LifecycleState(StrEnum):
    """generated → activated → (merged | archived) → expired → deleted (see shared.lifecycle)."""

    generated = "generated"
    activated = "activated"
    merged = "merged"
    archived = "archived"
    expired = "expired"
    deleted = "deleted"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LifespanPolicy(_Model):
    """TTL or decay. ``expires_at`` is derived from ``ttl_seconds`` at creation."""

    ttl_seconds: int | None = Field(default=None, ge=1, le=10 * 365 * 24 * 3600)
    expires_at: AwareDatetime | None = None
    decay_half_life_seconds: int | None = Field(default=None, ge=1)


class Governance(_Model):
    access_scope: Literal["namespace", "private", "tenant"] = "namespace"
    lifespan: LifespanPolicy = LifespanPolicy()
    priority: int = Field(default=5, ge=0, le=10)
    sensitivity_tags: list[str] = Field(default_factory=list)
    watermark: str | None = None
    retention_until: AwareDatetime | None = None
    legal_hold: bool = False
    # The principal whose request created the cube (right to erasure by principal).
    created_by: str | None = None


class UsageIndicators(_Model):
    """Kept by the scheduler from memory.accessed events; read-only to clients."""

    access_count: int = Field(default=0, ge=0)
    last_accessed_at: AwareDatetime | None = None
    decayed_frequency: float = Field(default=0.0, ge=0.0)
    hotness: float = Field(default=0.0, ge=0.0)
    stability: float = Field(default=0.0, ge=0.0)


class Lifecycle(_Model):
    state: LifecycleState = LifecycleState.generated
    reason: str = "created"
    changed_at: AwareDatetime = Field(default_factory=utcnow)


class PlaintextPayload(_Model):
    tier: Literal[Tier.plaintext] = Tier.plaintext
    text: str
    embedding_model: str | None = None


class ActivationPayload(_Model):
    """A KV cache built from plaintext cubes; the tensors live in the BlobStore."""

    tier: Literal[Tier.activation] = Tier.activation
    blob_key: str
    manifest_key: str
    model_fingerprint: str
    token_count: int = Field(ge=0)
    source_refs: list[str] = Field(default_factory=list, description="cube_id@version")


class ParametricPayload(_Model):
    """A LoRA adapter; ``adapter_id`` is immutable (name@version+digest)."""

    tier: Literal[Tier.parametric] = Tier.parametric
    adapter_id: str
    blob_key: str
    manifest_key: str
    base_model_fingerprint: str
    source_refs: list[str] = Field(default_factory=list, description="cube_id@version")


Payload = Annotated[
    PlaintextPayload | ActivationPayload | ParametricPayload, Field(discriminator="tier")
]


class MemCube(_Model):
    # descriptive identifiers
    id: str
    version: int = Field(ge=1)
    tenant: str
    namespace: str
    created_at: AwareDatetime
    updated_at: AwareDatetime
    event_time: AwareDatetime | None = None
    origin: Origin = Origin.user_input
    semantic_type: SemanticType = SemanticType.fact
    tags: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    # the other header groups
    governance: Governance = Governance()
    usage: UsageIndicators = UsageIndicators()
    lifecycle: Lifecycle = Lifecycle()
    payload: Payload

    @property
    def tier(self) -> Tier:
        return self.payload.tier

    @property
    def text(self) -> str | None:
        return self.payload.text if isinstance(self.payload, PlaintextPayload) else None

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"

    @property
    def searchable(self) -> bool:
        return self.lifecycle.state in (LifecycleState.generated, LifecycleState.activated)


class EdgeKind(StrEnum):
    VERSION_OF = "VERSION_OF"
    DERIVED_FROM = "DERIVED_FROM"
    MERGED_INTO = "MERGED_INTO"
    PROMOTED_TO = "PROMOTED_TO"
    DEMOTED_TO = "DEMOTED_TO"


class Edge(_Model):
    """Provenance between cube versions: ``src`` -[kind]-> ``dst`` (refs are id@version)."""

    kind: EdgeKind
    src: str
    dst: str
    created_at: AwareDatetime = Field(default_factory=utcnow)
    reason: str = ""
