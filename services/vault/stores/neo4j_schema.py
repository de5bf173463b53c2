"""Labels, indexes and constraints of the Neo4j store, created idempotently.

The model (DESIGN.md §5):

* ``(:Tenant {id})-[:HAS_NAMESPACE]->(:Namespace {id, tenant, name, key})``,
  ``(:ApiKey {prefix, tenant})-[:OF_TENANT]->(:Tenant)``; each keeps its record as
  JSON in ``json``, which is what reads return.
* ``(:MemCube)``: one node per version, ``ref`` = ``id@version``. Typed
  properties exist to filter and index; ``cube_json`` is the record; the vector
  is ``embedding`` (float32, written with db.create.setNodeVectorProperty).
* The vector index is on ``(:VectorN).embedding`` where N is the dimension, and
  only the current, searchable version of a cube carries that label; likewise
  only it carries ``index_text`` and ``scope`` (full-text index). Superseding a
  version removes the label and the text, so both indexes hold exactly the
  searchable set and over-fetching never spends slots on old versions. One label
  and index per dimension let stores of different embedding models share a
  database (Community Edition has one user database): the contract suite's
  16-dimensional cubes and a deployment's 384-dimensional ones, or a re-embedding
  migration, never mix vectors in one index.
* Provenance edges are relationships between version nodes, one type per
  ``EdgeKind``, carrying ``created_at``, ``reason`` and the edge as ``json``.
* ``(:Outbox:OutboxPending {seq, topic, key, event, acked})``: the transactional
  outbox. ``seq`` comes from ``(:OutboxCounter)`` incremented in the writing
  transaction; ``OutboxPending`` is removed on acknowledgement so the relay's
  query walks an index of pending rows only.
"""

from __future__ import annotations

from typing import Any

from shared.errors import ConfigError

CUBE = "MemCube"
TENANT = "Tenant"
NAMESPACE = "Namespace"
API_KEY = "ApiKey"
OUTBOX = "Outbox"
PENDING = "OutboxPending"
COUNTER = "OutboxCounter"
COUNTER_NAME = "outbox"

TEXT_INDEX = "memcube_text"
TEXT_PROPERTY = "index_text"
SCOPE_PROPERTY = "scope"
# Neo4j's "english" analyzer: standard tokenizer, English stopwords, Porter stemming
# (the SQLite store's FTS5 uses porter too, so "running" finds "run" on both).
TEXT_ANALYZER = "english"

SCHEMA_VERSION = 1
INDEX_WAIT_S = 300

CONSTRAINTS = [
    f"CREATE CONSTRAINT memcube_ref IF NOT EXISTS FOR (c:{CUBE}) REQUIRE c.ref IS UNIQUE",
    f"CREATE CONSTRAINT tenant_id IF NOT EXISTS FOR (t:{TENANT}) REQUIRE t.id IS UNIQUE",
    f"CREATE CONSTRAINT namespace_id IF NOT EXISTS FOR (n:{NAMESPACE}) REQUIRE n.id IS UNIQUE",
    # (tenant, name) as one property: composite uniqueness is not in every edition.
    f"CREATE CONSTRAINT namespace_key IF NOT EXISTS FOR (n:{NAMESPACE}) REQUIRE n.key IS UNIQUE",
    f"CREATE CONSTRAINT apikey_prefix IF NOT EXISTS FOR (k:{API_KEY}) REQUIRE k.prefix IS UNIQUE",
    "CREATE CONSTRAINT access_doc_key IF NOT EXISTS FOR (d:AccessDoc) REQUIRE d.key IS UNIQUE",
    f"CREATE CONSTRAINT outbox_seq IF NOT EXISTS FOR (o:{OUTBOX}) REQUIRE o.seq IS UNIQUE",
    f"CREATE CONSTRAINT outbox_counter IF NOT EXISTS FOR (k:{COUNTER}) REQUIRE k.name IS UNIQUE",
]

RANGE_INDEXES = [
    f"CREATE INDEX memcube_scope IF NOT EXISTS FOR (c:{CUBE})"
    " ON (c.tenant, c.namespace, c.is_current)",
    f"CREATE INDEX memcube_id IF NOT EXISTS FOR (c:{CUBE}) ON (c.id)",
    f"CREATE INDEX memcube_expiry IF NOT EXISTS FOR (c:{CUBE}) ON (c.expires_at)",
    f"CREATE INDEX namespace_tenant IF NOT EXISTS FOR (n:{NAMESPACE}) ON (n.tenant)",
    f"CREATE INDEX outbox_pending IF NOT EXISTS FOR (o:{PENDING}) ON (o.seq)",
]


def vector_label(dimension: int) -> str:
    """The label of searchable cubes with a ``dimension``-d vector (an identifier: int only)."""
    return f"Vector{int(dimension)}"


def vector_index(dimension: int) -> str:
    return f"memcube_vector_{int(dimension)}"


def vector_index_ddl(dimension: int) -> str:
    return (
        f"CREATE VECTOR INDEX {vector_index(dimension)} IF NOT EXISTS"
        f" FOR (c:{vector_label(dimension)}) ON c.embedding"
        " OPTIONS {indexConfig: {`vector.dimensions`: $dimension,"
        " `vector.similarity_function`: 'cosine'}}"
    )


TEXT_INDEX_DDL = (
    f"CREATE FULLTEXT INDEX {TEXT_INDEX} IF NOT EXISTS FOR (c:{CUBE})"
    f" ON EACH [c.{TEXT_PROPERTY}, c.{SCOPE_PROPERTY}]"
    " OPTIONS {indexConfig: {`fulltext.analyzer`: $analyzer,"
    " `fulltext.eventually_consistent`: false}}"
)

COUNTER_DDL = f"MERGE (k:{COUNTER} {{name: $name}}) ON CREATE SET k.value = 0"


def schema_statements(dimension: int) -> list[tuple[str, dict[str, Any]]]:
    """Every statement, each run in its own transaction (schema changes cannot share one)."""
    stmts: list[tuple[str, dict[str, Any]]] = [(s, {}) for s in CONSTRAINTS + RANGE_INDEXES]
    stmts.append((vector_index_ddl(dimension), {"dimension": dimension}))
    stmts.append((TEXT_INDEX_DDL, {"analyzer": TEXT_ANALYZER}))
    stmts.append((COUNTER_DDL, {"name": COUNTER_NAME}))
    return stmts


AWAIT_INDEXES = "CALL db.awaitIndexes($seconds)"

INDEX_OPTIONS = (
    "SHOW INDEXES YIELD name, options, state WHERE name IN $names RETURN name, options, state"
)


def check_indexes(rows: list[dict[str, Any]], dimension: int) -> None:
    """Checks that both indexes are ONLINE and the vector index has ``dimension``.

    The index name carries the dimension, so a mismatch means someone created
    an index of that name by hand; Neo4j would silently leave vectors of the
    wrong size out of it, which would look like lost data.
    """
    by_name = {r["name"]: r for r in rows}
    vector_name = vector_index(dimension)
    for name in (vector_name, TEXT_INDEX):
        row = by_name.get(name)
        if row is None:
            raise ConfigError(f"neo4j: index {name} is missing after schema creation")
        if row["state"] != "ONLINE":
            raise ConfigError(f"neo4j: index {name} is {row['state']}, not ONLINE")
    config = (by_name[vector_name].get("options") or {}).get("indexConfig") or {}
    stored = config.get("vector.dimensions")
    if stored is not None and int(stored) != dimension:
        raise ConfigError(
            f"neo4j index {vector_name} holds {stored}-dimensional vectors, "
            f"expected {dimension}; drop it and restart to rebuild"
        )
