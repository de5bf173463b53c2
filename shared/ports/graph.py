"""GraphStore: cubes (one record per version), provenance edges, indexes, outbox.

Contract, for every adapter (tests/contract/test_graph_store.py checks it):

* Every read takes the tenant and filters on it; a cube of another tenant is
  indistinguishable from one that does not exist.
* ``write`` is atomic: the new cube versions, the superseded markers, the edges
  and the outbox events are all committed, or none is. Events are never lost
  between the write and publishing because they are committed with it
  (transactional outbox) and published afterwards by the vault's relay.
* Exactly one version of a cube is current; search only sees current versions
  in a searchable lifecycle state (generated, activated).
* Vectors are L2-normalised float32; vector scores are cosine similarities.
* Keyword scores are "higher is better" (BM25 negated where the engine returns it
  the other way round).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

import numpy as np

from shared.schemas.api import ApiKeyRecord, NamespaceRecord, SearchFilters, TenantRecord
from shared.schemas.compliance import ExportRecord
from shared.schemas.erasure import ErasureReport, ErasureSubject
from shared.schemas.events import EventEnvelope
from shared.schemas.memcube import Edge, MemCube


@dataclass
class CubeWrite:
    """A cube version to store, with its embedding (None for non-plaintext tiers)."""

    cube: MemCube
    embedding: np.ndarray | None = None
    index_text: str | None = None  # text for the keyword index when it differs


@dataclass
class WriteBatch:
    cubes: list[CubeWrite] = field(default_factory=list)
    superseded: list[tuple[str, int]] = field(default_factory=list)  # (cube_id, version)
    edges: list[Edge] = field(default_factory=list)
    events: list[EventEnvelope] = field(default_factory=list)


@dataclass(frozen=True)
class OutboxItem:
    seq: int
    topic: str
    event: EventEnvelope


@dataclass(frozen=True)
class Scored:
    cube_id: str
    score: float


@runtime_checkable
class GraphStore(Protocol):
    # tenants, namespaces, keys
    def create_tenant(self, tenant: TenantRecord, key: ApiKeyRecord) -> None: ...
    def get_tenant(self, tenant_id: str) -> TenantRecord | None: ...
    def find_api_key(self, prefix: str) -> ApiKeyRecord | None: ...
    def create_namespace(self, ns: NamespaceRecord) -> None:
        """Raises shared.errors.Conflict when the tenant already has that name."""
        ...

    def get_namespace(self, tenant: str, namespace_id: str) -> NamespaceRecord | None: ...

    # principals, teams and grants: JSON documents by (tenant, kind, id); API keys
    def put_access_doc(self, tenant: str, kind: str, doc_id: str, body: str) -> None:
        """Creates or replaces the document."""
        ...

    def get_access_doc(self, tenant: str, kind: str, doc_id: str) -> str | None: ...
    def list_access_docs(self, tenant: str, kind: str) -> list[str]:
        """The tenant's documents of that kind, ordered by id."""
        ...

    def delete_access_doc(self, tenant: str, kind: str, doc_id: str) -> bool: ...
    def put_api_key(self, key: ApiKeyRecord) -> None:
        """Creates or replaces a key record; a prefix of another tenant is left alone."""
        ...

    def list_api_keys(self, tenant: str, principal: str) -> list[ApiKeyRecord]: ...
    def list_namespaces(self, tenant: str) -> list[NamespaceRecord]: ...

    # namespace policies, retention, exports (docs/compliance.md)
    def update_namespace(self, ns: NamespaceRecord) -> bool:
        """Replaces the stored record of ``ns`` (same tenant and id; the name never
        changes); False when the tenant has no such namespace."""
        ...

    def namespaces_with_retention(self) -> list[NamespaceRecord]:
        """Every namespace, of every tenant, whose policy sets ``retention_days``."""
        ...

    def namespace_cubes(
        self,
        tenant: str,
        namespace: str,
        created_before: datetime | None = None,
        limit: int = 1000,
    ) -> list[MemCube]:
        """Current, searchable plaintext cubes of the namespace (created at or before
        ``created_before`` when given), oldest first."""
        ...

    def insert_export(self, record: ExportRecord) -> None: ...
    def get_export(self, tenant: str, export_id: str) -> ExportRecord | None: ...

    # cubes
    def write(self, batch: WriteBatch) -> None: ...
    def get_cube(self, tenant: str, cube_id: str, version: int | None = None) -> MemCube | None:
        """The given version, or the current one; tombstoned cubes are returned too."""
        ...

    def get_current(self, tenant: str, cube_ids: Sequence[str]) -> list[MemCube]:
        """Current versions of the given ids that belong to the tenant, in input order."""
        ...

    def get_embedding(
        self, tenant: str, cube_id: str, version: int | None = None
    ) -> np.ndarray | None:
        """The stored embedding (float32, L2-normalised) of the given or the current
        version; None when the cube is unknown to this tenant or has no vector."""
        ...

    def history(self, tenant: str, cube_id: str) -> list[MemCube]:
        """Every stored version, oldest first; empty when unknown to this tenant."""
        ...

    def edges(self, tenant: str, ref_prefix: str) -> list[Edge]:
        """Edges whose src or dst is the cube ``ref_prefix`` (``id`` matches all versions)."""
        ...

    def vector_search(
        self,
        tenant: str,
        namespaces: Sequence[str],
        vector: np.ndarray,
        k: int,
        filters: SearchFilters | None = None,
    ) -> list[Scored]: ...

    def text_search(
        self,
        tenant: str,
        namespaces: Sequence[str],
        query: str,
        k: int,
        filters: SearchFilters | None = None,
    ) -> list[Scored]: ...

    def due_for_expiry(self, now: datetime, limit: int = 1000) -> list[MemCube]:
        """Current, searchable cubes whose lifespan ended at or before ``now``."""
        ...

    # right to erasure (docs/compliance.md#right-to-erasure)
    def erasure_candidates(
        self, tenant: str, namespaces: Sequence[str], subject: ErasureSubject
    ) -> list[str]:
        """Ids of the tenant's plaintext cubes in ``namespaces`` with ANY version
        about ``subject`` (ErasureSubject.matches), oldest first."""
        ...

    def erase(
        self,
        tenant: str,
        cube_ids: Sequence[str],
        batch: WriteBatch,
        now: datetime,
        report: ErasureReport,
    ) -> int:
        """One transaction: ``batch`` (tombstones, events), then every stored version
        of ``cube_ids`` made content-free (shared.schemas.erasure.content_free) and
        out of every index, the published outbox events about them dropped, the
        report stored. Returns how many versions still had content."""
        ...

    def get_erasure(self, tenant: str, erasure_id: str) -> ErasureReport | None: ...

    # transactional outbox
    def outbox_pending(self, limit: int = 500) -> list[OutboxItem]: ...
    def outbox_ack(self, seqs: Sequence[int]) -> None: ...

    def ping(self) -> None:
        """Raises shared.errors.Unavailable when the store cannot be reached."""
        ...

    def close(self) -> None: ...
