"""The vault's adapter records (services/vault/adapters.py) over every graph store,
in process and over the internal HTTP API (HttpVault): one parametric cube per
namespace whose versions record the adapters, DERIVED_FROM their sources."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.vault.adapters import adapter_cube_id
from services.vault.app import create_app as create_vault_app
from services.vault.embedders import HashingEmbedder
from services.vault.service import Vault
from shared.adapters import create_event_bus
from shared.clients.vault_http import HttpVault
from shared.errors import MemgridError
from shared.ports.graph import GraphStore
from shared.ports.vault import VaultAPI
from shared.schemas.adapters import AdapterDetails, AdapterState
from shared.schemas.api import Caller, CubeDraft, NamespaceCreate, SearchRequest
from shared.schemas.memcube import EdgeKind, LifecycleState, MemCube, ParametricPayload, Tier
from shared.settings import Settings
from tests.contract.adapters import AdapterCase, params
from tests.contract.graph_support import DIM
from tests.contract.test_graph_store import GRAPH_STORES

pytestmark = pytest.mark.contract

DIGEST = "0123456789abcdef"


class SmallHashing(HashingEmbedder):
    """The contract stores are built for DIM-dimensional vectors."""

    dimension = DIM


@dataclass
class World:
    api: VaultAPI
    vault: Vault
    store: GraphStore
    tenant: str
    caller: Caller
    ns: str
    ns2: str
    cubes: list[MemCube]  # three memories of ns
    other: MemCube  # a memory of ns2
    other_tenant: str
    foreign: MemCube  # a memory of the other tenant


@pytest.fixture(params=params(GRAPH_STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GraphStore]:
    case: AdapterCase[GraphStore] = request.param
    s = case.build(tmp_path)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(params=["inproc", "http"])
def w(request: pytest.FixtureRequest, store: GraphStore, tmp_path: Path) -> Iterator[World]:
    settings = Settings(data_dir=tmp_path)
    bus = create_event_bus(settings.bus)
    vault = Vault(settings, store, bus, SmallHashing())
    vault.start()
    t = vault.create_tenant("acme")
    caller = Caller(tenant=t.id, principal="p")
    ns = vault.create_namespace(caller, NamespaceCreate(name="n")).id
    ns2 = vault.create_namespace(caller, NamespaceCreate(name="m")).id
    cubes = vault.create_memories(
        caller,
        ns,
        [CubeDraft(text=x) for x in ("Ana lives in Lisbon", "Ana likes tea", "Ana is a nurse")],
    )
    other = vault.create_memories(caller, ns2, [CubeDraft(text="Bruno lives in Oslo")])[0]
    t2 = vault.create_tenant("globex")
    c2 = Caller(tenant=t2.id, principal="q")
    ns3 = vault.create_namespace(c2, NamespaceCreate(name="n")).id
    foreign = vault.create_memories(c2, ns3, [CubeDraft(text="Carla lives in Rome")])[0]
    try:
        if request.param == "http":
            with TestClient(create_vault_app(settings, vault)) as client:
                api = HttpVault(settings.vault, client=client)
                yield World(api, vault, store, t.id, caller, ns, ns2, cubes, other, t2.id, foreign)
        else:
            yield World(vault, vault, store, t.id, caller, ns, ns2, cubes, other, t2.id, foreign)
    finally:
        vault.close()
        bus.close()


def payload(name: str, refs: list[str], version: str = "1") -> ParametricPayload:
    aid = f"{name}@{version}+{DIGEST}"
    return ParametricPayload(
        adapter_id=aid,
        blob_key=f"adapters/{aid}/adapter_model.safetensors",
        manifest_key=f"adapters/{aid}/manifest.json",
        base_model_fingerprint="tiny-llm:abc123",
        source_refs=refs,
    )


DETAILS = AdapterDetails(
    hyperparameters={"rank": 8}, metrics={"loss": 0.5}, data_size=3, duration_s=1.5
)


def record(w: World, name: str, refs: list[str] | None = None, ns: str | None = None) -> Any:
    refs = refs if refs is not None else [c.ref for c in w.cubes[:2]]
    return w.api.record_adapter(w.tenant, ns or w.ns, payload(name, refs), DETAILS, "trained")


def code_of(exc: pytest.ExceptionInfo[MemgridError]) -> tuple[int, str]:
    return exc.value.status, exc.value.code


def test_record_makes_a_serving_adapter_derived_from_its_sources(w: World) -> None:
    rec = record(w, "lora-a")
    assert rec.state == AdapterState.serving
    assert (rec.tenant, rec.namespace) == (w.tenant, w.ns)
    assert rec.sources == [c.ref for c in w.cubes[:2]]
    assert rec.details == DETAILS and rec.stale_sources == []
    assert rec.base_model == "tiny-llm:abc123"
    assert rec.manifest_key.endswith("manifest.json")
    assert rec.record == f"{adapter_cube_id(w.ns)}@1"
    cube = w.store.get_cube(w.tenant, adapter_cube_id(w.ns))
    assert cube is not None and cube.tier == Tier.parametric
    assert cube.lifecycle.state == LifecycleState.activated
    derived = [
        (e.src, e.dst)
        for e in w.store.edges(w.tenant, adapter_cube_id(w.ns))
        if e.kind == EdgeKind.DERIVED_FROM
    ]
    assert sorted(derived) == sorted((rec.record, c.ref) for c in w.cubes[:2])
    assert w.api.get_adapter(w.tenant, rec.id) == rec
    assert w.api.list_adapters(w.tenant) == [rec]
    assert w.api.list_adapters(w.tenant, w.ns) == [rec]
    assert w.api.list_adapters(w.tenant, w.ns2) == []
    # Never a search hit: the cube has no text and no vector.
    hits = w.api.search(w.caller, SearchRequest(query="Ana", namespaces=[w.ns], top_k=10))
    assert all(not h.id.startswith("lora_") for h in hits.results)


def test_adapters_containing_a_cube_come_from_the_graph(w: World) -> None:
    a = record(w, "lora-a", [w.cubes[0].ref])
    b = record(w, "lora-b", [w.cubes[0].ref, w.cubes[1].ref])
    assert [r.id for r in w.api.adapters_containing(w.tenant, w.cubes[0].id)] == [b.id, a.id]
    assert [r.id for r in w.api.adapters_containing(w.tenant, w.cubes[1].id)] == [b.id]
    assert w.api.adapters_containing(w.tenant, w.cubes[2].id) == []
    assert w.api.adapters_containing(w.tenant, "no-such-cube") == []
    # The record is the adapter's latest: a superseded one is reported as such.
    states = {r.id: r.state for r in w.api.adapters_containing(w.tenant, w.cubes[0].id)}
    assert states == {a.id: AdapterState.superseded, b.id: AdapterState.serving}


def test_a_new_adapter_supersedes_the_serving_one(w: World) -> None:
    a = record(w, "lora-a")
    b = record(w, "lora-b", [w.cubes[2].ref])
    old = w.api.get_adapter(w.tenant, a.id)
    assert old.state == AdapterState.superseded
    assert b.id in old.reason and old.record == b.record
    assert old.sources == a.sources and old.created_at == a.created_at
    assert w.api.get_adapter(w.tenant, b.id).state == AdapterState.serving
    assert [r.id for r in w.api.list_adapters(w.tenant)] == [b.id, a.id]
    # Another namespace's adapter supersedes nothing here.
    c = record(w, "lora-c", [w.other.ref], ns=w.ns2)
    assert w.api.get_adapter(w.tenant, b.id).state == AdapterState.serving
    assert [r.id for r in w.api.list_adapters(w.tenant)] == [c.id, b.id, a.id]
    assert [r.id for r in w.api.list_adapters(w.tenant, w.ns)] == [b.id, a.id]


def test_stale_adapters_collect_their_stale_sources_and_stay_served(w: World) -> None:
    a = record(w, "lora-a")
    s1 = w.cubes[0].ref
    stale = w.api.set_adapter_state(w.tenant, a.id, AdapterState.stale, "source updated", [s1])
    assert stale.state == AdapterState.stale and stale.stale_sources == [s1]
    assert stale.reason == "source updated" and stale.record != a.record
    cube = w.store.get_cube(w.tenant, adapter_cube_id(w.ns))
    assert cube is not None and cube.lifecycle.state == LifecycleState.activated
    again = w.api.set_adapter_state(w.tenant, a.id, AdapterState.stale, "source updated", [s1])
    assert again == stale  # nothing new: no new version
    s2 = w.cubes[1].ref
    more = w.api.set_adapter_state(w.tenant, a.id, AdapterState.stale, "source deleted", [s2])
    assert more.stale_sources == [s1, s2]
    assert w.api.get_adapter(w.tenant, a.id) == more
    assert len(w.store.history(w.tenant, adapter_cube_id(w.ns))) == 3


def test_withdrawn_adapters_are_no_longer_served(w: World) -> None:
    a = record(w, "lora-a")
    gone = w.api.set_adapter_state(w.tenant, a.id, AdapterState.withdrawn, "retired")
    assert gone.state == AdapterState.withdrawn and gone.reason == "retired"
    cube = w.store.get_cube(w.tenant, adapter_cube_id(w.ns))
    assert cube is not None and cube.lifecycle.state == LifecycleState.generated
    with pytest.raises(MemgridError) as exc:
        w.api.set_adapter_state(w.tenant, a.id, AdapterState.serving, "back")
    assert code_of(exc) == (409, "illegal_transition")
    # A later source change only adds to its stale sources.
    s1 = w.cubes[0].ref
    noted = w.api.set_adapter_state(w.tenant, a.id, AdapterState.stale, "source erased", [s1])
    assert noted.state == AdapterState.withdrawn and noted.stale_sources == [s1]
    # A new adapter serves after a withdrawn one (generated -> activated).
    b = record(w, "lora-b")
    assert b.state == AdapterState.serving
    assert w.api.get_adapter(w.tenant, a.id).state == AdapterState.withdrawn


def test_recording_twice_is_one_record(w: World) -> None:
    a = record(w, "lora-a")
    assert record(w, "lora-a") == a
    assert len(w.store.history(w.tenant, adapter_cube_id(w.ns))) == 1
    record(w, "lora-b")
    assert record(w, "lora-a").state == AdapterState.superseded  # its record, unchanged
    assert len(w.store.history(w.tenant, adapter_cube_id(w.ns))) == 2


def test_another_tenants_adapters_do_not_exist(w: World) -> None:
    a = record(w, "lora-a")
    with pytest.raises(MemgridError) as exc:
        w.api.get_adapter(w.other_tenant, a.id)
    assert code_of(exc) == (404, "adapter_not_found")
    with pytest.raises(MemgridError) as exc:
        w.api.set_adapter_state(w.other_tenant, a.id, AdapterState.withdrawn, "x")
    assert code_of(exc) == (404, "adapter_not_found")
    assert w.api.list_adapters(w.other_tenant) == []
    assert w.api.adapters_containing(w.other_tenant, w.cubes[0].id) == []
    with pytest.raises(MemgridError) as exc:
        w.api.list_adapters(w.other_tenant, w.ns)
    assert code_of(exc) == (404, "namespace_not_found")
    with pytest.raises(MemgridError) as exc:  # their namespace under our tenant
        w.api.record_adapter(
            w.other_tenant, w.ns, payload("x", [w.cubes[0].ref]), DETAILS, "trained"
        )
    assert code_of(exc) == (404, "namespace_not_found")
    with pytest.raises(MemgridError) as exc:
        w.api.get_adapter(w.tenant, f"unknown@1+{DIGEST}")
    assert code_of(exc) == (404, "adapter_not_found")


@pytest.mark.parametrize("which", ["unknown", "wrong_version", "no_version", "other_ns", "foreign"])
def test_sources_must_be_plaintext_memories_of_the_namespace(w: World, which: str) -> None:
    ref = {
        "unknown": "no-such-cube@1",
        "wrong_version": f"{w.cubes[0].id}@9",
        "no_version": w.cubes[0].id,
        "other_ns": w.other.ref,
        "foreign": w.foreign.ref,
    }[which]
    with pytest.raises(MemgridError) as exc:
        record(w, "lora-a", [w.cubes[1].ref, ref])
    assert code_of(exc) == (404, "memory_not_found")
    assert w.store.history(w.tenant, adapter_cube_id(w.ns)) == []
    assert w.api.list_adapters(w.tenant) == []


def test_bad_adapter_records_are_refused(w: World) -> None:
    with pytest.raises(MemgridError) as exc:
        w.api.record_adapter(
            w.tenant,
            w.ns,
            payload("lora-a", [w.cubes[0].ref]).model_copy(update={"adapter_id": "not an id"}),
            DETAILS,
            "trained",
        )
    assert exc.value.status == 400
    with pytest.raises(MemgridError) as exc:
        record(w, "lora-a", [])
    assert code_of(exc) == (422, "validation_failed")
    with pytest.raises(MemgridError) as exc:
        w.api.record_adapter(w.tenant, w.ns, payload("lora-a", [w.cubes[0].ref]), DETAILS, " ")
    assert code_of(exc) == (422, "validation_failed")
