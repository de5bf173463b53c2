"""Request/response models of API v1 and the records behind them.

Clients depend on these names: add fields, never rename. Size limits that depend
on settings are checked in the interface (413); the bounds here are the hard ones.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from shared.schemas.memcube import MemCube, Origin, SemanticType

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,127}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- records kept by the vault -------------------------------------------------


class TenantRecord(_Strict):
    id: str
    name: str
    created_at: AwareDatetime


class NamespacePolicy(_Strict):
    """Governance rules of one namespace (docs/compliance.md).

    ``pii``: what ingest does with detected personal data and secrets: ``allow``
    (store, tag the cube), ``redact`` (replace each finding by a redaction marker,
    tag) or ``reject`` (422, nothing stored). ``retention_days``: the longest a
    memory may live in the namespace. ``legal_hold``: nothing in the namespace
    expires, is deleted or erased while it is set (409 ``legal_hold``).
    """

    pii: Literal["allow", "redact", "reject"] = "allow"
    retention_days: int | None = Field(default=None, ge=1, le=100 * 366)
    legal_hold: bool = False
    legal_hold_reason: str = Field(default="", max_length=2000)


class NamespaceRecord(_Strict):
    id: str
    tenant: str
    name: str
    description: str = ""
    created_at: AwareDatetime
    policy: NamespacePolicy = NamespacePolicy()


class ApiKeyRecord(_Strict):
    """An API key as stored: only the sha256 of the secret, never the key."""

    prefix: str = Field(description="public, non-secret part used to find the record")
    key_hash: str
    tenant: str
    principal: str
    role: str = "tenant_admin"
    created_at: AwareDatetime
    expires_at: AwareDatetime | None = None
    revoked: bool = False
    # The key's own scope (shared.schemas.access): None = the principal's grants.
    namespaces: list[str] | None = None
    permissions: list[str] | None = None


# --- requests ------------------------------------------------------------------


class TenantCreate(_Strict):
    name: str = Field(pattern=NAME_PATTERN)


class TenantCreated(_Strict):
    id: str
    name: str
    api_key: str


class NamespaceCreate(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = Field(default="", max_length=2000)


class NamespaceList(_Strict):
    namespaces: list[NamespaceRecord]


class ChatMessage(_Strict):
    id: str = Field(min_length=1, max_length=256)
    role: str = Field(min_length=1, max_length=64)
    name: str | None = Field(default=None, max_length=256)
    content: str = Field(min_length=1)
    timestamp: AwareDatetime | None = None

    @field_validator("timestamp", mode="before")
    @classmethod
    def _naive_is_utc(cls, v: Any) -> Any:
        return _assume_utc(v)


class MemoryCreate(_Strict):
    """Either ``text`` (one cube) or ``messages`` (one cube per message), not both."""

    text: str | None = Field(default=None, min_length=1)
    messages: list[ChatMessage] | None = Field(default=None, min_length=1)
    metadata: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    semantic_type: SemanticType | None = None
    event_time: AwareDatetime | None = None
    ttl_seconds: int | None = Field(default=None, ge=1, le=10 * 365 * 24 * 3600)

    @field_validator("event_time", mode="before")
    @classmethod
    def _naive_is_utc(cls, v: Any) -> Any:
        return _assume_utc(v)

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        for t in v:
            if not 1 <= len(t) <= 128:
                raise ValueError("each tag must be 1-128 characters")
        return v


class MemoryPatch(_Strict):
    text: str | None = Field(default=None, min_length=1)
    metadata: dict[str, Any] | None = None
    tags: list[str] | None = None


class SearchFilters(_Strict):
    """Metadata filters; all given conditions must hold."""

    tags_any: list[str] | None = None
    tags_all: list[str] | None = None
    semantic_type: list[SemanticType] | None = None
    origin: list[Origin] | None = None
    event_time_from: AwareDatetime | None = None
    event_time_to: AwareDatetime | None = None
    metadata: dict[str, str | int | float | bool] | None = Field(
        default=None, description="equality on top-level metadata keys"
    )


class SearchRequest(_Strict):
    query: str = Field(min_length=1)
    namespaces: list[str] = Field(
        default_factory=list, description="empty: every namespace the caller may read"
    )
    top_k: int = Field(default=10, ge=1, le=1000)
    filters: SearchFilters | None = None
    session_id: str | None = Field(
        default=None,
        max_length=256,
        description="the conversation or agent run searching; counted in usage (stability)",
    )


class SearchHit(_Strict):
    id: str
    namespace: str
    text: str
    score: float
    sources: list[str]
    metadata: dict[str, Any]
    event_time: AwareDatetime | None
    version: int


class SearchResponse(_Strict):
    results: list[SearchHit]


class AccessItem(_Strict):
    cube_id: str = Field(min_length=1, max_length=256)
    version: int = Field(ge=1)
    rank: int = Field(ge=1)
    score: float = 0.0


class AccessReport(_Strict):
    """Memories a reader actually used, for memory.accessed (the scheduler's usage).

    A search publishes its own accesses (channel ``search``). Inference retrieves
    with ``SearchRequest`` but publishes nothing then (it may drop hits that do not
    fit the token budget); it reports the memories it put in the prompt with this,
    channel ``inference``, one ``query_id`` per request."""

    channel: Literal["inference"] = "inference"
    query_id: str = Field(min_length=1, max_length=256)
    items: list[AccessItem] = Field(min_length=1, max_length=1000)
    session_id: str | None = Field(default=None, max_length=256)


class MemoriesResponse(_Strict):
    memories: list[MemCube]


class HistoryResponse(_Strict):
    versions: list[MemCube]


class LineageEdge(_Strict):
    kind: str
    src: str
    dst: str
    reason: str = ""


class LineageResponse(_Strict):
    cube: str
    edges: list[LineageEdge]


# --- what the interface hands the vault ---------------------------------------


class CubeDraft(_Strict):
    """A cube to create, already read (MemReader) but not yet embedded or stored."""

    text: str
    semantic_type: SemanticType = SemanticType.fact
    origin: Origin = Origin.user_input
    event_time: datetime | None = None
    tags: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    ttl_seconds: int | None = None
    embedding_text: str | None = Field(
        default=None, description="text to embed when it differs from text (context)"
    )


class CubeDraftBatch(_Strict):
    """What the interface sends the vault's internal API to create cubes."""

    drafts: list[CubeDraft] = Field(min_length=1)


class Caller(_Strict):
    """Who is asking, as established by authentication.

    ``key_prefix`` names the API key used (None for internal system callers);
    ``key_namespaces`` / ``key_permissions`` are the key's own scope (None: not
    narrowed). The vault intersects them with the principal's grants
    (docs/access-control.md)."""

    tenant: str
    principal: str
    role: str = "tenant_admin"
    key_prefix: str | None = None
    key_namespaces: list[str] | None = None
    key_permissions: list[str] | None = None


def _assume_utc(v: Any) -> Any:
    """Clients often send naive timestamps; memgrid reads them as UTC."""
    from datetime import UTC

    if isinstance(v, datetime) and v.tzinfo is None:
        return v.replace(tzinfo=UTC)
    if isinstance(v, str) and v and not any(c in v[10:] for c in "Zz+-"):
        try:
            return datetime.fromisoformat(v).replace(tzinfo=UTC)
        except ValueError:
            return v
    return v
