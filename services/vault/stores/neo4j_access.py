"""Access records of the Neo4j store: principals, teams, grants (JSON documents
keyed by tenant, kind and id: one ``AccessDoc`` node each, unique on ``key``)
and API key upserts. Each function is a unit of work for a managed transaction.
"""

from __future__ import annotations

from neo4j import ManagedTransaction

from services.vault.stores import neo4j_schema as schema
from shared.schemas.api import ApiKeyRecord

ACCESS_DOC = "AccessDoc"  # unique on key: neo4j_schema.CONSTRAINTS

_PUT = (
    f"MERGE (d:{ACCESS_DOC} {{key: $key}})"
    " SET d.tenant = $tenant, d.kind = $kind, d.id = $id, d.json = $json"
)
_GET = f"MATCH (d:{ACCESS_DOC} {{key: $key}}) WHERE d.tenant = $tenant RETURN d.json AS j"
_LIST = (
    f"MATCH (d:{ACCESS_DOC}) WHERE d.tenant = $tenant AND d.kind = $kind"
    " RETURN d.json AS j ORDER BY d.id"
)
_DELETE = (
    f"MATCH (d:{ACCESS_DOC} {{key: $key}}) WHERE d.tenant = $tenant DELETE d RETURN count(*) AS n"
)
# A key of another tenant is never overwritten: the prefix is random, but a
# write must not be able to move a key between tenants.
_PUT_KEY = (
    f"MERGE (k:{schema.API_KEY} {{prefix: $prefix}})"
    " ON CREATE SET k.tenant = $tenant, k.key_hash = $key_hash, k.principal = $principal,"
    " k.json = $json"
    " WITH k WHERE k.tenant = $tenant SET k.json = $json"
)
_LIST_KEYS = (
    f"MATCH (k:{schema.API_KEY}) WHERE k.tenant = $tenant AND k.principal = $principal"
    " RETURN k.json AS j ORDER BY k.prefix"
)


def _key(tenant: str, kind: str, doc_id: str) -> str:
    return f"{tenant}\x1f{kind}\x1f{doc_id}"


def put_doc(tx: ManagedTransaction, tenant: str, kind: str, doc_id: str, body: str) -> None:
    tx.run(_PUT, key=_key(tenant, kind, doc_id), tenant=tenant, kind=kind, id=doc_id, json=body)


def get_doc(tx: ManagedTransaction, tenant: str, kind: str, doc_id: str) -> str | None:
    row = tx.run(_GET, key=_key(tenant, kind, doc_id), tenant=tenant).single()
    return None if row is None else str(row["j"])


def list_docs(tx: ManagedTransaction, tenant: str, kind: str) -> list[str]:
    return [str(r["j"]) for r in tx.run(_LIST, tenant=tenant, kind=kind)]


def delete_doc(tx: ManagedTransaction, tenant: str, kind: str, doc_id: str) -> bool:
    row = tx.run(_DELETE, key=_key(tenant, kind, doc_id), tenant=tenant).single()
    return row is not None and int(row["n"]) == 1


def put_api_key(tx: ManagedTransaction, key: ApiKeyRecord) -> None:
    tx.run(
        _PUT_KEY,
        prefix=key.prefix,
        tenant=key.tenant,
        key_hash=key.key_hash,
        principal=key.principal,
        json=key.model_dump_json(),
    ).consume()


def list_api_keys(tx: ManagedTransaction, tenant: str, principal: str) -> list[ApiKeyRecord]:
    rows = tx.run(_LIST_KEYS, tenant=tenant, principal=principal)
    return [ApiKeyRecord.model_validate_json(r["j"]) for r in rows]
