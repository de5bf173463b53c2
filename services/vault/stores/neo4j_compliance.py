"""Namespace policies, retention reads and export records of the Neo4j store.

Each function is a unit of work for a managed transaction. A namespace keeps
its record as JSON; ``retention_days`` is also a property so the expiry run can
find the namespaces with a retention limit without reading every record.
"""

from __future__ import annotations

from neo4j import ManagedTransaction

from services.vault.stores import neo4j_schema as schema
from shared.schemas.api import NamespaceRecord
from shared.schemas.compliance import ExportRecord
from shared.schemas.memcube import MemCube

EXPORT = "NamespaceExport"

_UPDATE = (
    f"MATCH (n:{schema.NAMESPACE} {{id: $id}}) WHERE n.tenant = $tenant"
    " SET n.json = $json, n.retention_days = $retention_days RETURN count(n) AS n"
)
_WITH_RETENTION = (
    f"MATCH (n:{schema.NAMESPACE}) WHERE n.retention_days IS NOT NULL"
    " RETURN n.json AS j ORDER BY n.id"
)
_CUBES = (
    f"MATCH (c:{schema.CUBE}) WHERE c.tenant = $tenant AND c.namespace = $namespace"
    " AND c.is_current = true AND c.searchable = true AND c.tier = 'plaintext'"
    " AND ($before IS NULL OR c.created_at <= $before)"
    " RETURN c.cube_json AS j ORDER BY c.created_at, c.id LIMIT $limit"
)
_CREATE_EXPORT = (
    f"CREATE (e:{EXPORT} {{id: $id, tenant: $tenant, namespace: $namespace,"
    " created_at: $created_at, json: $json})"
)
_GET_EXPORT = f"MATCH (e:{EXPORT} {{id: $id}}) WHERE e.tenant = $tenant RETURN e.json AS j"


def update_namespace(tx: ManagedTransaction, ns: NamespaceRecord) -> bool:
    row = tx.run(
        _UPDATE,
        id=ns.id,
        tenant=ns.tenant,
        json=ns.model_dump_json(),
        retention_days=ns.policy.retention_days,
    ).single()
    return row is not None and int(row["n"]) == 1


def namespaces_with_retention(tx: ManagedTransaction) -> list[NamespaceRecord]:
    return [NamespaceRecord.model_validate_json(r["j"]) for r in tx.run(_WITH_RETENTION)]


def namespace_cubes(
    tx: ManagedTransaction, tenant: str, namespace: str, created_before: float | None, limit: int
) -> list[MemCube]:
    rows = tx.run(
        _CUBES, tenant=tenant, namespace=namespace, before=created_before, limit=int(limit)
    )
    return [MemCube.model_validate_json(r["j"]) for r in rows]


def insert_export(tx: ManagedTransaction, record: ExportRecord) -> None:
    tx.run(
        _CREATE_EXPORT,
        id=record.id,
        tenant=record.tenant,
        namespace=record.namespace,
        created_at=record.created_at.timestamp(),
        json=record.model_dump_json(),
    ).consume()


def get_export(tx: ManagedTransaction, tenant: str, export_id: str) -> ExportRecord | None:
    row = tx.run(_GET_EXPORT, id=export_id, tenant=tenant).single()
    return None if row is None else ExportRecord.model_validate_json(row["j"])
