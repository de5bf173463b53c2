"""Namespace policies, retention reads and export records of the SQLite store.

Export records have their own table, created on first use (like erasures), so a
database made before them needs no migration.
"""

from __future__ import annotations

import sqlite3

from shared.schemas.api import NamespaceRecord
from shared.schemas.compliance import ExportRecord
from shared.schemas.memcube import MemCube

EXPORTS_DDL = (
    "CREATE TABLE IF NOT EXISTS namespace_exports ("
    " id TEXT PRIMARY KEY, tenant TEXT NOT NULL, namespace TEXT NOT NULL,"
    " created_at REAL NOT NULL, json TEXT NOT NULL)"
)
# created_at lives only in the cube's JSON (ISO 8601, UTC, "Z"); julianday reads
# that form, fractions of a second included.
_CREATED_EPOCH = "(julianday(json_extract(json, '$.created_at')) - 2440587.5) * 86400.0"


def update_namespace(conn: sqlite3.Connection, ns: NamespaceRecord) -> bool:
    cur = conn.execute(
        "UPDATE namespaces SET json = ? WHERE tenant = ? AND id = ?",
        (ns.model_dump_json(), ns.tenant, ns.id),
    )
    return cur.rowcount == 1


def namespaces_with_retention(conn: sqlite3.Connection) -> list[NamespaceRecord]:
    rows = conn.execute(
        "SELECT json FROM namespaces"
        " WHERE json_extract(json, '$.policy.retention_days') IS NOT NULL ORDER BY id"
    ).fetchall()
    return [NamespaceRecord.model_validate_json(r[0]) for r in rows]


def namespace_cubes(
    conn: sqlite3.Connection,
    tenant: str,
    namespace: str,
    created_before: float | None,
    limit: int,
) -> list[MemCube]:
    """Current, searchable plaintext cubes of the namespace, oldest first."""
    sql = (
        "SELECT json FROM cubes WHERE tenant = ? AND namespace = ? AND is_current = 1"
        " AND searchable = 1 AND tier = 'plaintext'"
    )
    params: list[object] = [tenant, namespace]
    if created_before is not None:
        sql += f" AND {_CREATED_EPOCH} <= ?"
        params.append(created_before)
    sql += f" ORDER BY {_CREATED_EPOCH}, id LIMIT ?"
    params.append(limit)
    return [MemCube.model_validate_json(r[0]) for r in conn.execute(sql, params).fetchall()]


def insert_export(conn: sqlite3.Connection, record: ExportRecord) -> None:
    conn.execute(EXPORTS_DDL)
    conn.execute(
        "INSERT INTO namespace_exports (id, tenant, namespace, created_at, json)"
        " VALUES (?, ?, ?, ?, ?)",
        (
            record.id,
            record.tenant,
            record.namespace,
            record.created_at.timestamp(),
            record.model_dump_json(),
        ),
    )


def get_export(conn: sqlite3.Connection, tenant: str, export_id: str) -> ExportRecord | None:
    conn.execute(EXPORTS_DDL)
    row = conn.execute(
        "SELECT json FROM namespace_exports WHERE tenant = ? AND id = ?", (tenant, export_id)
    ).fetchone()
    return None if row is None else ExportRecord.model_validate_json(row[0])
