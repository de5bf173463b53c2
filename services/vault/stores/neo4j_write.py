"""The write path of the Neo4j store: one ``WriteBatch`` in one transaction function.

``plan_batch`` validates and serialises everything before the transaction opens
(vectors checked and normalised, JSON dumped), so the transaction function only
sends parameters. ``write_batch`` is that function: the driver may run it again
after a transient error (a deadlock, a lost connection before commit), so it
is a pure function of its plan.

Order inside the transaction, and why:

1. Retire the versions being replaced (``is_current = false``). Writing to the
   current node takes its lock, so two writers updating one cube queue up here.
2. Re-read the stored versions of every updated id, now that the lock is held:
   a writer that lost the race sees the winner's committed version and gets a
   Conflict, as does a version of an id that another tenant owns.
3. Create the new version nodes with their vectors; the unique ``ref``
   constraint turns a duplicate (id, version) into a ConstraintError, which
   fails the whole batch.
4. Edges, between version nodes of one tenant.
5. Outbox rows last: the counter node's lock is held from the increment to the
   commit, so sequence numbers are handed out in commit order, and holding it
   last keeps that window short.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from neo4j import ManagedTransaction
from pydantic_core import to_json

from services.vault.stores.neo4j_queries import epoch, meta_entries, scope_value
from services.vault.stores.neo4j_schema import (
    COUNTER,
    COUNTER_NAME,
    CUBE,
    NAMESPACE,
    OUTBOX,
    PENDING,
    vector_label,
)
from services.vault.stores.neo4j_shards import REMOVE_SHARD_LABELS
from shared.errors import BadRequest, Conflict, Unavailable
from shared.ports.graph import CubeWrite, WriteBatch
from shared.schemas.memcube import EdgeKind

ROWS_PER_STATEMENT = 1000


def supersede_query(label: str) -> str:
    # Removing the vector label (shared or the namespace's own, see neo4j_shards)
    # and the text takes the version out of every index; the vector itself stays on
    # the node with the rest of the history.
    return (
        f"UNWIND $rows AS r MATCH (c:{CUBE} {{id: r.id}})"
        " WHERE c.tenant = r.tenant AND c.is_current = true"
        " AND (r.version IS NULL OR c.version = r.version)"
        f" SET c.is_current = false REMOVE c:{label}, {REMOVE_SHARD_LABELS},"
        " c.index_text, c.scope"
    )


VERSIONS = (
    f"UNWIND $rows AS r MATCH (c:{CUBE} {{id: r.id}})"
    " RETURN r.id AS id, collect(DISTINCT c.tenant) AS tenants, max(c.version) AS top"
)


def create_cubes_query(label: str) -> str:
    # db.create.setNodeVectorProperty stores float32, half the size of a Cypher float
    # list; the label that puts the node in a vector index goes on searchable ones:
    # the namespace's own index if it has one (read here, inside the transaction,
    # so a write follows a move that has just started; see neo4j_shards), else the
    # shared one.
    return (
        f"UNWIND $rows AS r CREATE (c:{CUBE}) SET c = r.props"
        " WITH c, r WHERE r.vector IS NOT NULL"
        " CALL db.create.setNodeVectorProperty(c, 'embedding', r.vector)"
        " WITH c, r WHERE r.searchable"
        f" OPTIONAL MATCH (n:{NAMESPACE} {{id: c.namespace}}) WHERE n.tenant = c.tenant"
        f" SET c:$(coalesce(n.vector_shard, '{label}'))"
    )


EDGE_TENANTS = f"UNWIND $refs AS ref MATCH (c:{CUBE} {{ref: ref}}) RETURN ref, c.tenant AS tenant"

# One statement per kind: relationship types are constants here, never parameters.
MERGE_EDGE = {
    kind: (
        f"UNWIND $rows AS e MATCH (s:{CUBE} {{ref: e.src}}) WHERE s.tenant = e.tenant"
        f" MATCH (d:{CUBE} {{ref: e.dst}}) WHERE d.tenant = e.tenant"
        f" MERGE (s)-[r:{kind.value}]->(d)"
        " ON CREATE SET r.tenant = e.tenant, r.src = e.src, r.dst = e.dst,"
        " r.created_at = e.created_at, r.reason = e.reason, r.json = e.json"
    )
    for kind in EdgeKind
}

APPEND_OUTBOX = (
    f"MATCH (k:{COUNTER} {{name: $name}})"
    " SET k.value = k.value + size($events)"
    " WITH k.value - size($events) AS base"
    " UNWIND range(0, size($events) - 1) AS i"
    " WITH base + i + 1 AS seq, $events[i] AS e"
    f" CREATE (o:{OUTBOX}:{PENDING} {{seq: seq, topic: e.topic, key: e.key, event: e.event,"
    " acked: false, created_at: e.created_at})"
    " RETURN count(o) AS n"
)


@dataclass
class Plan:
    """Parameters of every statement of one batch, computed before the transaction."""

    label: str = ""  # the vector label of the store's dimension
    supersede: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    cubes: list[dict[str, Any]] = field(default_factory=list)  # props, vector, searchable
    edges: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.supersede or self.cubes or self.edges or self.events)


def _vector(cw: CubeWrite, dimension: int) -> list[float] | None:
    """Checked and L2-normalised; None for no vector or a zero one (no direction to search)."""
    if cw.embedding is None:
        return None
    v = np.asarray(cw.embedding, dtype=np.float32).reshape(-1)
    if v.shape[0] != dimension:
        raise ValueError(
            f"cube {cw.cube.id}: embedding has {v.shape[0]} dimensions, expected {dimension}"
        )
    if not np.all(np.isfinite(v)):
        raise ValueError(f"cube {cw.cube.id}: embedding is not finite")
    norm = float(np.linalg.norm(v))
    if norm == 0:
        return None
    return [float(x) for x in v / norm]


def plan_batch(batch: WriteBatch, dimension: int) -> Plan:
    plan = Plan(label=vector_label(dimension))
    newest: dict[str, int] = {}
    tenant_of: dict[str, str] = {}
    for cw in batch.cubes:
        c = cw.cube
        if tenant_of.setdefault(c.id, c.tenant) != c.tenant:
            raise BadRequest(f"cube {c.id!r} appears under two tenants in one batch")
        newest[c.id] = max(newest.get(c.id, 0), c.version)
    for cw in batch.cubes:
        c = cw.cube
        # Within a batch only the highest version of an id is current.
        current = c.version == newest[c.id]
        searchable = current and c.searchable
        text = cw.index_text if cw.index_text is not None else c.text
        props: dict[str, Any] = {
            "id": c.id,
            "version": c.version,
            "ref": c.ref,
            "tenant": c.tenant,
            "namespace": c.namespace,
            "is_current": current,
            "searchable": c.searchable,
            "state": str(c.lifecycle.state),
            "tier": str(c.tier),
            "semantic_type": str(c.semantic_type),
            "origin": str(c.origin),
            "created_at": epoch(c.created_at),
            "updated_at": epoch(c.updated_at),
            "event_time": epoch(c.event_time),
            "expires_at": epoch(c.governance.lifespan.expires_at),
            "tags": list(c.tags),
            "meta_kv": meta_entries(c.metadata),
            "metadata": to_json(c.metadata).decode(),
            "cube_json": c.model_dump_json(),
        }
        if searchable and text:
            props["index_text"] = text
            props["scope"] = scope_value(c.tenant, c.namespace)
        vec = _vector(cw, dimension)
        plan.cubes.append(
            {"props": props, "vector": vec, "searchable": searchable and vec is not None}
        )
        if c.version > 1 and current:
            plan.updates.append({"id": c.id, "tenant": c.tenant, "version": c.version})
            # Older versions stop being current even if the caller forgot to say so.
            plan.supersede.append({"id": c.id, "tenant": c.tenant, "version": None})
    for cube_id, version in batch.superseded:
        tenant = tenant_of.get(cube_id)
        if tenant is None:
            # Every statement filters by tenant, and a superseded marker carries
            # none: it must come with the new version that replaces it.
            raise ValueError(f"superseded cube {cube_id!r} has no new version in the batch")
        plan.supersede.append({"id": cube_id, "tenant": tenant, "version": version})
    plan.edges = [
        {
            "kind": e.kind.value,
            "src": e.src,
            "dst": e.dst,
            "created_at": epoch(e.created_at),
            "reason": e.reason,
            "json": e.model_dump_json(),
        }
        for e in batch.edges
    ]
    now = time.time()
    plan.events = [
        {"topic": e.topic, "key": e.key, "event": e.model_dump_json(), "created_at": now}
        for e in batch.events
    ]
    return plan


def searchable_counts(plan: Plan) -> dict[tuple[str, str], int]:
    """Searchable vectors the plan adds, per (tenant, namespace): what decides when
    a namespace gets its own vector index (neo4j_shards)."""
    counts: dict[tuple[str, str], int] = {}
    for row in plan.cubes:
        if row["searchable"]:
            key = (row["props"]["tenant"], row["props"]["namespace"])
            counts[key] = counts.get(key, 0) + 1
    return counts


def write_batch(tx: ManagedTransaction, plan: Plan) -> None:
    """The transaction function; see the module docstring for the order of steps."""
    if plan.supersede:
        tx.run(supersede_query(plan.label), rows=plan.supersede).consume()
    if plan.updates:
        _check_versions(tx, plan.updates)
    # Large batches go in several statements of one transaction: the parameters of
    # a statement stay in server memory while it runs, and 10k rows with 384-d
    # vectors at once would approach the server's transaction memory limit.
    for rows in _chunks(plan.cubes):
        tx.run(create_cubes_query(plan.label), rows=rows).consume()
    if plan.edges:
        _write_edges(tx, plan.edges)
    for events in _chunks(plan.events):
        row = tx.run(APPEND_OUTBOX, name=COUNTER_NAME, events=events).single()
        if row is None or row["n"] != len(events):
            raise Unavailable("neo4j: the outbox counter is missing; was the schema created?")


def _chunks(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [rows[i : i + ROWS_PER_STATEMENT] for i in range(0, len(rows), ROWS_PER_STATEMENT)]


def _check_versions(tx: ManagedTransaction, updates: list[dict[str, Any]]) -> None:
    stored = {r["id"]: (r["tenants"], r["top"]) for r in tx.run(VERSIONS, rows=updates)}
    for u in updates:
        if u["id"] not in stored:
            continue
        tenants, top = stored[u["id"]]
        if tenants != [u["tenant"]]:
            raise Conflict(f"cube {u['id']!r} cannot be written by this tenant")
        if int(top) >= u["version"]:
            raise Conflict(
                f"cube {u['id']!r} already has version {top}; cannot write {u['version']}",
                code="version_conflict",
            )


def _write_edges(tx: ManagedTransaction, edges: list[dict[str, Any]]) -> None:
    """Edges take their tenant from the cubes they join, which must both be stored.

    A relationship needs two nodes, so unlike SQLite's edge table an edge to a
    version that does not exist is refused rather than kept dangling.
    """
    refs = sorted({e["src"] for e in edges} | {e["dst"] for e in edges})
    tenants = {r["ref"]: r["tenant"] for r in tx.run(EDGE_TENANTS, refs=refs)}
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for e in edges:
        src_t, dst_t = tenants.get(e["src"]), tenants.get(e["dst"])
        if src_t is None and dst_t is None:
            raise BadRequest(f"edge {e['src']} -> {e['dst']} joins no stored cube")
        if src_t is None or dst_t is None:
            raise BadRequest(f"edge {e['src']} -> {e['dst']} names a cube version not stored")
        if src_t != dst_t:
            raise BadRequest(f"edge {e['src']} -> {e['dst']} crosses tenants")
        by_kind.setdefault(e["kind"], []).append({**e, "tenant": src_t})
    for kind, rows in by_kind.items():
        tx.run(MERGE_EDGE[EdgeKind(kind)], rows=rows).consume()
