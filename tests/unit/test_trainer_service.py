"""TrainerService on a real (SQLite) vault and the in-process bus, with a fake
training function: commands, idempotency, staleness and the two policies."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from services.trainer.job import Fact, TrainOutcome
from services.trainer.service import TrainerService
from services.vault.service import Vault
from shared.adapters import create_blob_store, create_event_bus
from shared.ports.bus import EventBus
from shared.schemas.adapters import AdapterState
from shared.schemas.api import Caller, CubeDraft, MemoryPatch
from shared.schemas.commands import RetireAdapter, TrainAdapter, make_command
from shared.schemas.events import EventEnvelope
from shared.schemas.memcube import EdgeKind, utcnow
from shared.settings import Settings
from tests.unit.test_vault import Clock, Recorder, make_vault
from tests.unit.test_vault_lifecycle import new_tenant

pytestmark = pytest.mark.unit

LIFECYCLE = ["memory.updated", "memory.deleted", "memory.expired"]


@dataclass
class FakeTrain:
    """Stands in for job.train_adapter: records the facts, invents an adapter id."""

    accept: bool = True
    calls: list[list[Fact]] = field(default_factory=list)

    def __call__(
        self,
        settings: Settings,
        blobs: Any,
        tenant: str,
        namespace: str,
        facts: list[Fact],
        *,
        name: str,
        version: str,
        progress: Any = None,
    ) -> TrainOutcome:
        self.calls.append(list(facts))
        if progress is not None:
            progress("training", 1.0)
        refs = ",".join(f"{f.cube_id}@{f.version}:{f.text}" for f in facts)
        digest = hashlib.sha256(refs.encode()).hexdigest()[:16]
        return TrainOutcome(
            accepted=self.accept,
            adapter_id=f"{name}@{version}+{digest}" if self.accept else None,
            manifest_key=f"{tenant}/{namespace}/sha256/{digest}" if self.accept else None,
            base_model="tiny[w:0 t:0 float32]",
            metrics={"recall_before": 0.0, "recall_after": 1.0 if self.accept else 0.1},
            hyperparameters={"r": 4},
            data_size=3 * len(facts),
            duration_s=0.5,
            reason="recall 0.00 -> 1.00" if self.accept else "recall gain 0.10 < 0.50",
        )


@dataclass
class Env:
    vault: Vault
    bus: EventBus
    caller: Caller
    ns: str
    rec: Recorder
    train: FakeTrain
    service: TrainerService

    def add(self, *texts: str) -> list[str]:
        drafts = [CubeDraft(text=t) for t in texts]
        return [c.id for c in self.vault.create_memories(self.caller, self.ns, drafts)]

    def command(self, cube_ids: list[str], command_id: str = "") -> TrainAdapter:
        return TrainAdapter(
            command_id=command_id or "0f0e3b9e-2a55-4b8f-9a4e-9d7a7b7c0c01",
            namespace=self.ns,
            reason="stable: 3 sessions",
            issued_at=utcnow(),
            cube_ids=cube_ids,
        )

    def deliver_lifecycle(self) -> None:
        """Hands the vault's lifecycle events to the service, as its subscription would."""
        self.vault.relay.drain()
        self.bus.flush()
        for event in [e for e in self.rec.events if e.topic in LIFECYCLE]:
            self.service.handle(event)
        self.rec.events[:] = [e for e in self.rec.events if e.topic not in LIFECYCLE]

    def published(self, topic: str) -> list[EventEnvelope]:
        self.bus.flush()
        return [e for e in self.rec.events if e.topic == topic]


def make_env(tmp_path: Path, policy: str = "retrain", accept: bool = True) -> Env:
    settings = Settings(data_dir=tmp_path, trainer={"stale_policy": policy})  # type: ignore[arg-type]
    bus = create_event_bus(settings.bus)
    vault = make_vault(tmp_path, bus, Clock())
    vault.start()
    rec = Recorder(bus, ["memory.promoted", "memory.demoted", *LIFECYCLE])
    caller, ns = new_tenant(vault, "acme")
    train = FakeTrain(accept=accept)
    service = TrainerService(settings, vault, create_blob_store(settings.blob), bus, train=train)
    return Env(vault, bus, caller, ns, rec, train, service)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = make_env(tmp_path)
    yield e
    e.vault.close()
    e.bus.close()


def test_a_command_trains_records_and_promotes_once(env: Env) -> None:
    ids = env.add("Quillon Marsh keeps bees in Tarrow.", "The Vell bridge is painted green.")
    cmd = env.command(ids)
    event = make_command(cmd, tenant=env.caller.tenant)
    env.service.handle(event)
    env.service.handle(event)  # redelivered
    env.service = TrainerService(
        env.service.settings, env.vault, env.service.blobs, env.bus, train=env.train
    )
    env.service.handle(event)  # after a restart: the graph says it is done
    assert len(env.train.calls) == 1, "the same command trains once"
    [record] = env.vault.list_adapters(env.caller.tenant, env.ns)
    assert record.state == AdapterState.serving and record.details.command_id == cmd.command_id
    assert sorted(record.sources) == sorted(f"{i}@1" for i in ids)
    assert record.details.metrics["recall_after"] == 1.0
    containing = env.vault.adapters_containing(env.caller.tenant, ids[0])
    assert [a.id for a in containing] == [record.id]
    edges = env.vault._store.edges(env.caller.tenant, ids[0])
    assert any(e.kind == EdgeKind.DERIVED_FROM for e in edges)
    promoted = env.published("memory.promoted")
    assert {e.id for e in promoted} == {promoted[0].id}, "republished with the same id"
    assert promoted[0].data["target_id"] == record.id
    assert promoted[0].data["to_tier"] == "parametric"


