"""Access records of the SQLite store: principals, teams, grants (as JSON
documents keyed by tenant, kind and id) and API key upserts.

The table is created on first use, so a database made before it needs no
migration.
"""

from __future__ import annotations

import sqlite3

from shared.schemas.api import ApiKeyRecord

ACCESS_DDL = (
    "CREATE TABLE IF NOT EXISTS access_docs ("
    " tenant TEXT NOT NULL, kind TEXT NOT NULL, id TEXT NOT NULL, json TEXT NOT NULL,"
    " PRIMARY KEY (tenant, kind, id))"
)


def ensure(conn: sqlite3.Connection) -> None:
    conn.execute(ACCESS_DDL)


def put_doc(conn: sqlite3.Connection, tenant: str, kind: str, doc_id: str, body: str) -> None:
    ensure(conn)
    conn.execute(
        "INSERT INTO access_docs (tenant, kind, id, json) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (tenant, kind, id) DO UPDATE SET json = excluded.json",
        (tenant, kind, doc_id, body),
    )


def get_doc(conn: sqlite3.Connection, tenant: str, kind: str, doc_id: str) -> str | None:
    ensure(conn)
    row = conn.execute(
        "SELECT json FROM access_docs WHERE tenant = ? AND kind = ? AND id = ?",
        (tenant, kind, doc_id),
    ).fetchone()
    return None if row is None else str(row[0])


def list_docs(conn: sqlite3.Connection, tenant: str, kind: str) -> list[str]:
    ensure(conn)
    rows = conn.execute(
        "SELECT json FROM access_docs WHERE tenant = ? AND kind = ? ORDER BY id", (tenant, kind)
    ).fetchall()
    return [str(r[0]) for r in rows]


def delete_doc(conn: sqlite3.Connection, tenant: str, kind: str, doc_id: str) -> bool:
    ensure(conn)
    cur = conn.execute(
        "DELETE FROM access_docs WHERE tenant = ? AND kind = ? AND id = ?", (tenant, kind, doc_id)
    )
    return cur.rowcount == 1


def put_api_key(conn: sqlite3.Connection, key: ApiKeyRecord) -> None:
    conn.execute(
        "INSERT INTO api_keys (prefix, key_hash, tenant, principal, json) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (prefix) DO UPDATE SET json = excluded.json"
        " WHERE api_keys.tenant = excluded.tenant",
        (key.prefix, key.key_hash, key.tenant, key.principal, key.model_dump_json()),
    )


def list_api_keys(conn: sqlite3.Connection, tenant: str, principal: str) -> list[ApiKeyRecord]:
    rows = conn.execute(
        "SELECT json FROM api_keys WHERE tenant = ? AND principal = ? ORDER BY prefix",
        (tenant, principal),
    ).fetchall()
    return [ApiKeyRecord.model_validate_json(r[0]) for r in rows]
