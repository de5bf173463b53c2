"""The transactional outbox of the Neo4j store: rows written with the data they
announce (neo4j_write), read in order by the relay, acknowledged once published.
Each function is a unit of work for a managed transaction.

Pending rows carry the ``OutboxPending`` label, which the acknowledgement
removes, so the relay's read touches only what is still to publish.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from neo4j import ManagedTransaction

from services.vault.stores import neo4j_schema as schema
from shared.ports.graph import OutboxItem
from shared.schemas.events import EventEnvelope

KEEP_ACKED = 10_000  # acknowledged outbox rows kept for inspection
DELETE_CHUNK = 5_000  # acknowledged rows deleted per acknowledgement, at most
ACK_CHUNK = 5_000  # rows acknowledged per transaction

_PENDING = (
    f"MATCH (o:{schema.PENDING}) WHERE o.seq IS NOT NULL"
    " RETURN o.seq AS seq, o.topic AS topic, o.event AS event ORDER BY o.seq LIMIT $limit"
)
_ACK = (
    f"UNWIND $seqs AS s MATCH (o:{schema.OUTBOX} {{seq: s}}) WHERE o.acked = false"
    f" SET o.acked = true, o.acked_at = $now REMOVE o:{schema.PENDING}"
)
_TRIM = (
    f"MATCH (o:{schema.OUTBOX}) WHERE o.seq <= $cut AND o.acked = true WITH o LIMIT $chunk DELETE o"
)


def pending(tx: ManagedTransaction, limit: int) -> list[OutboxItem]:
    return [
        OutboxItem(int(r["seq"]), r["topic"], EventEnvelope.model_validate_json(r["event"]))
        for r in tx.run(_PENDING, limit=int(limit))
    ]


def chunks(seqs: Sequence[int]) -> list[list[int]]:
    """Sorted unique ``seqs`` in transactions of ACK_CHUNK: acknowledging is
    idempotent, and one transaction of 100k row updates would outgrow the
    server's transaction memory limit."""
    unique = sorted({int(s) for s in seqs})
    return [unique[i : i + ACK_CHUNK] for i in range(0, len(unique), ACK_CHUNK)]


def ack(tx: ManagedTransaction, seqs: list[int]) -> None:
    """Acknowledges sorted ``seqs`` and trims old acknowledged rows."""
    tx.run(_ACK, seqs=seqs, now=time.time()).consume()
    # Counted from the newest acknowledged row rather than the counter, so
    # acknowledging never touches the node every writer locks.
    tx.run(_TRIM, cut=seqs[-1] - KEEP_ACKED, chunk=DELETE_CHUNK).consume()
