"""Right to erasure in the Neo4j store (docs/compliance.md#right-to-erasure).

Same contract as sqlite_erasure. ``candidates`` narrows with a substring test on
the stored cube JSON, then shared.schemas.erasure decides. ``erase_tx`` is one
managed transaction function: the batch of tombstones and events
(neo4j_write.write_batch), then every version of the erased cubes rewritten
content-free: the JSON, tags and metadata properties replaced, the embedding and
the full-text property removed, the vector labels taken off (out of every index).
Acknowledged outbox nodes about those cubes are deleted, and the report stored as
an ``Erasure`` node. The versions are read inside the transaction, so a driver
retry recomputes them from what it sees then.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from neo4j import ManagedTransaction

from services.vault.stores.neo4j_schema import CUBE, OUTBOX
from services.vault.stores.neo4j_shards import REMOVE_SHARD_LABELS
from services.vault.stores.neo4j_write import Plan, write_batch
from shared.schemas.erasure import ErasureReport, ErasureSubject, content_free
from shared.schemas.memcube import MemCube

ERASURE = "Erasure"

CANDIDATES = (
    f"MATCH (c:{CUBE}) WHERE c.tenant = $tenant AND c.namespace IN $namespaces"
    " AND c.tier = 'plaintext' AND toLower(c.cube_json) CONTAINS $needle"
    " RETURN c.id AS id, c.cube_json AS j ORDER BY c.created_at, c.id, c.version"
)
VERSIONS = (
    f"MATCH (c:{CUBE}) WHERE c.id IN $ids AND c.tenant = $tenant"
    " RETURN c.ref AS ref, c.cube_json AS j"
)
# Outbox nodes carry no tenant; the ids were read under the tenant's filter and are
# the vault's UUIDs, so they cannot name another tenant's events.
DROP_SENT = f"MATCH (o:{OUTBOX}) WHERE o.acked = true AND o.key IN $ids DELETE o"
SAVE_REPORT = (
    f"CREATE (e:{ERASURE} {{id: $id, tenant: $tenant, created_at: $created_at, json: $json}})"
)
GET_REPORT = f"MATCH (e:{ERASURE} {{id: $id}}) WHERE e.tenant = $tenant RETURN e.json AS j LIMIT 1"


def purge_query(label: str) -> str:
    return (
        f"UNWIND $rows AS r MATCH (c:{CUBE} {{ref: r.ref}}) WHERE c.tenant = $tenant"
        " SET c.cube_json = r.json, c.state = 'deleted', c.searchable = false,"
        " c.tags = [], c.meta_kv = [], c.metadata = '{}', c.event_time = null,"
        f" c.expires_at = null REMOVE c.embedding, c.index_text, c.scope, c:{label},"
        f" {REMOVE_SHARD_LABELS}"
    )


def candidates(
    tx: ManagedTransaction, tenant: str, namespaces: list[str], subject: ErasureSubject
) -> list[str]:
    # toLower is Unicode-aware in Cypher; the predicate below is the exact test.
    rows = tx.run(
        CANDIDATES, tenant=tenant, namespaces=namespaces, needle=subject.needle().lower()
    ).data()
    found: dict[str, None] = {}
    for row in rows:
        if row["id"] not in found and subject.matches(MemCube.model_validate_json(row["j"])):
            found[row["id"]] = None
    return list(found)


def erase_tx(
    tx: ManagedTransaction,
    plan: Plan,
    tenant: str,
    cube_ids: Sequence[str],
    now: datetime,
    report: ErasureReport,
) -> int:
    if not plan.empty:
        write_batch(tx, plan)
    ids = list(dict.fromkeys(cube_ids))
    rows = []
    purged = 0
    for row in tx.run(VERSIONS, ids=ids, tenant=tenant).data():
        skeleton = content_free(MemCube.model_validate_json(row["j"]), now).model_dump_json()
        if skeleton != row["j"]:
            purged += 1
        rows.append({"ref": row["ref"], "json": skeleton})
    if rows:
        tx.run(purge_query(plan.label), rows=rows, tenant=tenant).consume()
        tx.run(DROP_SENT, ids=ids).consume()
    tx.run(
        SAVE_REPORT,
        id=report.id,
        tenant=report.tenant,
        created_at=report.created_at.timestamp(),
        json=report.model_dump_json(),
    ).consume()
    return purged


def get_report(tx: ManagedTransaction, tenant: str, erasure_id: str) -> ErasureReport | None:
    row = tx.run(GET_REPORT, id=erasure_id, tenant=tenant).single()
    return None if row is None else ErasureReport.model_validate_json(row["j"])
