"""The compliance scanner: per tenant and namespace, how many memories hold which
kind of personal data or secret (docs/compliance.md#the-compliance-scanner).

The vault scans every text at ingest and puts the kinds it found on the
memory.created / memory.updated events (``sensitivity_tags``). The scanner keeps,
per memory, the tags of its newest version and counts them; a deleted or expired
memory no longer counts. Its state is a small SQLite file beside the audit log
(``$DATA_DIR/governance/compliance.db``), written before a batch is
acknowledged. Events arrive at least once and not always in order, so a fact
about a version at or below the one already recorded changes nothing.

Embedded mode subscribes :class:`ComplianceCounts` on the in-process bus
(:func:`subscribe_scanner`); distributed mode runs it as a faust agent in the
governance worker (:func:`add_compliance_agent`, web page ``/stats/compliance``).
faust is imported inside that function only.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shared.ports.bus import EventBus, Subscription
from shared.schemas.events import (
    EventEnvelope,
    MemoryCreated,
    MemoryDeleted,
    MemoryExpired,
    MemoryUpdated,
)
from shared.settings import Settings

log = logging.getLogger(__name__)

TOPICS = [MemoryCreated.topic, MemoryUpdated.topic, MemoryDeleted.topic, MemoryExpired.topic]
GROUP = "governance-compliance"  # the embedded subscription's consumer group

_DDL = """
CREATE TABLE IF NOT EXISTS cubes (
    tenant    TEXT NOT NULL,
    cube_id   TEXT NOT NULL,
    namespace TEXT NOT NULL,
    version   INTEGER NOT NULL,
    PRIMARY KEY (tenant, cube_id)
);
CREATE TABLE IF NOT EXISTS cube_tags (
    tenant    TEXT NOT NULL,
    cube_id   TEXT NOT NULL,
    namespace TEXT NOT NULL,
    tag       TEXT NOT NULL,
    PRIMARY KEY (tenant, cube_id, tag)
);
CREATE INDEX IF NOT EXISTS cube_tags_space ON cube_tags (tenant, namespace, tag);
"""


def counts_path(settings: Settings) -> Path:
    return settings.data_dir / "governance" / "compliance.db"


class ComplianceCounts:
    """Sensitive memories per tenant, namespace and kind. Thread-safe."""

    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(_DDL)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def apply(self, events: Iterable[EventEnvelope]) -> int:
        """Records the events in one transaction; returns how many changed a memory."""
        changed = 0
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for ev in events:
                    changed += self._apply_one(ev)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return changed

    def _apply_one(self, ev: EventEnvelope) -> int:
        data = ev.parse()
        if isinstance(data, MemoryCreated | MemoryUpdated):
            tags = sorted(set(data.sensitivity_tags))
        elif isinstance(data, MemoryDeleted | MemoryExpired):
            tags = []  # gone from the namespace: it no longer counts
        else:
            return 0
        if ev.namespace is None:
            return 0
        row = self._conn.execute(
            "SELECT version FROM cubes WHERE tenant = ? AND cube_id = ?", (ev.tenant, data.cube_id)
        ).fetchone()
        if row is not None and int(row[0]) >= data.version:
            return 0  # a duplicate, or older than what is recorded
        self._conn.execute(
            "INSERT INTO cubes (tenant, cube_id, namespace, version) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (tenant, cube_id) DO UPDATE SET version = excluded.version",
            (ev.tenant, data.cube_id, ev.namespace, data.version),
        )
        self._conn.execute(
            "DELETE FROM cube_tags WHERE tenant = ? AND cube_id = ?", (ev.tenant, data.cube_id)
        )
        self._conn.executemany(
            "INSERT INTO cube_tags (tenant, cube_id, namespace, tag) VALUES (?, ?, ?, ?)",
            [(ev.tenant, data.cube_id, ev.namespace, t) for t in tags],
        )
        return 1

    def stats(self, tenant: str | None = None) -> dict[str, Any]:
        """``{"tenants": {tenant: {namespace: {"sensitive_memories": n, "by_kind":
        {tag: n}}}}}``, only namespaces with at least one sensitive memory."""
        where, params = ("WHERE tenant = ?", (tenant,)) if tenant is not None else ("", ())
        with self._lock:
            by_kind = self._conn.execute(
                f"SELECT tenant, namespace, tag, COUNT(*) FROM cube_tags {where}"
                " GROUP BY tenant, namespace, tag ORDER BY tenant, namespace, tag",
                params,
            ).fetchall()
            totals = self._conn.execute(
                f"SELECT tenant, namespace, COUNT(DISTINCT cube_id) FROM cube_tags {where}"
                " GROUP BY tenant, namespace",
                params,
            ).fetchall()
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for t, ns, n in totals:
            out.setdefault(t, {})[ns] = {"sensitive_memories": n, "by_kind": {}}
        for t, ns, tag, n in by_kind:
            out[t][ns]["by_kind"][tag] = n
        return {"tenants": out}


def subscribe_scanner(bus: EventBus, counts: ComplianceCounts) -> Subscription:
    """Embedded mode: the scanner on the in-process bus."""

    def handle(event: EventEnvelope) -> None:
        counts.apply([event])

    return bus.subscribe(GROUP, TOPICS, handle)


def add_compliance_agent(app: Any, settings: Settings) -> ComplianceCounts:
    """Distributed mode: a faust agent of the governance app consuming the memory
    facts in batches, and the page ``/stats/compliance`` (``?tenant=`` narrows it).
    Returns the counts, which the caller closes when the worker stops."""
    from shared.faust_worker import abort_worker, send_dead_letter
    from shared.streams import event_topic

    cfg = settings.governance
    counts = ComplianceCounts(counts_path(settings))
    facts = app.topic(*TOPICS, key_serializer="raw", value_serializer="raw")
    dead_letters = event_topic(app, settings.bus.dead_letter_topic, settings.bus)

    @app.agent(facts, name="compliance")
    async def scan(stream: Any) -> None:
        loop = asyncio.get_running_loop()
        async for events in stream.take_events(cfg.batch_size, within=cfg.batch_within_s):
            envelopes = []
            for event in events:
                try:
                    envelopes.append(EventEnvelope.model_validate_json(event.value))
                except (ValidationError, ValueError, TypeError) as exc:
                    group = f"{cfg.app_id}:compliance"
                    await send_dead_letter(dead_letters, event, exc, group=group)
            try:
                # SQLite off the event loop; acknowledged only after the commit.
                await loop.run_in_executor(None, counts.apply, envelopes)
            except Exception as exc:
                log.exception("%s: cannot record compliance counts; stopping", cfg.app_id)
                abort_worker(exc)

    @app.page("/stats/compliance")
    async def compliance_stats(web: Any, request: Any) -> Any:
        tenant = request.query.get("tenant")
        return web.json(counts.stats(tenant))

    return counts
