"""TrainerService: the trainer's side of the bus (docs/trainer.md#service).

It consumes, in one consumer group (``memgrid-trainer``):

* ``commands.adapter.train`` (TrainAdapter, from the scheduler or from
  ``POST /v1/namespaces/{id}/adapters``): read the named cubes from the vault,
  distil them (``job.train_adapter``: dataset, LoRA training on Ray, evaluation,
  gate, adapter files in the BlobStore), record the adapter in the vault's graph
  (``lora_<namespace>`` version with DERIVED_FROM edges) and publish
  memory.promoted (plaintext → parametric) so inference serves it. A run the gate
  rejects publishes nothing: the scheduler's pending command times out.
* ``commands.adapter.retire`` (RetireAdapter): the adapter is withdrawn in the
  graph (the scheduler publishes memory.demoted itself).
* memory.updated / memory.deleted / memory.expired: every adapter containing the
  cube (DERIVED_FROM, from the graph) at an older version, or containing a cube
  that is gone, becomes ``stale``; then ``trainer.stale_policy`` acts:
  ``withdraw`` stops serving it (memory.demoted); ``retrain`` trains a new adapter
  from the base model on the remaining sources (current versions) and promotes it
  in place of the stale one. A source that was *removed* (deleted, expired,
  archived, erased) makes the stale adapter withdrawn at once, before the
  retraining: an adapter that can still complete an erased fact must not serve
  for the minutes a training takes. An edited source keeps the old adapter
  serving until its replacement is promoted. A source *erased* (memory.deleted,
  reason ``erased``; docs/compliance.md#right-to-erasure) also has the files of
  every adapter containing it that no longer serves deleted from the BlobStore,
  the withdrawn one's before its retraining starts.

Idempotent, as the bus requires (at-least-once): a TrainAdapter whose command id
is already recorded on an adapter of the namespace trains nothing (its
memory.promoted is published again, with the same event id, in case the first
publish was lost); promoted/demoted event ids are derived from the command or
adapter ids, so a redelivery publishes the same event. Training blocks this
group's dispatcher only (one thread per subscription; Kafka: see
``bus.max_poll_interval_s``).
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from shared.errors import MemgridError, NotFound
from shared.lora.store import AdapterStore
from shared.metrics import TRAINING_DURATION, TRAINING_JOBS
from shared.ports.blob import BlobStore
from shared.ports.bus import EventBus, Subscription
from shared.ports.vault import VaultAPI
from shared.schemas.adapters import AdapterDetails, AdapterRecord, AdapterState
from shared.schemas.api import Caller
from shared.schemas.commands import RetireAdapter, TrainAdapter
from shared.schemas.erasure import ERASED
from shared.schemas.events import (
    EventEnvelope,
    MemoryDeleted,
    MemoryDemoted,
    MemoryExpired,
    MemoryPromoted,
    MemoryUpdated,
    make_event,
)
from shared.schemas.memcube import MemCube, ParametricPayload, Tier
from shared.settings import Settings

log = logging.getLogger(__name__)

GROUP = "memgrid-trainer"
COMMAND_TOPICS = (TrainAdapter.topic, RetireAdapter.topic)
LIFECYCLE_TOPICS = (MemoryUpdated.topic, MemoryDeleted.topic, MemoryExpired.topic)
TOPICS = COMMAND_TOPICS + LIFECYCLE_TOPICS
SOURCE = "/memgrid/trainer"
SYSTEM_PRINCIPAL = "system:trainer"
_SEEN = 4096
_LIVE = (AdapterState.serving, AdapterState.stale)

TrainFn = Callable[..., Any]  # job.train_adapter's signature; tests pass a fake


class TrainerService:
    def __init__(
        self,
        settings: Settings,
        vault: VaultAPI,
        blobs: BlobStore,
        bus: EventBus,
        train: TrainFn | None = None,
    ) -> None:
        """``train``: defaults to ``services.trainer.job.train_adapter`` (imported on
        first use: torch and ray load only when something is trained)."""
        self.settings = settings
        self.vault = vault
        self.blobs = blobs
        self.bus = bus
        self._train = train
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self.subscription: Subscription | None = None

    def subscribe(self) -> Subscription:
        self.subscription = self.bus.subscribe(GROUP, TOPICS, self.handle)
        return self.subscription

    def close(self) -> None:
        if self.subscription is not None:
            self.subscription.close()
            self.subscription = None

    # --- dispatch ---------------------------------------------------------------------

    def handle(self, event: EventEnvelope) -> None:
        """The bus handler. Raising makes the bus redeliver (then dead-letter)."""
        if event.topic == TrainAdapter.topic:
            self.train_command(event.tenant, TrainAdapter.model_validate(event.data))
        elif event.topic == RetireAdapter.topic:
            cmd = RetireAdapter.model_validate(event.data)
            self._set_state(event.tenant, cmd.target_id, AdapterState.withdrawn, cmd.reason)
        elif event.topic in LIFECYCLE_TOPICS:
            self.source_changed(event)

    # --- training ---------------------------------------------------------------------

    def train_command(self, tenant: str, cmd: TrainAdapter) -> AdapterRecord | None:
        """Carries out one TrainAdapter; returns the adapter recorded (None: gated out
        or nothing usable to train on)."""
        if self._done(cmd.command_id):
            return None
        done = self._recorded(tenant, cmd.namespace, cmd.command_id)
        if done is not None:  # trained before a restart or a redelivery
            if done.state in _LIVE:
                self._publish_promoted(done, cmd.reason, cmd.command_id)
            self._remember(cmd.command_id)
            return done
        record = self._train_and_record(
            tenant, cmd.namespace, cmd.cube_ids, cmd.reason, command_id=cmd.command_id
        )
        self._remember(cmd.command_id)
        return record

    def _train_and_record(
        self,
        tenant: str,
        namespace: str,
        cube_ids: Sequence[str],
        reason: str,
        *,
        command_id: str | None,
        replaces: AdapterRecord | None = None,
    ) -> AdapterRecord | None:
        from services.trainer.job import Fact  # dataclass only; no torch

        facts = [
            Fact(cube.id, cube.version, cube.text or "")
            for cube in self._current(tenant, namespace, cube_ids)
        ]
        if not facts:
            log.warning("training %s/%s: none of its memories is usable", tenant, namespace)
            return None
        train = self._train_fn()
        existing = self.vault.list_adapters(tenant, namespace)
        name = _adapter_name(namespace)
        version = f"v{len(existing) + 1}"

        def progress(message: str, fraction: float) -> None:
            log.info(
                "training %s@%s (%s): %3.0f%% %s", name, version, namespace, fraction * 100, message
            )

        TRAINING_JOBS.labels("started").inc()
        started = time.monotonic()
        try:
            outcome = train(
                self.settings,
                self.blobs,
                tenant,
                namespace,
                facts,
                name=name,
                version=version,
                progress=progress,
            )
        except BaseException:
            _job_finished("failed", started)
            raise
        if not outcome.accepted or outcome.adapter_id is None:
            _job_finished("rejected", started)
            log.warning(
                "adapter %s@%s for %s not published: %s", name, version, namespace, outcome.reason
            )
            return None
        _job_finished("succeeded", started)
        payload = ParametricPayload(
            adapter_id=outcome.adapter_id,
            blob_key=outcome.manifest_key or "",
            manifest_key=outcome.manifest_key or "",
            base_model_fingerprint=outcome.base_model,
            source_refs=[f"{f.cube_id}@{f.version}" for f in facts],
        )
        details = AdapterDetails(
            hyperparameters=dict(outcome.hyperparameters),
            metrics={k: float(v) for k, v in outcome.metrics.items()},
            data_size=outcome.data_size,
            duration_s=outcome.duration_s,
            command_id=command_id,
        )
        why = f"{reason}; {outcome.reason}"
        record = self.vault.record_adapter(tenant, namespace, payload, details, why)
        if replaces is not None and replaces.state in _LIVE:
            self._set_state(
                tenant, replaces.id, AdapterState.superseded, f"replaced by {record.id}"
            )
        self._publish_promoted(record, why, command_id)
        log.info("adapter %s serves %s (%d facts): %s", record.id, namespace, len(facts), why)
        return record

    def _train_fn(self) -> TrainFn:
        if self._train is None:
            from services.trainer.job import train_adapter

            self._train = train_adapter
        return self._train

    # --- staleness --------------------------------------------------------------------

    def source_changed(self, event: EventEnvelope) -> None:
        """A source cube was edited or went away: its adapters go stale, then the policy."""
        data = event.parse()
        assert isinstance(data, MemoryUpdated | MemoryDeleted | MemoryExpired)
        if isinstance(data, MemoryUpdated):
            if "text" not in data.changed and "lifecycle" not in data.changed:
                return  # metadata or tags: the adapter's facts are unchanged
            removed = not self._live(event.tenant, data.cube_id)
            if "text" not in data.changed and not removed:
                return  # a lifecycle change that kept the cube in play
        else:
            removed = True
        erased = isinstance(data, MemoryDeleted) and data.reason == ERASED
        for adapter in self.vault.adapters_containing(event.tenant, data.cube_id):
            if adapter.state not in _LIVE:
                continue
            stale = [
                ref
                for ref in adapter.sources
                if _cube_of(ref) == data.cube_id and (removed or _version_of(ref) < data.version)
            ]
            if not stale:
                continue  # already trained on this version (a redelivery, or retrained)
            why = f"source {data.cube_id} {'removed' if removed else 'edited'} ({event.topic})"
            marked = self._set_state(event.tenant, adapter.id, AdapterState.stale, why, stale)
            if marked is not None:
                self._apply_policy(event.tenant, marked, why, removed, erased)
        if erased:  # adapters that stopped serving before, or whose withdrawal was redelivered
            self._delete_files(event.tenant, data.cube_id)

    def _delete_files(self, tenant: str, cube_id: str) -> None:
        """An erased source: the files of every adapter that no longer serves and was
        distilled from it are deleted (the weights can still complete the erased
        facts); the records stay, content-free, for provenance."""
        files = AdapterStore(self.blobs)
        for adapter in self.vault.adapters_containing(tenant, cube_id):
            if adapter.state not in _LIVE:
                files.delete(tenant, adapter.namespace, adapter.id)
                log.info("adapter %s: files deleted (a source was erased)", adapter.id)

    def _apply_policy(
        self, tenant: str, adapter: AdapterRecord, why: str, removed: bool, erased: bool = False
    ) -> None:
        if self.settings.trainer.stale_policy == "withdraw" or removed:
            self._withdraw(tenant, adapter, why)
            if erased:  # before the retraining: its weights can complete the erased facts
                AdapterStore(self.blobs).delete(tenant, adapter.namespace, adapter.id)
            if self.settings.trainer.stale_policy == "withdraw":
                return
        # The sources' current versions; removed ones are skipped by _current.
        record = self._train_and_record(
            tenant,
            adapter.namespace,
            [_cube_of(r) for r in adapter.sources],
            f"retrained without stale sources of {adapter.id}",
            command_id=None,
            replaces=adapter,
        )
        if record is None and not removed:
            self._withdraw(tenant, adapter, f"{why}; its retraining was not published")

    def _withdraw(self, tenant: str, adapter: AdapterRecord, why: str) -> None:
        self._set_state(tenant, adapter.id, AdapterState.withdrawn, why)
        demoted = MemoryDemoted(
            cube_ids=[_cube_of(r) for r in adapter.sources],
            from_tier=Tier.parametric,
            to_tier=Tier.plaintext,
            target_id=adapter.id,
            reason=why,
        )
        self._publish(demoted, tenant, adapter.namespace, _event_id(adapter.id, "withdrawn"))

    # --- helpers ----------------------------------------------------------------------

    def _current(self, tenant: str, namespace: str, cube_ids: Sequence[str]) -> list[MemCube]:
        caller = Caller(tenant=tenant, principal=SYSTEM_PRINCIPAL)
        cubes = []
        for cube_id in dict.fromkeys(cube_ids):
            try:
                cube = self.vault.get_memory(caller, cube_id)
            except NotFound:
                continue  # deleted since the decision
            if cube.namespace == namespace and cube.tier == Tier.plaintext and cube.searchable:
                cubes.append(cube)
        return cubes

    def _live(self, tenant: str, cube_id: str) -> bool:
        try:
            cube = self.vault.get_memory(Caller(tenant=tenant, principal=SYSTEM_PRINCIPAL), cube_id)
        except NotFound:
            return False
        return cube.searchable

    def _recorded(self, tenant: str, namespace: str, command_id: str) -> AdapterRecord | None:
        for adapter in self.vault.list_adapters(tenant, namespace):
            if adapter.details.command_id == command_id:
                return adapter
        return None

    def _set_state(
        self,
        tenant: str,
        adapter_id: str,
        state: AdapterState,
        reason: str,
        stale_sources: Sequence[str] = (),
    ) -> AdapterRecord | None:
        try:
            return self.vault.set_adapter_state(tenant, adapter_id, state, reason, stale_sources)
        except NotFound:
            log.info("adapter %s: not found, nothing to mark %s", adapter_id, state)
            return None
        except MemgridError as exc:
            if exc.status >= 500:
                raise  # unavailable: the bus redelivers
            log.warning("adapter %s: cannot mark %s: %s", adapter_id, state, exc)
            return None

    def _publish_promoted(self, record: AdapterRecord, reason: str, command_id: str | None) -> None:
        promoted = MemoryPromoted(
            cube_ids=[_cube_of(r) for r in record.sources],
            from_tier=Tier.plaintext,
            to_tier=Tier.parametric,
            target_id=record.id,
            reason=reason,
            command_id=command_id,
        )
        self._publish(promoted, record.tenant, record.namespace, _event_id(record.id, "promoted"))

    def _publish(self, data: Any, tenant: str, namespace: str, event_id: str) -> None:
        event = make_event(data, source=SOURCE, tenant=tenant, namespace=namespace)
        event = event.model_copy(update={"id": event_id})
        self.bus.publish(data.topic, event, key=namespace)

    def _done(self, command_id: str) -> bool:
        with self._lock:
            return command_id in self._seen

    def _remember(self, command_id: str) -> None:
        with self._lock:
            self._seen[command_id] = None
            while len(self._seen) > _SEEN:
                self._seen.popitem(last=False)


def _job_finished(outcome: str, started: float) -> None:
    """``memgrid_training_jobs_total`` and the duration histogram (shared.metrics)."""
    TRAINING_JOBS.labels(outcome).inc()
    TRAINING_DURATION.labels(outcome).observe(time.monotonic() - started)


def _cube_of(ref: str) -> str:
    return ref.rpartition("@")[0] or ref


def _version_of(ref: str) -> int:
    tail = ref.rpartition("@")[2]
    return int(tail) if tail.isdigit() else 0


def _event_id(adapter_id: str, what: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"memgrid:adapter:{adapter_id}:{what}"))


def _adapter_name(namespace: str) -> str:
    """An adapter name (letters, digits, '.', '_', '-') for the namespace."""
    name = re.sub(r"[^A-Za-z0-9._\-]", "-", namespace).strip("-._") or "adapter"
    return name[:100]
