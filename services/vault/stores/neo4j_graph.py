"""GraphStore on Neo4j 5.26 (Bolt): the distributed mode's system of record.

One driver per store; it pools connections and is safe to share between
threads, and every call opens its own short session. Reads and writes run as
managed transactions (``execute_read`` / ``execute_write``), which the driver
retries on transient failures (deadlocks, a connection lost before commit) for
up to ``retry_time_s``, so the transaction functions in neo4j_write and
neo4j_search are pure functions of their parameters.

Errors: a server that cannot be reached (stopped, restarting, network) becomes
shared.errors.Unavailable, which the API answers with 503; the driver
reconnects by itself once the server is back. A uniqueness violation becomes
Conflict. Anything else (a Cypher bug) is left to surface as a 500.

Every Cypher statement is a constant or built from constants; values travel
as parameters. Every read filters on the tenant, except the system-wide ones
the port defines that way: ``due_for_expiry`` and the outbox (the scheduler and
the relay act for every tenant), ``find_api_key`` (which establishes the
tenant) and ``get_tenant`` (whose key is the tenant).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

import numpy as np
from neo4j import Driver, GraphDatabase, ManagedTransaction
from neo4j.exceptions import (
    AuthError,
    ClientError,
    ConfigurationError,
    ConnectionPoolError,
    ConstraintError,
    ServiceUnavailable,
    SessionExpired,
    TransientError,
)

from services.vault.stores import neo4j_access as access
from services.vault.stores import neo4j_compliance as compliance
from services.vault.stores import neo4j_erasure as erasure
from services.vault.stores import neo4j_outbox as outbox
from services.vault.stores import neo4j_schema as schema
from services.vault.stores.neo4j_queries import Unmatchable, filter_cypher, lucene_query
from services.vault.stores.neo4j_search import RateMemo, text_search_tx, vector_search_tx
from services.vault.stores.neo4j_shards import ShardKeeper
from services.vault.stores.neo4j_write import plan_batch, searchable_counts, write_batch
from shared.errors import ConfigError, Conflict, Unavailable
from shared.ports.graph import OutboxItem, Scored, WriteBatch
from shared.schemas.api import ApiKeyRecord, NamespaceRecord, SearchFilters, TenantRecord
from shared.schemas.compliance import ExportRecord
from shared.schemas.erasure import ErasureReport, ErasureSubject
from shared.schemas.memcube import Edge, EdgeKind, MemCube
from shared.settings import GraphSettings

log = logging.getLogger(__name__)
R = TypeVar("R")

_RATE_MEMO_SIZE = 4096  # (tenant, namespaces, filters) whose vector pass rate is remembered
_EDGE_TYPES = "|".join(k.value for k in EdgeKind)

_CREATE_TENANT = (
    f"CREATE (t:{schema.TENANT} {{id: $id, name: $name, created_at: $created_at, json: $json}})"
    f" CREATE (k:{schema.API_KEY} {{prefix: $prefix, tenant: $id, key_hash: $key_hash,"
    " principal: $principal, json: $key_json})-[:OF_TENANT]->(t)"
)
_CREATE_NAMESPACE = (
    f"OPTIONAL MATCH (t:{schema.TENANT} {{id: $tenant}})"
    f" CREATE (n:{schema.NAMESPACE} {{id: $id, tenant: $tenant, name: $name, key: $key,"
    " created_at: $created_at, json: $json})"
    " FOREACH (_ IN CASE WHEN t IS NULL THEN [] ELSE [1] END | CREATE (t)-[:HAS_NAMESPACE]->(n))"
)


# What "the server cannot answer now" looks like: unreachable or restarting
# (ServiceUnavailable, SessionExpired), no free connection (ConnectionPoolError),
# or transient failures the driver's retries did not get past. Other driver
# errors are bugs in this module and surface as such.
_DOWN = (ServiceUnavailable, SessionExpired, ConnectionPoolError, TransientError)


class Neo4jGraphStore:
    def __init__(
        self,
        url: str,
        dimension: int,
        *,
        user: str = "neo4j",
        password: str = "",
        database: str = "neo4j",
        retry_time_s: float = 5.0,
        connect_timeout_s: float = 5.0,
        pool_size: int = 64,
        shard_min_vectors: int = 10_000,
    ) -> None:
        if dimension < 1:
            raise ValueError(f"embedding dimension must be positive, got {dimension}")
        self.url = url
        self.dimension = dimension
        self.database = database
        # Bounded retries: while Neo4j is down a request should fail with 503 in
        # seconds, not hang for the driver's default 30 s.
        try:
            self._driver: Driver | None = GraphDatabase.driver(
                url,
                auth=(user, password) if password else None,
                max_transaction_retry_time=retry_time_s,
                connection_timeout=connect_timeout_s,
                connection_acquisition_timeout=connect_timeout_s * 2,
                max_connection_pool_size=pool_size,
            )
        except (ConfigurationError, ValueError) as exc:
            raise ConfigError(f"invalid neo4j settings for {url!r}: {exc}") from exc
        # Shared bookmarks give read-your-writes across sessions on a cluster too.
        self._bookmarks = GraphDatabase.bookmark_manager()
        self._schema_lock = threading.Lock()
        self._schema_ready = False
        self._down = False  # set when a call found Neo4j unreachable
        self._pass_rates = RateMemo(_RATE_MEMO_SIZE)
        self._shards = ShardKeeper(
            dimension,
            read=self._read,
            write=self._write,
            schema=self._schema_statement,
            min_vectors=shard_min_vectors,
        )
        try:
            self._ensure_schema()
        except Unavailable as exc:
            # Start anyway: every call answers Unavailable until Neo4j is reachable,
            # then creates the schema. A wrong dimension still stops start-up.
            log.warning("neo4j not reachable at start-up (%s); schema deferred", exc)
            self._down = True

    @classmethod
    def from_settings(cls, settings: GraphSettings, dimension: int) -> Neo4jGraphStore:
        return cls(
            settings.url,
            dimension,
            user=settings.user,
            password=settings.password.get_secret_value(),
            database=settings.database,
            shard_min_vectors=settings.shard_min_vectors,
        )

    # --- plumbing ----------------------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[Driver]:
        """The driver, with its connectivity and constraint errors turned into ours."""
        driver = self._driver
        if driver is None:
            raise Unavailable("graph store is closed")
        try:
            yield driver
        except ConstraintError as exc:
            raise Conflict(f"conflicting write: {exc.message or exc}") from exc
        except AuthError as exc:
            raise Unavailable(f"neo4j at {self.url} refused the credentials: {exc}") from exc
        except _DOWN as exc:
            raise Unavailable(f"neo4j at {self.url} is unavailable: {exc}") from exc

    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with self._schema_lock, self._errors() as driver:
            if self._schema_ready:
                return
            with driver.session(database=self.database) as session:
                for stmt, params in schema.schema_statements(self.dimension):
                    try:
                        session.run(stmt, params).consume()
                    except ClientError:
                        # Another process creating the same rule at the same moment
                        # can make IF NOT EXISTS fail once; the second try sees it.
                        time.sleep(0.5)
                        session.run(stmt, params).consume()
                session.run(schema.AWAIT_INDEXES, seconds=schema.INDEX_WAIT_S).consume()
                rows = session.run(
                    schema.INDEX_OPTIONS,
                    names=[schema.vector_index(self.dimension), schema.TEXT_INDEX],
                ).data()
            schema.check_indexes(rows, self.dimension)
            self._schema_ready = True

    def _managed(self, fn: Callable[..., R], write: bool, **kwargs: Any) -> R:
        if self._down:
            # Once Neo4j was found down, one plain round trip decides: fail at once
            # rather than spend the driver's retry time on every request (the API
            # answers 503 in milliseconds), and carry on as soon as it is back.
            self._probe()
        self._ensure_schema()
        try:
            with (
                self._errors() as driver,
                driver.session(database=self.database, bookmark_manager=self._bookmarks) as s,
            ):
                if write:
                    return s.execute_write(fn, **kwargs)
                return s.execute_read(fn, **kwargs)
        except Unavailable:
            self._down = True
            raise

    def _read(self, fn: Callable[..., R], **kwargs: Any) -> R:
        return self._managed(fn, False, **kwargs)

    def _write(self, fn: Callable[..., R], **kwargs: Any) -> R:
        return self._managed(fn, True, **kwargs)

    def _schema_statement(self, stmt: str, params: dict[str, Any]) -> None:
        """One auto-commit statement (index DDL cannot share a transaction with data)."""
        self._ensure_schema()
        with self._errors() as driver, driver.session(database=self.database) as session:
            session.run(stmt, params).consume()

    def wait_for_shards(self, timeout: float = 600.0) -> None:
        """Blocks until pending namespace index moves are done (tests, benchmarks)."""
        self._shards.wait_idle(timeout)

    def _probe(self) -> None:
        """``RETURN 1`` without retries; clears the down flag when it succeeds."""
        with self._errors() as driver, driver.session(database=self.database) as session:
            session.run("RETURN 1").consume()
        self._down = False

    def _rows(self, query: str, **params: Any) -> list[dict[str, Any]]:
        def work(tx: ManagedTransaction) -> list[dict[str, Any]]:
            return tx.run(query, params).data()

        return self._read(work)

    def _run_write(self, query: str, **params: Any) -> None:
        def work(tx: ManagedTransaction) -> None:
            tx.run(query, params).consume()

        self._write(work)

    # --- tenants, namespaces, keys ------------------------------------------------

    def create_tenant(self, tenant: TenantRecord, key: ApiKeyRecord) -> None:
        if key.tenant != tenant.id:
            raise ValueError("the API key must belong to the tenant being created")
        try:
            self._run_write(
                _CREATE_TENANT,
                id=tenant.id,
                name=tenant.name,
                created_at=tenant.created_at.timestamp(),
                json=tenant.model_dump_json(),
                prefix=key.prefix,
                key_hash=key.key_hash,
                principal=key.principal,
                key_json=key.model_dump_json(),
            )
        except Conflict as exc:
            raise Conflict(f"tenant {tenant.id!r} or its API key already exists") from exc

    def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        rows = self._rows(f"MATCH (t:{schema.TENANT} {{id: $id}}) RETURN t.json AS j", id=tenant_id)
        return TenantRecord.model_validate_json(rows[0]["j"]) if rows else None

    def find_api_key(self, prefix: str) -> ApiKeyRecord | None:
        rows = self._rows(
            f"MATCH (k:{schema.API_KEY} {{prefix: $prefix}}) RETURN k.json AS j", prefix=prefix
        )
        return ApiKeyRecord.model_validate_json(rows[0]["j"]) if rows else None

    def create_namespace(self, ns: NamespaceRecord) -> None:
        try:
            self._run_write(
                _CREATE_NAMESPACE,
                id=ns.id,
                tenant=ns.tenant,
                name=ns.name,
                key=_namespace_key(ns.tenant, ns.name),
                created_at=ns.created_at.timestamp(),
                json=ns.model_dump_json(),
            )
        except Conflict as exc:
            raise Conflict(f"namespace {ns.name!r} already exists") from exc

    def get_namespace(self, tenant: str, namespace_id: str) -> NamespaceRecord | None:
        rows = self._rows(
            f"MATCH (n:{schema.NAMESPACE} {{id: $id}}) WHERE n.tenant = $tenant RETURN n.json AS j",
            id=namespace_id,
            tenant=tenant,
        )
        return NamespaceRecord.model_validate_json(rows[0]["j"]) if rows else None

    def list_namespaces(self, tenant: str) -> list[NamespaceRecord]:
        rows = self._rows(
            f"MATCH (n:{schema.NAMESPACE}) WHERE n.tenant = $tenant"
            " RETURN n.json AS j ORDER BY n.created_at, n.name",
            tenant=tenant,
        )
        return [NamespaceRecord.model_validate_json(r["j"]) for r in rows]

    # --- principals, teams, grants, keys (neo4j_access) ----------------------------

    def put_access_doc(self, tenant: str, kind: str, doc_id: str, body: str) -> None:
        self._write(access.put_doc, tenant=tenant, kind=kind, doc_id=doc_id, body=body)

    def get_access_doc(self, tenant: str, kind: str, doc_id: str) -> str | None:
        return self._read(access.get_doc, tenant=tenant, kind=kind, doc_id=doc_id)

    def list_access_docs(self, tenant: str, kind: str) -> list[str]:
        return self._read(access.list_docs, tenant=tenant, kind=kind)

    def delete_access_doc(self, tenant: str, kind: str, doc_id: str) -> bool:
        return self._write(access.delete_doc, tenant=tenant, kind=kind, doc_id=doc_id)

    def put_api_key(self, key: ApiKeyRecord) -> None:
        self._write(access.put_api_key, key=key)

    def list_api_keys(self, tenant: str, principal: str) -> list[ApiKeyRecord]:
        return self._read(access.list_api_keys, tenant=tenant, principal=principal)

    # --- namespace policies, retention, exports (neo4j_compliance) ---------------

    def update_namespace(self, ns: NamespaceRecord) -> bool:
        return self._write(compliance.update_namespace, ns=ns)

    def namespaces_with_retention(self) -> list[NamespaceRecord]:
        return self._read(compliance.namespaces_with_retention)

    def namespace_cubes(
        self,
        tenant: str,
        namespace: str,
        created_before: datetime | None = None,
        limit: int = 1000,
    ) -> list[MemCube]:
        before = None if created_before is None else created_before.timestamp()
        return self._read(
            compliance.namespace_cubes,
            tenant=tenant,
            namespace=namespace,
            created_before=before,
            limit=limit,
        )

    def insert_export(self, record: ExportRecord) -> None:
        self._write(compliance.insert_export, record=record)

    def get_export(self, tenant: str, export_id: str) -> ExportRecord | None:
        return self._read(compliance.get_export, tenant=tenant, export_id=export_id)

    # --- writes --------------------------------------------------------------------

    def write(self, batch: WriteBatch) -> None:
        """One transaction: supersede, new versions, vectors, edges, outbox rows."""
        plan = plan_batch(batch, self.dimension)
        if not plan.empty:
            self._write(write_batch, plan=plan)
            self._shards.note_written(searchable_counts(plan))

    # --- right to erasure (neo4j_erasure) ------------------------------------------

    def erasure_candidates(
        self, tenant: str, namespaces: Sequence[str], subject: ErasureSubject
    ) -> list[str]:
        spaces = list(dict.fromkeys(namespaces))
        return self._read(erasure.candidates, tenant=tenant, namespaces=spaces, subject=subject)

    def erase(
        self,
        tenant: str,
        cube_ids: Sequence[str],
        batch: WriteBatch,
        now: datetime,
        report: ErasureReport,
    ) -> int:
        plan = plan_batch(batch, self.dimension)
        return self._write(
            erasure.erase_tx, plan=plan, tenant=tenant, cube_ids=cube_ids, now=now, report=report
        )

    def get_erasure(self, tenant: str, erasure_id: str) -> ErasureReport | None:
        return self._read(erasure.get_report, tenant=tenant, erasure_id=erasure_id)

    # --- reads ---------------------------------------------------------------------

    def get_cube(self, tenant: str, cube_id: str, version: int | None = None) -> MemCube | None:
        if version is None:
            rows = self._rows(
                f"MATCH (c:{schema.CUBE} {{id: $id}})"
                " WHERE c.tenant = $tenant AND c.is_current = true RETURN c.cube_json AS j",
                id=cube_id,
                tenant=tenant,
            )
        else:
            rows = self._rows(
                f"MATCH (c:{schema.CUBE} {{ref: $ref}}) WHERE c.tenant = $tenant"
                " RETURN c.cube_json AS j",
                ref=f"{cube_id}@{int(version)}",
                tenant=tenant,
            )
        return MemCube.model_validate_json(rows[0]["j"]) if rows else None

    def get_current(self, tenant: str, cube_ids: Sequence[str]) -> list[MemCube]:
        unique = list(dict.fromkeys(cube_ids))
        if not unique:
            return []
        rows = self._rows(
            f"UNWIND $ids AS id MATCH (c:{schema.CUBE} {{id: id}})"
            " WHERE c.tenant = $tenant AND c.is_current = true RETURN c.id AS id, c.cube_json AS j",
            ids=unique,
            tenant=tenant,
        )
        found = {r["id"]: r["j"] for r in rows}
        return [MemCube.model_validate_json(found[cid]) for cid in cube_ids if cid in found]

    def get_embedding(
        self, tenant: str, cube_id: str, version: int | None = None
    ) -> np.ndarray | None:
        # Superseded versions keep their vector (only the index label goes), so
        # any stored version can answer.
        rows = self._rows(
            f"MATCH (c:{schema.CUBE} {{id: $id}}) WHERE c.tenant = $tenant"
            " AND (($version IS NULL AND c.is_current = true) OR c.version = $version)"
            " RETURN c.embedding AS e",
            id=cube_id,
            tenant=tenant,
            version=None if version is None else int(version),
        )
        if not rows or rows[0]["e"] is None:
            return None
        return np.asarray(rows[0]["e"], dtype=np.float32)

    def history(self, tenant: str, cube_id: str) -> list[MemCube]:
        rows = self._rows(
            f"MATCH (c:{schema.CUBE} {{id: $id}}) WHERE c.tenant = $tenant"
            " RETURN c.cube_json AS j ORDER BY c.version",
            id=cube_id,
            tenant=tenant,
        )
        return [MemCube.model_validate_json(r["j"]) for r in rows]

    def edges(self, tenant: str, ref_prefix: str) -> list[Edge]:
        """Edges touching one version (``id@v``) or any version of a cube (``id``)."""
        head, sep, _ = ref_prefix.rpartition("@")
        cube_id = head if sep else ref_prefix
        rows = self._rows(
            f"MATCH (c:{schema.CUBE} {{id: $id}}) WHERE c.tenant = $tenant"
            " AND ($ref IS NULL OR c.ref = $ref)"
            f" MATCH (c)-[r:{_EDGE_TYPES}]-(o:{schema.CUBE}) WHERE o.tenant = $tenant"
            " WITH DISTINCT r RETURN r.json AS j ORDER BY r.created_at, r.src, r.dst",
            id=cube_id,
            ref=ref_prefix if sep else None,
            tenant=tenant,
        )
        return [Edge.model_validate_json(r["j"]) for r in rows]

    # --- search --------------------------------------------------------------------

    def vector_search(
        self,
        tenant: str,
        namespaces: Sequence[str],
        vector: np.ndarray,
        k: int,
        filters: SearchFilters | None = None,
    ) -> list[Scored]:
        if k <= 0 or not namespaces:
            return []
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        if q.shape[0] != self.dimension:
            raise ValueError(f"query vector has {q.shape[0]} dimensions, expected {self.dimension}")
        norm = float(np.linalg.norm(q))
        if not np.isfinite(norm) or norm == 0:
            return []
        try:
            where, fparams = filter_cypher(filters, "c")
        except Unmatchable:
            return []
        params = {
            "tenant": tenant,
            "namespaces": list(dict.fromkeys(namespaces)),
            "vector": [float(x) for x in q / norm],
            **fparams,
        }
        # The filters' values belong in the key: tags_any=["rare"] and ["common"]
        # share their Cypher but not their pass rates.
        key = (tenant, tuple(sorted(params["namespaces"])), json.dumps(fparams, sort_keys=True))
        hits = self._read(
            vector_search_tx,
            params=params,
            where=where,
            k=int(k),
            dimension=self.dimension,
            rates=self._pass_rates,
            rate_key=json.dumps(key),
        )
        return [Scored(cid, score) for cid, score in hits]

    def text_search(
        self,
        tenant: str,
        namespaces: Sequence[str],
        query: str,
        k: int,
        filters: SearchFilters | None = None,
    ) -> list[Scored]:
        if k <= 0 or not namespaces:
            return []
        spaces = list(dict.fromkeys(namespaces))
        lucene = lucene_query(query, tenant, spaces)
        if lucene is None:
            return []
        try:
            where, fparams = filter_cypher(filters, "x.c")
        except Unmatchable:
            return []
        params = {"tenant": tenant, "namespaces": spaces, "query": lucene, **fparams}
        hits = self._read(text_search_tx, params=params, where=where, k=int(k))
        return [Scored(cid, score) for cid, score in hits]

    def due_for_expiry(self, now: datetime, limit: int = 1000) -> list[MemCube]:
        rows = self._rows(
            f"MATCH (c:{schema.CUBE}) WHERE c.expires_at <= $now"
            " AND c.is_current = true AND c.searchable = true"
            " RETURN c.cube_json AS j ORDER BY c.expires_at, c.ref LIMIT $limit",
            now=now.timestamp(),
            limit=int(limit),
        )
        return [MemCube.model_validate_json(r["j"]) for r in rows]

    # --- outbox ----------------------------------------------------------------------

    def outbox_pending(self, limit: int = 500) -> list[OutboxItem]:
        return self._read(outbox.pending, limit=limit)

    def outbox_ack(self, seqs: Sequence[int]) -> None:
        for chunk in outbox.chunks(seqs):
            self._write(outbox.ack, seqs=chunk)

    # --- health ----------------------------------------------------------------------

    def ping(self) -> None:
        """One round trip, retried once: the first use of a pooled connection after
        a server restart fails, and the retry gets a fresh one."""
        for attempt in (1, 2):
            try:
                self._probe()
                break
            except Unavailable:
                if attempt == 2 or self._driver is None:
                    self._down = True
                    raise
        self._ensure_schema()

    def close(self) -> None:
        self._shards.close()
        self._shards.wait_idle(30.0)
        driver, self._driver = self._driver, None
        if driver is not None:
            driver.close()


def _namespace_key(tenant: str, name: str) -> str:
    # One property stands for the pair (tenant, name); the separator cannot occur
    # in either because both are JSON-encoded.
    return json.dumps([tenant, name])
