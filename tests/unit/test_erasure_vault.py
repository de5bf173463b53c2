"""The vault's erasure (services/vault/erasure.py): what is found, what is purged,
legal hold, permissions, derived artefacts, events and idempotency."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.vault.service import Vault
from shared.adapters import create_event_bus
from shared.errors import Forbidden, LegalHold, NotFound
from shared.ports.bus import EventBus
from shared.schemas.adapters import AdapterDetails, AdapterState
from shared.schemas.api import (
    Caller,
    CubeDraft,
    MemoryPatch,
    NamespaceCreate,
    NamespacePolicy,
    NamespaceRecord,
    SearchRequest,
)
from shared.schemas.erasure import ErasureRequest, ErasureSubject
from shared.schemas.memcube import ActivationPayload, LifecycleState, ParametricPayload
from shared.settings import Settings
from tests.unit.test_vault import Clock, Recorder, make_vault

pytestmark = pytest.mark.unit

ADAPTER_ID = "facts@v1+" + "a" * 16


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Vault, EventBus, Caller, str]]:
    bus = create_event_bus(Settings().bus)
    vault = make_vault(tmp_path, bus, Clock())
    vault.start()
    t = vault.create_tenant("acme")
    key = vault.find_api_key(t.api_key.split("_")[1])
    assert key is not None
    caller = Caller(tenant=t.id, principal=key.principal)
    ns = vault.create_namespace(caller, NamespaceCreate(name="team")).id
    yield vault, bus, caller, ns
    vault.close()
    bus.close()


def erase(vault: Vault, caller: Caller, kind: str, value: str, namespaces: list[str] | None = None):  # type: ignore[no-untyped-def]
    req = ErasureRequest(
        subject=ErasureSubject(kind=kind, value=value),  # type: ignore[arg-type]
        namespaces=namespaces,
    )
    return vault.erase(caller, req)


def texts(vault: Vault, caller: Caller, ns: str, query: str) -> list[str]:
    res = vault.search(caller, SearchRequest(query=query, namespaces=[ns], top_k=20))
    return [h.text for h in res.results]


def test_person_in_any_version_or_metadata_is_purged_and_the_rest_kept(env) -> None:  # type: ignore[no-untyped-def]
    vault, bus, caller, ns = env
    rec = Recorder(bus, ["memory.deleted", "erasure.completed"])
    said, boat, other = vault.create_memories(
        caller,
        ns,
        [
            CubeDraft(text="I moved to Lisbon", metadata={"speaker": "Orrin Vale"}),
            CubeDraft(text="Orrin Vale's boat is red", tags=["boats"], sources=["chat:1"]),
            CubeDraft(text="Mira's kite is yellow"),
        ],
    )
    vault.update_memory(caller, boat.id, MemoryPatch(text="the boat is teal"))
    vault.delete_memory(caller, said.id)  # already deleted: its old versions still count

    report = erase(vault, caller, "person", "ORRIN VALE")
    assert sorted(report.cube_ids) == sorted([said.id, boat.id])
    assert report.versions_purged == 4  # said v1, v2 (tombstone) and boat v1, v2
    assert report.subject_digest == hashlib.sha256(b"person\x00ORRIN VALE").hexdigest()
    assert "ORRIN" not in report.model_dump_json().upper()
    for cube_id in (said.id, boat.id):
        with pytest.raises(NotFound):
            vault.get_memory(caller, cube_id)
        for v in vault.history(caller, cube_id):
            assert (v.text, v.metadata, v.tags, v.sources) == ("", {}, [], [])
            assert v.lifecycle.state == LifecycleState.deleted and v.lifecycle.reason == "erased"
    for query in ("Orrin Vale", "boat teal red", "Lisbon"):
        assert texts(vault, caller, ns, query) in ([], ["Mira's kite is yellow"])
    assert texts(vault, caller, ns, "kite") == ["Mira's kite is yellow"]
    assert vault.get_memory(caller, other.id).text == "Mira's kite is yellow"
    assert vault.get_erasure(caller, report.id) == report

    vault.relay.drain()
    bus.flush()
    erased = [e for e in rec.events if e.topic == "memory.deleted" and e.data["reason"] == "erased"]
    assert sorted(e.subject for e in erased) == sorted([said.id, boat.id])
    [done] = [e for e in rec.events if e.topic == "erasure.completed"]
    assert done.data["cubes_erased"] == 2 and done.data["versions_purged"] == 4
    assert "orrin" not in done.model_dump_json().lower()

    again = erase(vault, caller, "person", "Orrin Vale")
    assert again.cube_ids == [] and again.versions_purged == 0 and again.id != report.id


def test_source_and_principal_subjects(env) -> None:  # type: ignore[no-untyped-def]
    vault, _, caller, ns = env
    agent = Caller(tenant=caller.tenant, principal="agent-7")
    [crm] = vault.create_memories(caller, ns, [CubeDraft(text="invoice 12", sources=["crm:9"])])
    [note] = vault.create_memories(agent, ns, [CubeDraft(text="the agent's note")])
    [mine] = vault.create_memories(caller, ns, [CubeDraft(text="an admin note")])
    assert erase(vault, caller, "source", "crm:9").cube_ids == [crm.id]
    assert erase(vault, caller, "principal", "agent-7").cube_ids == [note.id]
    assert vault.get_memory(caller, mine.id).text == "an admin note"


def test_only_a_tenant_admin_may_erase_or_read_reports(env) -> None:  # type: ignore[no-untyped-def]
    vault, _, caller, ns = env
    [cube] = vault.create_memories(caller, ns, [CubeDraft(text="Ana lives in Oslo")])
    report = erase(vault, caller, "person", "nobody")
    for role in ("member", "agent", "auditor"):
        other = caller.model_copy(update={"role": role})
        with pytest.raises(Forbidden) as err:
            erase(vault, other, "person", "Ana")
        assert err.value.code == "permission_denied"
        with pytest.raises(Forbidden):
            vault.get_erasure(other, report.id)
    assert vault.get_memory(caller, cube.id).text == "Ana lives in Oslo"


def test_unknown_namespaces_and_reports_of_other_tenants_are_404(env) -> None:  # type: ignore[no-untyped-def]
    vault, _, caller, ns = env
    with pytest.raises(NotFound) as err:
        erase(vault, caller, "person", "Ana", [ns, "ns_unknown"])
    assert err.value.code == "namespace_not_found"
    assert err.value.errors[0].field == "namespaces.1"
    report = erase(vault, caller, "person", "Ana")
    t2 = vault.create_tenant("other")
    stranger = Caller(tenant=t2.id, principal=f"{t2.id}:admin")
    with pytest.raises(NotFound):
        vault.get_erasure(stranger, report.id)
    with pytest.raises(NotFound):  # another tenant's namespace is unknown, too
        erase(vault, stranger, "person", "Ana", [ns])


def test_legal_hold_refuses_the_whole_erasure(env) -> None:  # type: ignore[no-untyped-def]
    vault, _, caller, ns = env
    held = NamespaceRecord(
        id="ns_held",
        tenant=caller.tenant,
        name="held",
        created_at=Clock()(),
        policy=NamespacePolicy(legal_hold=True, legal_hold_reason="case 7"),
    )
    vault._store.create_namespace(held)
    [free] = vault.create_memories(caller, ns, [CubeDraft(text="Ana likes tea")])
    [kept] = vault.create_memories(caller, held.id, [CubeDraft(text="Ana signed the deal")])
    with pytest.raises(LegalHold) as err:
        erase(vault, caller, "person", "Ana")
    assert err.value.code == "legal_hold" and err.value.status == 409
    assert "ns_held" in err.value.detail
    # Nothing was erased, not even in the namespace that is not held.
    assert vault.get_memory(caller, free.id).text == "Ana likes tea"
    assert vault.get_memory(caller, kept.id).text == "Ana signed the deal"
    # Limited to the free namespace, it goes through.
    assert erase(vault, caller, "person", "Ana", [ns]).cube_ids == [free.id]


def test_kv_caches_are_demoted_and_adapters_marked_stale(env) -> None:  # type: ignore[no-untyped-def]
    vault, bus, caller, ns = env
    rec = Recorder(bus, ["commands.activation.evict"])
    ana, mira = vault.create_memories(
        caller, ns, [CubeDraft(text="Ana lives in Oslo"), CubeDraft(text="Mira likes kites")]
    )
    kv = ActivationPayload(
        blob_key="kvblob",
        manifest_key="kv-manifest",
        model_fingerprint="tiny",
        token_count=12,
        source_refs=[ana.ref, mira.ref],
    )
    vault.record_activation(caller.tenant, ns, kv, "test")
    lora = ParametricPayload(
        adapter_id=ADAPTER_ID,
        blob_key="m",
        manifest_key="m",
        base_model_fingerprint="tiny",
        source_refs=[ana.ref, mira.ref],
    )
    vault.record_adapter(caller.tenant, ns, lora, AdapterDetails(), "test")

    report = erase(vault, caller, "person", "Ana")
    assert report.kv_caches_evicted == ["kv-manifest"]
    assert report.adapters_stale == [ADAPTER_ID]
    assert vault.current_activation(caller.tenant, ns) is None
    adapter = vault.get_adapter(caller.tenant, ADAPTER_ID)
    assert adapter.state == AdapterState.stale and adapter.stale_sources == [ana.ref]
    vault.relay.drain()
    bus.flush()
    [evict] = rec.events
    assert evict.data["target_id"] == "kv-manifest" and evict.data["reason"] == "erased"
    assert evict.data["cube_ids"] == [ana.id]
    # The provenance still answers after the erasure.
    assert [a.id for a in vault.adapters_containing(caller.tenant, ana.id)] == [ADAPTER_ID]


def test_a_key_narrowed_to_namespaces_erases_in_those_only(env) -> None:  # type: ignore[no-untyped-def]
    vault, _, caller, ns = env
    other = vault.create_namespace(caller, NamespaceCreate(name="other")).id
    [here] = vault.create_memories(caller, ns, [CubeDraft(text="Ana likes tea")])
    [there] = vault.create_memories(caller, other, [CubeDraft(text="Ana likes coffee")])
    narrowed = caller.model_copy(update={"key_namespaces": [ns]})
    assert erase(vault, narrowed, "person", "Ana").cube_ids == [here.id]
    assert vault.get_memory(caller, there.id).text == "Ana likes coffee"
    with pytest.raises(NotFound):
        erase(vault, narrowed, "person", "Ana", [other])
