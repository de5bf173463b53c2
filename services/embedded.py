"""Composition root of embedded mode: every service in one process, one bus.

This module (with services/cli.py) is the only place that imports more than one
service: it wires them together the way separate processes would be wired by
HTTP and Kafka in distributed mode.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from fastapi import FastAPI

from services.governance.audit import AuditLog, audit_path, subscribe_audit
from services.governance.compliance import ComplianceCounts, counts_path, subscribe_scanner
from services.governance.query import FileAuditReader
from services.inference.activation import COMMAND_GROUP, COMMAND_TOPICS
from services.inference.local import LocalInference
from services.interface.app import create_app
from services.scheduler.inproc import start_scheduler
from services.trainer.service import TrainerService
from services.vault.factory import build_vault
from shared.adapters import create_blob_store, create_event_bus
from shared.clients.inference_http import HttpInference
from shared.clients.scheduler_inproc import InProcessScheduler
from shared.ports.inference import InferenceAPI
from shared.schemas.memcube import utcnow
from shared.settings import Settings
from shared.telemetry import setup_tracing

log = logging.getLogger(__name__)


def build_embedded(
    settings: Settings, *, clock: Callable[[], datetime] = utcnow
) -> tuple[FastAPI, Callable[[], None]]:
    """Returns the public app and a function that stops everything it started.
    ``clock`` is the vault's and the scheduler's (tests pass a simulated one)."""
    setup_tracing(settings.telemetry, "embedded")
    bus = create_event_bus(settings.bus)
    vault = build_vault(settings, bus=bus, clock=clock)
    vault.start()
    # Usage, policies and expiry on the same bus; its state in data_dir/scheduler.db.
    scheduler = start_scheduler(
        bus, settings.scheduler, settings.data_dir, vault=vault, clock=clock
    )
    # POST /v1/chat: the inference logic in this process, the model loaded on the
    # first chat (no Ray: the API must start fast; docs/inference.md#serving), or
    # a Ray Serve app when MEMGRID_INFERENCE__SERVE__URL names one.
    cfg = settings.inference.serve
    commands = None
    if cfg.url.startswith("http"):
        inference: InferenceAPI = HttpInference(cfg)  # that app consumes the commands itself
    else:
        local = LocalInference(settings, vault, bus=bus)
        inference = local
        # The scheduler's BuildActivation / EvictActivation, on the same bus.
        commands = bus.subscribe(COMMAND_GROUP, COMMAND_TOPICS, local.handle_command)
    # The scheduler's TrainAdapter / RetireAdapter and the sources' lifecycle events;
    # torch and Ray load on the first training only.
    trainer = TrainerService(settings, vault, create_blob_store(settings.blob), bus)
    if settings.trainer.enabled:
        trainer.subscribe()
    # The compliance scanner: sensitive memories per namespace, from the facts.
    compliance = ComplianceCounts(counts_path(settings))
    scanning = subscribe_scanner(bus, compliance)
    # The audit subscriber: every fact and the API's decisions, hash-chained.
    audit_log = AuditLog(audit_path(settings), fsync=settings.governance.fsync)
    auditing = subscribe_audit(bus, audit_log, settings.governance.app_id)
    # GET /v1/memories/{id}/usage asks it through the SchedulerAPI port.
    app = create_app(
        settings,
        vault,
        InProcessScheduler(scheduler),
        inference,
        bus=bus,
        audit=FileAuditReader(audit_log.path),
    )
    app.state.scheduler = scheduler  # the scheduler itself (tests tick it)
    app.state.trainer = trainer
    app.state.compliance_counts = compliance

    def close() -> None:
        if commands is not None:
            commands.close()
        trainer.close()
        inference.close()
        scheduler.close()  # first: its last tick may still call the vault
        vault.close()
        scanning.close()
        try:
            bus.flush(timeout_s=120)  # the last facts and decisions reach the audit log
        except TimeoutError:
            log.warning("embedded shutdown: the audit log did not catch up with the bus")
        auditing.close()
        bus.close()
        compliance.close()
        audit_log.close()

    return app, close


def serve(settings: Settings) -> None:
    """``memgrid serve``: everything in one process on ``settings.port``."""
    import uvicorn

    from shared.logging_setup import uvicorn_log_config

    app, close = build_embedded(settings)
    print(f"memgrid (embedded) on http://{settings.host}:{settings.port}", flush=True)
    try:
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            log_config=uvicorn_log_config(settings),
        )
    finally:
        close()
