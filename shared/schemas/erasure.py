"""Right to erasure (docs/compliance.md#right-to-erasure): request, report, and the
two rules every GraphStore adapter applies the same way.

* ``ErasureSubject.matches`` decides whether one stored cube version is about the
  subject. The adapters only narrow the candidates with an index-free substring
  test on the stored JSON; this predicate has the last word, so SQLite and Neo4j
  cannot disagree on what "about the subject" means.
* ``content_free`` is what an erased version becomes: a skeleton with its id,
  version, tenant, namespace, times and a ``deleted`` lifecycle (reason
  ``erased``), and nothing the subject could be found in. The skeleton stays so
  provenance edges (VERSION_OF, DERIVED_FROM) still resolve: "which KV caches and
  adapters were built from this memory" must keep an answer after the erasure.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from pydantic_core import to_json

from shared.schemas.memcube import (
    Governance,
    Lifecycle,
    LifecycleState,
    MemCube,
    PlaintextPayload,
    Tier,
)

ERASED = "erased"  # the lifecycle reason of every erased version, and of its events

SubjectKind = Literal["person", "source", "principal"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErasureSubject(_Strict):
    """Whose data to erase. ``person``: an identifier (a name, an email) found in
    the text, case-insensitively, or equal to a metadata value (``speaker``,
    ``subject``...); ``source``: a source id in ``sources``; ``principal``: the
    principal that created the memories."""

    kind: SubjectKind
    value: str = Field(min_length=1, max_length=1000)

    def digest(self) -> str:
        """sha256 of kind and value: reports and events name the subject by this,
        never by the value (the audit log must not keep what was erased)."""
        return hashlib.sha256(f"{self.kind}\x00{self.value}".encode()).hexdigest()

    def needle(self) -> str:
        """A casefolded substring every matching cube's stored JSON contains (the
        value as JSON writes it inside a string); the adapters' pre-filter."""
        return to_json(self.value).decode()[1:-1].casefold()

    def matches(self, cube: MemCube) -> bool:
        if cube.tier != Tier.plaintext:
            return False
        if self.kind == "source":
            return self.value in cube.sources
        if self.kind == "principal":
            return cube.governance.created_by == self.value
        folded = self.value.casefold()
        if folded in (cube.text or "").casefold():
            return True
        return any(folded == v.casefold() for v in _scalars(cube.metadata))


def _scalars(value: Any) -> list[str]:
    """Every string in a metadata value, nested lists and objects included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _scalars(v)]
    if isinstance(value, list):
        return [s for v in value for s in _scalars(v)]
    return []


def content_free(cube: MemCube, now: datetime) -> MemCube:
    """The erased skeleton of ``cube`` (see the module docstring)."""
    return cube.model_copy(
        update={
            "event_time": None,
            "tags": [],
            "sources": [],
            "metadata": {},
            "governance": Governance(),
            "lifecycle": Lifecycle(state=LifecycleState.deleted, reason=ERASED, changed_at=now),
            "payload": PlaintextPayload(text=""),
        }
    )


class ErasureRequest(_Strict):
    subject: ErasureSubject
    namespaces: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="namespace ids; default: every namespace of the tenant",
    )


class ErasureReport(_Strict):
    """What one erasure did. Never holds the subject's value, only its digest."""

    id: str
    tenant: str
    subject_kind: SubjectKind
    subject_digest: str
    namespaces: list[str]
    cube_ids: list[str] = Field(description="memories whose every version was purged")
    versions_purged: int = Field(ge=0)
    kv_caches_evicted: list[str] = Field(
        default_factory=list, description="KV caches (manifest keys) built from them"
    )
    adapters_stale: list[str] = Field(
        default_factory=list,
        description="adapters distilled from them: marked stale now, withdrawn and "
        "retrained without them by the trainer, their files deleted",
    )
    requested_by: str
    created_at: AwareDatetime
