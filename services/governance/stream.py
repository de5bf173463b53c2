"""The governance audit subscriber as a faust app on Kafka (distributed mode).

One agent, in its own consumer group (``governance.app_id``), reads every fact
topic (memory.*) in batches and appends each event to the audit log
(services.governance.audit); the batch is acknowledged only after the append
returned, i.e. after the lines are fsynced, so a committed offset never points
past an event missing from the log. A message that is not a valid envelope
goes to the dead-letter topic with the error.

Web (faust's server on ``governance.web_port``): ``GET /healthz``;
``GET /readyz`` (503 while the audit log's directory is not writable or the
worker holds no partition of the fact topics, i.e. before its first rebalance
ends); ``GET /stats/audit`` (entries, path).

One worker per audit log: the log is a local file, so the app is meant to run
as a single process (several workers would each hold part of the partitions
and write their own file).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from dataclasses import dataclass
from typing import Any

import faust
from pydantic import ValidationError

from services.governance.audit import AuditEntry, AuditLog, audit_path
from services.governance.query import FileAuditReader
from shared.faust_worker import abort_worker, send_dead_letter
from shared.metrics import EVENTS_CONSUMED
from shared.ports.audit import AuditQuery
from shared.schemas.events import EventEnvelope
from shared.settings import Settings
from shared.streams import add_observability, event_topic, make_faust_app
from shared.telemetry import batch_span
from shared.topics import FACT_TOPICS

log = logging.getLogger(__name__)


@dataclass
class GovernanceStream:
    app: faust.App
    audit: AuditLog


def create_app(settings: Settings) -> GovernanceStream:
    cfg = settings.governance
    app = make_faust_app(cfg.app_id, settings, web_port=cfg.web_port)
    audit = AuditLog(audit_path(settings), fsync=cfg.fsync)
    facts = app.topic(
        *(spec.name for spec in FACT_TOPICS),
        key_serializer="raw",
        value_serializer="raw",
    )
    dead_letters = event_topic(app, settings.bus.dead_letter_topic, settings.bus)
    counters = {"received": 0, "appended": 0, "dead_lettered": 0}

    async def dead_letter(event: Any, error: BaseException) -> None:
        await send_dead_letter(dead_letters, event, error, group=cfg.app_id)
        counters["dead_lettered"] += 1

    @app.agent(facts, name="audit")
    async def audit_events(stream: Any) -> None:
        loop = asyncio.get_running_loop()
        async for events in stream.take_events(cfg.batch_size, within=cfg.batch_within_s):
            entries = []
            for event in events:
                try:
                    envelope = EventEnvelope.model_validate_json(event.value)
                except (ValidationError, ValueError, TypeError) as exc:
                    await dead_letter(event, exc)
                    continue
                entries.append(AuditEntry(event.message.topic, envelope))
            try:
                with batch_span(
                    "governance audit", [e.event.traceparent for e in entries], group=cfg.app_id
                ):
                    # File I/O and fsync off the event loop, so heartbeats go on.
                    written = await loop.run_in_executor(None, audit.append, entries)
            except Exception as exc:
                # The log cannot be written (disk full, permissions): stop rather
                # than acknowledge events that are not in it; a restart retries.
                log.exception("%s: cannot append to %s; stopping", cfg.app_id, audit.path)
                abort_worker(exc)
            counters["received"] += len(events)
            counters["appended"] += written
            for event in events:  # dead-lettered ones too: their offsets move on
                EVENTS_CONSUMED.labels(cfg.app_id, event.message.topic).inc()

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        if not os.access(audit.path.parent, os.W_OK):
            return web.json(
                {"code": "audit_log_unwritable", "detail": f"{audit.path.parent} is not writable"},
                status=503,
            )
        if app.rebalancing or not app.consumer.assignment():
            return web.json(
                {"code": "rebalancing", "detail": "no partition of the fact topics assigned yet"},
                status=503,
            )
        return web.json({"status": "ready"})

    @app.page("/stats/audit")
    async def audit_stats(web: Any, request: Any) -> Any:
        return web.json({**counters, "entries": len(audit), "path": str(audit.path)})

    reader = FileAuditReader(audit.path)
    token = cfg.service_token.get_secret_value() if cfg.service_token else None

    @app.page("/internal/audit")
    async def audit_query(web: Any, request: Any) -> Any:
        # The interface's GET /v1/audit in distributed mode: it has already checked
        # the caller's role and passes the caller's tenant; the service token keeps
        # other callers out (compared in constant time).
        given = request.headers.get("X-Memgrid-Service-Token", "").encode()
        if token is not None and not hmac.compare_digest(given, token.encode()):
            return web.json({"code": "unauthorized"}, status=401)
        params = dict(request.query)
        tenant = params.pop("tenant", "")
        try:
            q = AuditQuery.model_validate(params)
        except ValidationError as exc:
            return web.json({"code": "validation_failed", "detail": str(exc)}, status=422)
        if not tenant:
            return web.json({"code": "validation_failed", "detail": "tenant"}, status=422)
        page = await asyncio.to_thread(reader.query, tenant, q)
        return web.json(page.model_dump(mode="json"))

    add_observability(app, settings, "governance")
    return GovernanceStream(app, audit)
