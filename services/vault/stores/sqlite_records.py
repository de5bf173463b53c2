"""Tenants, API keys, namespaces and provenance edges of the SQLite store.

Plain functions over a connection; the store supplies locking and transactions.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from shared.errors import BadRequest, Conflict
from shared.schemas.api import ApiKeyRecord, NamespaceRecord, TenantRecord
from shared.schemas.memcube import Edge


def cube_id_of(ref: str) -> str:
    """``id@version`` → ``id``; a bare id is returned as it is."""
    head, sep, _ = ref.rpartition("@")
    return head if sep else ref


def insert_tenant(conn: sqlite3.Connection, tenant: TenantRecord, key: ApiKeyRecord) -> None:
    try:
        conn.execute(
            "INSERT INTO tenants (id, name, created_at, json) VALUES (?, ?, ?, ?)",
            (tenant.id, tenant.name, tenant.created_at.timestamp(), tenant.model_dump_json()),
        )
        conn.execute(
            "INSERT INTO api_keys (prefix, key_hash, tenant, principal, json)"
            " VALUES (?, ?, ?, ?, ?)",
            (key.prefix, key.key_hash, key.tenant, key.principal, key.model_dump_json()),
        )
    except sqlite3.IntegrityError as exc:
        raise Conflict(f"tenant {tenant.id!r} or its API key already exists") from exc


def get_tenant(conn: sqlite3.Connection, tenant_id: str) -> TenantRecord | None:
    row = conn.execute("SELECT json FROM tenants WHERE id = ?", (tenant_id,)).fetchone()
    return None if row is None else TenantRecord.model_validate_json(row[0])


def find_api_key(conn: sqlite3.Connection, prefix: str) -> ApiKeyRecord | None:
    row = conn.execute("SELECT json FROM api_keys WHERE prefix = ?", (prefix,)).fetchone()
    return None if row is None else ApiKeyRecord.model_validate_json(row[0])


def insert_namespace(conn: sqlite3.Connection, ns: NamespaceRecord) -> None:
    try:
        conn.execute(
            "INSERT INTO namespaces (id, tenant, name, created_at, json) VALUES (?, ?, ?, ?, ?)",
            (ns.id, ns.tenant, ns.name, ns.created_at.timestamp(), ns.model_dump_json()),
        )
    except sqlite3.IntegrityError as exc:
        raise Conflict(f"namespace {ns.name!r} already exists") from exc


def get_namespace(
    conn: sqlite3.Connection, tenant: str, namespace_id: str
) -> NamespaceRecord | None:
    row = conn.execute(
        "SELECT json FROM namespaces WHERE tenant = ? AND id = ?", (tenant, namespace_id)
    ).fetchone()
    return None if row is None else NamespaceRecord.model_validate_json(row[0])


def list_namespaces(conn: sqlite3.Connection, tenant: str) -> list[NamespaceRecord]:
    rows = conn.execute(
        "SELECT json FROM namespaces WHERE tenant = ? ORDER BY created_at, name", (tenant,)
    ).fetchall()
    return [NamespaceRecord.model_validate_json(r[0]) for r in rows]


def insert_edges(
    conn: sqlite3.Connection, edges: Sequence[Edge], batch_tenants: dict[str, str]
) -> None:
    """Stores edges under the tenant of the cubes they join.

    Edges carry no tenant of their own: it is taken from the cubes at either end
    (in this batch or already stored). An edge between two tenants' cubes, or
    between cubes that exist nowhere, is refused.
    """
    tenants = dict(batch_tenants)

    def tenant_of(cube_id: str) -> str | None:
        if cube_id not in tenants:
            row = conn.execute(
                "SELECT tenant FROM cubes WHERE id = ? LIMIT 1", (cube_id,)
            ).fetchone()
            if row is None:
                return None
            tenants[cube_id] = row[0]
        return tenants[cube_id]

    rows = []
    for edge in edges:
        src_id, dst_id = cube_id_of(edge.src), cube_id_of(edge.dst)
        src_t, dst_t = tenant_of(src_id), tenant_of(dst_id)
        if src_t is None and dst_t is None:
            raise BadRequest(f"edge {edge.src} -> {edge.dst} joins no stored cube")
        if src_t is not None and dst_t is not None and src_t != dst_t:
            raise BadRequest(f"edge {edge.src} -> {edge.dst} crosses tenants")
        rows.append(
            (
                src_t or dst_t,
                str(edge.kind),
                edge.src,
                src_id,
                edge.dst,
                dst_id,
                edge.created_at.timestamp(),
                edge.model_dump_json(),
            )
        )
    conn.executemany(
        "INSERT OR IGNORE INTO edges (tenant, kind, src, src_id, dst, dst_id, created_at, json)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def edges(conn: sqlite3.Connection, tenant: str, ref_prefix: str) -> list[Edge]:
    """Edges touching ``ref_prefix``: one version (``id@v``) or every version (``id``)."""
    cube_id = cube_id_of(ref_prefix)
    sql = "SELECT json FROM edges WHERE tenant = ? AND (src_id = ? OR dst_id = ?)"
    rows = conn.execute(sql + " ORDER BY created_at, eid", (tenant, cube_id, cube_id)).fetchall()
    found = [Edge.model_validate_json(r[0]) for r in rows]
    if "@" in ref_prefix:
        found = [e for e in found if ref_prefix in (e.src, e.dst)]
    return found
