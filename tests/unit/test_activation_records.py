"""The vault's record of KV caches: one activation-tier cube per namespace whose
versions are its caches, DERIVED_FROM its sources, out of plaintext search, read
the same in process and over the internal HTTP API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.vault.app import create_app as create_vault_app
from services.vault.factory import build_vault
from shared.adapters import create_event_bus
from shared.clients.vault_http import HttpVault
from shared.errors import MemgridError
from shared.schemas.api import Caller, CubeDraft, NamespaceCreate, SearchRequest
from shared.schemas.memcube import ActivationPayload, LifecycleState
from shared.settings import Settings

pytestmark = pytest.mark.unit


@pytest.fixture(params=["inproc", "http"])
def setup(request: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
    settings = Settings(data_dir=tmp_path, embedder={"backend": "hashing"})  # type: ignore[arg-type]
    bus = create_event_bus(settings.bus)
    vault = build_vault(settings, bus=bus)
    vault.start()
    t = vault.create_tenant("a")
    caller = Caller(tenant=t.id, principal="p")
    ns = vault.create_namespace(caller, NamespaceCreate(name="n")).id
    ns2 = vault.create_namespace(caller, NamespaceCreate(name="m")).id
    cubes = vault.create_memories(caller, ns, [CubeDraft(text="Ana lives in Lisbon")])
    other = vault.create_memories(caller, ns2, [CubeDraft(text="Bruno lives in Oslo")])
    out = {"vault": vault, "caller": caller, "ns": ns, "ns2": ns2, "cubes": cubes, "other": other}
    if request.param == "http":
        with TestClient(create_vault_app(settings, vault)) as client:
            out["api"] = HttpVault(settings.vault, client=client)
            yield out
    else:
        out["api"] = vault
        yield out
    vault.close()
    bus.close()


def payload(key: str, refs: list[str]) -> ActivationPayload:
    return ActivationPayload(
        blob_key=key + ".t",
        manifest_key=key,
        model_fingerprint="m",
        token_count=9,
        source_refs=refs,
    )


def test_record_current_demote_and_lineage(setup: dict[str, Any]) -> None:
    api, caller, ns = setup["api"], setup["caller"], setup["ns"]
    src = setup["cubes"][0].ref
    assert api.current_activation(caller.tenant, ns) is None
    cube = api.record_activation(caller.tenant, ns, payload("k1", [src]), "hot", "cmd1")
    assert cube.tier == "activation" and cube.lifecycle.state == LifecycleState.activated
    assert cube.metadata["command_id"] == "cmd1"
    again = api.record_activation(caller.tenant, ns, payload("k1", [src]), "hot", "cmd1")
    assert again.version == cube.version  # idempotent: a redelivered command writes nothing
    current = api.current_activation(caller.tenant, ns)
    assert current is not None and current.payload.manifest_key == "k1"
    edges = setup["vault"].lineage(caller, cube.id).edges
    assert any(e.kind == "DERIVED_FROM" and e.src == cube.ref and e.dst == src for e in edges)
    # Not a plaintext memory: search never returns it.
    hits = api.search(caller, SearchRequest(query="Ana Lisbon kv", namespaces=[ns], top_k=10))
    assert [h.id for h in hits.results] == [setup["cubes"][0].id]
    assert api.demote_activation(caller.tenant, ns, "other-key", "lru") is None
    assert api.demote_activation(caller.tenant, ns, "k1", "lru") is not None
    assert api.current_activation(caller.tenant, ns) is None
    assert api.demote_activation(caller.tenant, ns, "k1", "lru") is None  # once


def test_sources_must_be_plaintext_of_that_namespace_and_tenant(setup: dict[str, Any]) -> None:
    api, caller, ns = setup["api"], setup["caller"], setup["ns"]
    with pytest.raises(MemgridError) as err:  # a memory of another namespace, same tenant
        api.record_activation(caller.tenant, ns, payload("k", [setup["other"][0].ref]), "x")
    assert err.value.status == 404
    with pytest.raises(MemgridError) as err:  # another tenant
        api.record_activation("t_other", ns, payload("k", [setup["cubes"][0].ref]), "x")
    assert err.value.status == 404
    assert api.current_activation("t_other", ns) is None
