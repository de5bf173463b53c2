"""GraphStore contract, compliance part: namespace policy updates, the reads behind
retention and export, and export records. Every adapter passes it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from shared.ports.graph import GraphStore
from shared.schemas.api import NamespacePolicy
from shared.schemas.compliance import ExportRecord
from shared.schemas.memcube import ActivationPayload, LifecycleState, MemCube
from tests.contract.adapters import AdapterCase, new_id, params
from tests.contract.graph_support import T0, make_cube, new_version, setup_tenant, write_cubes
from tests.contract.test_graph_store import GRAPH_STORES

pytestmark = pytest.mark.contract


@pytest.fixture(params=params(GRAPH_STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GraphStore]:
    case: AdapterCase[GraphStore] = request.param
    s = case.build(tmp_path)
    try:
        yield s
    finally:
        s.close()


def aged(cube: MemCube, days: float) -> MemCube:
    return cube.model_copy(update={"created_at": T0 + timedelta(days=days)})


def test_update_namespace_replaces_the_policy_of_that_tenant_only(store: GraphStore) -> None:
    a, b, ns = new_id("ta"), new_id("tb"), new_id("ns")
    setup_tenant(store, a, ns)
    setup_tenant(store, b)
    rec = store.get_namespace(a, ns)
    assert rec is not None and rec.policy == NamespacePolicy()
    held = NamespacePolicy(pii="reject", retention_days=30, legal_hold=True, legal_hold_reason="x")
    assert store.update_namespace(rec.model_copy(update={"policy": held})) is True
    got = store.get_namespace(a, ns)
    assert got is not None and got.policy == held and got.name == rec.name
    assert [n.policy for n in store.list_namespaces(a)] == [held]
    # Another tenant's id, or an unknown one, changes nothing.
    foreign = rec.model_copy(update={"tenant": b, "policy": NamespacePolicy()})
    assert store.update_namespace(foreign) is False
    assert store.update_namespace(rec.model_copy(update={"id": new_id("ns")})) is False
    after = store.get_namespace(a, ns)
    assert after is not None and after.policy == held
    assert store.get_namespace(b, ns) is None


def test_namespaces_with_retention(store: GraphStore) -> None:
    a, keep, plain = new_id("ta"), new_id("ns"), new_id("ns")
    setup_tenant(store, a, keep, plain)
    mine = {keep, plain}
    assert [n for n in store.namespaces_with_retention() if n.id in mine] == []
    rec = store.get_namespace(a, keep)
    assert rec is not None
    store.update_namespace(rec.model_copy(update={"policy": NamespacePolicy(retention_days=7)}))
    found = [n for n in store.namespaces_with_retention() if n.id in mine]
    assert [(n.id, n.policy.retention_days) for n in found] == [(keep, 7)]
    store.update_namespace(rec.model_copy(update={"policy": NamespacePolicy()}))
    assert [n for n in store.namespaces_with_retention() if n.id in mine] == []


def test_namespace_cubes_current_searchable_plaintext_oldest_first(store: GraphStore) -> None:
    a, b, ns, other = new_id("ta"), new_id("tb"), new_id("ns"), new_id("ns")
    setup_tenant(store, a, ns, other)
    setup_tenant(store, b)
    old = aged(make_cube(a, ns, "old"), 0)
    mid = aged(make_cube(a, ns, "mid"), 10)
    new = aged(make_cube(a, ns, "new"), 20)
    gone = aged(make_cube(a, ns, "gone"), 1)
    elsewhere = aged(make_cube(a, other, "elsewhere"), 1)
    write_cubes(store, [new, old, mid, gone, elsewhere])
    write_cubes(store, [new_version(mid, text="mid v2")])
    write_cubes(store, [new_version(gone, state=LifecycleState.expired)])
    kv = MemCube(
        id=f"kv_{ns}",
        version=1,
        tenant=a,
        namespace=ns,
        created_at=T0,
        updated_at=T0,
        payload=ActivationPayload(
            blob_key="kv/x", manifest_key="kv/x.json", model_fingerprint="f", token_count=1
        ),
    )
    write_cubes(store, [kv])

    listed = store.namespace_cubes(a, ns)
    assert [(c.text, c.version) for c in listed] == [("old", 1), ("mid v2", 2), ("new", 1)]
    before = store.namespace_cubes(a, ns, created_before=T0 + timedelta(days=10))
    assert [c.text for c in before] == ["old", "mid v2"]
    assert [c.text for c in store.namespace_cubes(a, ns, limit=1)] == ["old"]
    assert store.namespace_cubes(b, ns) == []


def test_export_records_are_kept_per_tenant(store: GraphStore) -> None:
    a, b, ns = new_id("ta"), new_id("tb"), new_id("ns")
    setup_tenant(store, a, ns)
    setup_tenant(store, b)
    rec = ExportRecord(
        id=new_id("exp"), tenant=a, namespace=ns, principal="p1", created_at=T0, count=3
    )
    store.insert_export(rec)
    assert store.get_export(a, rec.id) == rec
    assert store.get_export(b, rec.id) is None
    assert store.get_export(a, new_id("exp")) is None