def test_a_gated_out_run_publishes_nothing(tmp_path: Path) -> None:
    env = make_env(tmp_path, accept=False)
    ids = env.add("Orla Fenwick was born in Caskmoor.")
    env.service.handle(make_command(env.command(ids), tenant=env.caller.tenant))
    assert env.vault.list_adapters(env.caller.tenant, env.ns) == []
    assert env.published("memory.promoted") == []


def test_an_edited_source_retrains_on_its_new_text(env: Env) -> None:
    a, b = env.add("Dr. Ilse Varno lives in Hollin.", "Kesh port opens at dawn.")
    env.service.handle(make_command(env.command([a, b]), tenant=env.caller.tenant))
    [old] = env.vault.list_adapters(env.caller.tenant, env.ns)
    env.vault.update_memory(env.caller, a, MemoryPatch(text="Dr. Ilse Varno lives in Brask."))
    env.deliver_lifecycle()
    assert [f.text for f in env.train.calls[-1]] == [
        "Dr. Ilse Varno lives in Brask.",
        "Kesh port opens at dawn.",
    ]
    now = {r.id: r for r in env.vault.list_adapters(env.caller.tenant, env.ns)}
    assert now[old.id].state == AdapterState.superseded
    assert f"{a}@1" in now[old.id].stale_sources
    [new] = [r for r in now.values() if r.state == AdapterState.serving]
    assert f"{a}@2" in new.sources
    assert env.published("memory.demoted") == [], "an edit keeps serving until replaced"
    env.deliver_lifecycle()  # nothing new: redelivery-safe
    assert len(env.train.calls) == 2


def test_a_deleted_source_is_unlearned(env: Env) -> None:
    a, b, c = env.add("Tamsin Orr owns a red kayak.", "Gilvane has two moons.", "Bo likes rye.")
    env.service.handle(make_command(env.command([a, b, c]), tenant=env.caller.tenant))
    [old] = env.vault.list_adapters(env.caller.tenant, env.ns)
    env.vault.delete_memory(env.caller, b)
    env.deliver_lifecycle()
    assert [f.cube_id for f in env.train.calls[-1]] == [a, c]
    states = {r.id: r.state for r in env.vault.list_adapters(env.caller.tenant, env.ns)}
    assert states[old.id] == AdapterState.withdrawn, "withdrawn before the retraining"
    [demoted] = env.published("memory.demoted")
    assert demoted.data["target_id"] == old.id and demoted.data["from_tier"] == "parametric"
    [new_id] = [i for i, s in states.items() if s == AdapterState.serving]
    assert env.published("memory.promoted")[-1].data["target_id"] == new_id
    assert [x.id for x in env.vault.adapters_containing(env.caller.tenant, b)] == [old.id]


def test_withdraw_policy_stops_serving_without_retraining(tmp_path: Path) -> None:
    env = make_env(tmp_path, policy="withdraw")
    a, b = env.add("Pell Arden sails the Mirrow.", "Hask Vale grows blue pears.")
    env.service.handle(make_command(env.command([a, b]), tenant=env.caller.tenant))
    env.vault.update_memory(env.caller, a, MemoryPatch(text="Pell Arden sails the Oster."))
    env.deliver_lifecycle()
    assert len(env.train.calls) == 1
    [record] = env.vault.list_adapters(env.caller.tenant, env.ns)
    assert record.state == AdapterState.withdrawn and f"{a}@1" in record.stale_sources
    assert [e.data["target_id"] for e in env.published("memory.demoted")] == [record.id]


def test_retire_command_withdraws(env: Env) -> None:
    ids = env.add("Nessa Quill paints lighthouses.")
    env.service.handle(make_command(env.command(ids), tenant=env.caller.tenant))
    [record] = env.vault.list_adapters(env.caller.tenant, env.ns)
    retire = RetireAdapter(
        command_id="5b3c1f38-9d57-4f0c-8f3e-0f6f2a9b7c11",
        namespace=env.ns,
        reason="40% of its sources changed",
        issued_at=utcnow(),
        target_id=record.id,
        cube_ids=ids,
        invalidated=ids,
    )
    env.service.handle(make_command(retire, tenant=env.caller.tenant))
    assert env.vault.get_adapter(env.caller.tenant, record.id).state == AdapterState.withdrawn


def test_another_tenants_command_cannot_train_on_foreign_cubes(env: Env) -> None:
    ids = env.add("Corvin Ash keeps the Lantern Inn.")
    other, other_ns = new_tenant(env.vault, "globex")
    cmd = env.command(ids).model_copy(update={"namespace": other_ns})
    env.service.handle(make_command(cmd, tenant=other.tenant))
    assert env.train.calls == []
    assert env.vault.list_adapters(other.tenant) == []
