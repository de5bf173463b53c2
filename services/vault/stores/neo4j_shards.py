"""Dedicated vector indexes for large namespaces ("shards") in the Neo4j store.

Why: Neo4j 5.26's vector index cannot filter before it searches, so a query for
one namespace over the shared index (every tenant's vectors of a dimension)
must over-fetch by the inverse of that namespace's share of the index. On a
deployment with many tenants a 100k-memory namespace can be a few percent of
the index, and the HNSW search's cost grows with the number of neighbours asked
(measured: 100k namespace at a 6% share, k'=~1,700: p50 97 ms; the same
namespace alone in its own index, k'=36: p50 16 ms). So a namespace that grows
past ``min_vectors`` searchable vectors gets an index of its own:

* Its cubes carry the label ``VecShard<dim>_<hash>`` (16 hex digits of SHA-256 over
  tenant and namespace) instead of the shared ``Vector<dim>``; each vector sits in
  exactly one index. Labels and index names are derived from a hash, never from
  client text, and checked against ``LABEL_RE`` before they enter a statement:
  Cypher cannot take a label in a parameter for DDL.
* ``(:Namespace).vector_shard`` names the label, ``vector_shard_state`` is
  ``building`` while existing vectors move and ``ready`` after. New writes read
  the label inside their own transaction, so they follow it as soon as it is set.
* Moving: create the index, wait until it is ONLINE, set the namespace to
  building, relabel its vectors in batches (each batch one transaction), wait a
  grace period, sweep once more (a write that read the namespace just before the
  label was set may commit after a batch passed it), then set ready. While
  building, searches ask both indexes; once ready, only the shard. Every later
  check of a sharded namespace sweeps stragglers again (cheap: a bounded count).
* Small namespaces stay in the shared index, where the store scans them exactly
  (``neo4j_search.SCAN_MAX``) or over-fetches moderately; ``min_vectors`` bounds
  how many indexes a deployment with many tenants ends up with.

Moves run on a background thread of the store (one at a time) so the write
that crossed the threshold returns at once; they are idempotent, so two vault
replicas moving the same namespace only repeat each other's work.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from neo4j import ManagedTransaction

from services.vault.stores.neo4j_schema import CUBE, NAMESPACE, vector_label

log = logging.getLogger(__name__)

PREFIX = "VecShard"
LABEL_RE = re.compile(rf"^{PREFIX}\d+_[0-9a-f]{{16}}$")
BUILDING = "building"
READY = "ready"
MOVE_BATCH = 5000
GRACE_S = 2.0  # longer than any write transaction of the store (batches of 1k rows)


def shard_label(dimension: int, tenant: str, namespace: str) -> str:
    digest = hashlib.sha256(f"{tenant}\0{namespace}".encode()).hexdigest()[:16]
    return f"{PREFIX}{int(dimension)}_{digest}"


def checked(label: str) -> str:
    """``label`` if it has the shape of a shard label; it goes into Cypher text."""
    if not LABEL_RE.match(label):
        raise ValueError(f"not a shard label: {label!r}")
    return label


def shard_index(label: str) -> str:
    return f"memcube_{checked(label).lower()}"


def shard_index_ddl(label: str) -> str:
    return (
        f"CREATE VECTOR INDEX {shard_index(label)} IF NOT EXISTS"
        f" FOR (c:{checked(label)}) ON c.embedding"
        " OPTIONS {indexConfig: {`vector.dimensions`: $dimension,"
        " `vector.similarity_function`: 'cosine'}}"
    )


# Removing every shard label of a superseded version (at most one exists).
REMOVE_SHARD_LABELS = f"c:$([l IN labels(c) WHERE l STARTS WITH '{PREFIX}'])"

SHARDS_OF = (
    f"MATCH (n:{NAMESPACE}) WHERE n.id IN $namespaces AND n.tenant = $tenant"
    " AND n.vector_shard IS NOT NULL"
    " RETURN n.id AS id, n.vector_shard AS label, n.vector_shard_state AS state"
)

SHARD_OF = (
    f"MATCH (n:{NAMESPACE} {{id: $namespace}}) WHERE n.tenant = $tenant"
    " RETURN n.vector_shard AS label, n.vector_shard_state AS state"
)

SET_STATE = (
    f"MATCH (n:{NAMESPACE} {{id: $namespace}}) WHERE n.tenant = $tenant"
    " SET n.vector_shard = $label, n.vector_shard_state = $state"
)


def _in_shared(base: str) -> str:
    return (
        f"MATCH (c:{CUBE}) WHERE c.tenant = $tenant AND c.namespace = $namespace"
        f" AND c.is_current = true AND c:{base}"
    )


def count_query(base: str) -> str:
    return f"{_in_shared(base)} WITH c LIMIT $cap RETURN count(c) AS n"


def move_query(base: str) -> str:
    return (
        f"{_in_shared(base)} WITH c LIMIT $batch"
        f" SET c:$($label) REMOVE c:{base} RETURN count(c) AS n"
    )


def shards_of(
    tx: ManagedTransaction, tenant: str, namespaces: list[str]
) -> dict[str, tuple[str, str]]:
    """namespace id -> (label, state) for the sharded ones among ``namespaces``."""
    rows = tx.run(SHARDS_OF, tenant=tenant, namespaces=namespaces)
    return {r["id"]: (checked(r["label"]), r["state"]) for r in rows}


Reader = Callable[..., Any]


class ShardKeeper:
    """Decides when a namespace gets its own index and moves it there.

    ``read``/``write`` run a transaction function (the store's managed
    transactions); ``schema`` runs one auto-commit statement (DDL cannot run in a
    managed transaction with data). ``min_vectors`` 0 turns sharding off.
    """

    def __init__(
        self,
        dimension: int,
        *,
        read: Reader,
        write: Reader,
        schema: Callable[[str, dict[str, Any]], None],
        min_vectors: int,
        check_every: int | None = None,
        index_wait_s: float = 300.0,
    ) -> None:
        self.dimension = dimension
        self.base = vector_label(dimension)
        self.min_vectors = min_vectors
        # A tenth of the threshold: a namespace is moved at most 10% past it, and a
        # check (one bounded count) comes at most every 1,000 vectors written.
        self.check_every = check_every or max(1, min(1000, min_vectors // 10))
        self._read = read
        self._write = write
        self._schema = schema
        self._index_wait_s = index_wait_s
        self._lock = threading.Lock()
        self._written: dict[tuple[str, str], int] = {}  # searchable rows since last check
        self._queue: list[tuple[str, str]] = []
        self._worker: threading.Thread | None = None
        self._closed = False

    # --- called by the store after each committed write ---------------------------

    def note_written(self, counts: dict[tuple[str, str], int]) -> None:
        """Counts searchable vectors written per (tenant, namespace); every
        ``check_every`` of them (and on the first write seen) the namespace is checked."""
        if self.min_vectors <= 0 or not counts:
            return
        due = []
        with self._lock:
            for key, n in counts.items():
                before = self._written.get(key)
                total = (before or 0) + n
                if before is None or total >= self.check_every:
                    due.append(key)
                    total = 0
                self._written[key] = total
            for key in due:
                if key not in self._queue:
                    self._queue.append(key)
            if due and (self._worker is None or not self._worker.is_alive()) and not self._closed:
                self._worker = threading.Thread(
                    target=self._drain, name="neo4j-shards", daemon=True
                )
                self._worker.start()

    def wait_idle(self, timeout: float = 600.0) -> None:
        """Blocks until queued checks and moves are done (tests, benchmarks)."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._queue.clear()

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._queue or self._closed:
                    self._worker = None
                    return
                tenant, namespace = self._queue.pop(0)
            try:
                self.check(tenant, namespace)
            except Exception:  # a failed check is retried at the next threshold
                log.exception("neo4j: vector shard check of %s/%s failed", tenant, namespace)

    # --- the work -----------------------------------------------------------------

    def check(self, tenant: str, namespace: str) -> str | None:
        """Moves the namespace to its own index if it is large enough (or finishes a
        move, or sweeps stragglers); returns its shard state afterwards."""

        def state(tx: ManagedTransaction) -> tuple[str | None, str | None]:
            row = tx.run(SHARD_OF, tenant=tenant, namespace=namespace).single()
            return (None, None) if row is None else (row["label"], row["state"])

        label, current = self._read(state)
        if label is None:
            n = self._count(tenant, namespace, self.min_vectors)
            if n < self.min_vectors:
                return None
            label = shard_label(self.dimension, tenant, namespace)
            log.info(
                "neo4j: namespace %s/%s holds >= %d vectors; moving it to index %s",
                tenant,
                namespace,
                n,
                shard_index(label),
            )
            self._schema(shard_index_ddl(label), {"dimension": self.dimension})
            self._schema(
                "CALL db.awaitIndex($name, $seconds)",
                {"name": shard_index(label), "seconds": self._index_wait_s},
            )
            self._set_state(tenant, namespace, label, BUILDING)
            current = BUILDING
        moved = self._move_all(tenant, namespace, checked(label))
        if current != READY:
            time.sleep(GRACE_S)
            moved += self._move_all(tenant, namespace, label)
            self._set_state(tenant, namespace, label, READY)
            log.info("neo4j: namespace %s/%s is served by its own index", tenant, namespace)
        elif moved:
            log.info("neo4j: moved %d late vectors of %s/%s to its index", moved, tenant, namespace)
        return READY

    def _count(self, tenant: str, namespace: str, cap: int) -> int:
        def work(tx: ManagedTransaction) -> int:
            row = tx.run(
                count_query(self.base), tenant=tenant, namespace=namespace, cap=cap
            ).single()
            return 0 if row is None else int(row["n"])

        result: int = self._read(work)
        return result

    def _move_all(self, tenant: str, namespace: str, label: str) -> int:
        total = 0
        while not self._closed:

            def work(tx: ManagedTransaction) -> int:
                row = tx.run(
                    move_query(self.base),
                    tenant=tenant,
                    namespace=namespace,
                    label=label,
                    batch=MOVE_BATCH,
                ).single()
                return 0 if row is None else int(row["n"])

            n: int = self._write(work)
            total += n
            if n < MOVE_BATCH:
                return total
            log.info("neo4j: %s/%s: %d vectors moved so far", tenant, namespace, total)
        return total

    def _set_state(self, tenant: str, namespace: str, label: str, state: str) -> None:
        def work(tx: ManagedTransaction) -> None:
            tx.run(
                SET_STATE, tenant=tenant, namespace=namespace, label=label, state=state
            ).consume()

        self._write(work)
