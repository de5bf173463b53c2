"""Models of the compliance API: namespace policy changes and watermarked exports.

See docs/compliance.md. Clients depend on these names: add fields, never rename.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared.schemas.api import NamespacePolicy


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NamespacePolicyPatch(_Strict):
    """``PATCH /v1/namespaces/{id}/policy``: only the fields given change.

    ``retention_days: null`` removes the retention limit."""

    pii: Literal["allow", "redact", "reject"] | None = None
    retention_days: int | None = Field(default=None, ge=1, le=100 * 366)
    legal_hold: bool | None = None
    legal_hold_reason: str | None = Field(default=None, max_length=2000)

    def apply(self, policy: NamespacePolicy) -> NamespacePolicy:
        given = {k: getattr(self, k) for k in self.model_fields_set}
        for name in ("pii", "legal_hold", "legal_hold_reason"):
            if given.get(name, 0) is None:  # null means "unchanged" for these
                given.pop(name)
        return NamespacePolicy.model_validate({**policy.model_dump(), **given})


class ExportRecord(_Strict):
    """What the vault keeps of an export: who took what, when (never the text)."""

    id: str
    tenant: str
    namespace: str
    principal: str
    created_at: AwareDatetime
    count: int = Field(ge=0)


class ExportedMemory(_Strict):
    id: str
    version: int
    text: str = Field(description="watermarked: carries the export id invisibly")
    tags: list[str]
    sensitivity_tags: list[str]
    event_time: AwareDatetime | None
    created_at: AwareDatetime
    metadata: dict[str, Any]


class NamespaceExport(_Strict):
    export: ExportRecord
    memories: list[ExportedMemory]
