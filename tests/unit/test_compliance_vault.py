"""Compliance in the vault itself: roles, expiry under legal hold and retention,
tags on events, the default policy setting, edits under ``reject``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from services.vault.embedders import HashingEmbedder
from services.vault.service import Vault
from services.vault.stores import create_graph_store
from shared.adapters import create_event_bus
from shared.errors import MemgridError
from shared.ports.bus import EventBus
from shared.schemas.api import Caller, CubeDraft, MemoryPatch, NamespaceCreate, NamespacePolicy
from shared.schemas.memcube import LifecycleState
from shared.settings import Settings
from tests.unit.test_vault import Clock, Recorder

pytestmark = pytest.mark.unit


@dataclass
class Env:
    vault: Vault
    bus: EventBus
    clock: Clock
    caller: Caller
    ns: str


def build(tmp: Path, **compliance: object) -> tuple[Vault, EventBus, Clock]:
    settings = Settings.model_validate(
        {"data_dir": tmp, "embedder": {"backend": "hashing"}, "compliance": compliance}
    )
    emb = HashingEmbedder()
    bus = create_event_bus(settings.bus)
    clock = Clock()
    vault = Vault(settings, create_graph_store(settings.graph, emb.dimension), bus, emb, clock)
    vault.start()
    return vault, bus, clock


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    vault, bus, clock = build(tmp_path)
    t = vault.create_tenant("acme")
    key = vault.find_api_key(t.api_key.split("_")[1])
    assert key is not None
    caller = Caller(tenant=t.id, principal=key.principal)
    ns = vault.create_namespace(caller, NamespaceCreate(name="team")).id
    yield Env(vault, bus, clock, caller, ns)
    vault.close()
    bus.close()


def set_policy(env: Env, **fields: object) -> None:
    env.vault.update_namespace_policy(env.caller, env.ns, NamespacePolicy(**fields))  # type: ignore[arg-type]


def test_only_a_tenant_admin_changes_a_policy(env: Env) -> None:
    for role in ("member", "agent", "auditor"):
        other = env.caller.model_copy(update={"role": role})
        # Even the namespace's own admin: policies are the tenant admin's.
        env.vault.access_admin.grant_creator(other, env.ns)
        with pytest.raises(MemgridError) as err:
            env.vault.update_namespace_policy(other, env.ns, NamespacePolicy(legal_hold=True))
        assert (err.value.status, err.value.code) == (403, "permission_denied")
    assert env.vault.get_namespace(env.caller, env.ns).policy.legal_hold is False


def test_events_carry_the_sensitivity_tags(env: Env) -> None:
    rec = Recorder(env.bus, ["memory.created", "memory.updated"])
    [cube] = env.vault.create_memories(env.caller, env.ns, [CubeDraft(text="SSN 536-90-4399")])
    assert cube.governance.sensitivity_tags == ["pii:national_id"]
    env.vault.update_memory(env.caller, cube.id, MemoryPatch(text="key AKIAIOSFODNN7EXAMPLE"))
    env.vault.relay.drain()
    env.bus.flush()
    tags = [e.parse().sensitivity_tags for e in rec.events]  # type: ignore[attr-defined]
    assert tags == [["pii:national_id"], ["secret:token"]]


def test_legal_hold_stops_expiry_until_lifted(env: Env) -> None:
    [cube] = env.vault.create_memories(env.caller, env.ns, [CubeDraft(text="x", ttl_seconds=60)])
    set_policy(env, legal_hold=True)
    env.clock.now += timedelta(hours=1)
    assert env.vault.expire_due(env.clock.now) == []
    assert env.vault.get_memory(env.caller, cube.id).lifecycle.state == "generated"
    set_policy(env, legal_hold=False)
    assert env.vault.expire_due(env.clock.now) == [cube.id]


def test_retention_expires_existing_memories(env: Env) -> None:
    rec = Recorder(env.bus, ["memory.expired"])
    [old] = env.vault.create_memories(env.caller, env.ns, [CubeDraft(text="old")])
    env.clock.now += timedelta(days=5)
    [young] = env.vault.create_memories(env.caller, env.ns, [CubeDraft(text="young")])
    assert young.governance.lifespan.expires_at is None  # no retention yet
    set_policy(env, retention_days=3)
    env.clock.now += timedelta(days=1)
    assert env.vault.expire_due(env.clock.now) == [old.id]
    assert env.vault.get_memory(env.caller, old.id).lifecycle.reason == "retention"
    env.vault.relay.drain()
    env.bus.flush()
    assert [e.parse().reason for e in rec.events] == ["retention"]  # type: ignore[attr-defined]
    # A held namespace keeps them even past retention.
    set_policy(env, retention_days=3, legal_hold=True)
    env.clock.now += timedelta(days=10)
    assert env.vault.expire_due(env.clock.now) == []
    set_policy(env, retention_days=3)
    assert env.vault.expire_due(env.clock.now) == [young.id]


def test_reject_refuses_only_new_findings_on_edit(env: Env) -> None:
    [cube] = env.vault.create_memories(env.caller, env.ns, [CubeDraft(text="mail ana@example.com")])
    set_policy(env, pii="reject")
    # Metadata only: the text was stored under the earlier policy and stays.
    new = env.vault.update_memory(env.caller, cube.id, MemoryPatch(metadata={"k": "v"}))
    assert new.governance.sensitivity_tags == ["pii:email"]
    with pytest.raises(MemgridError) as err:
        env.vault.update_memory(
            env.caller, cube.id, MemoryPatch(metadata={"card": "4111111111111111"})
        )
    assert err.value.code == "pii_rejected"
    assert [e.field for e in err.value.errors] == ["body.metadata"]
    assert env.vault.get_memory(env.caller, cube.id).version == 2


def test_default_policy_comes_from_settings(tmp_path: Path) -> None:
    vault, bus, _ = build(tmp_path, default_pii_policy="redact")
    try:
        t = vault.create_tenant("acme")
        caller = Caller(tenant=t.id, principal="p")
        ns = vault.create_namespace(caller, NamespaceCreate(name="n"))
        assert ns.policy.pii == "redact"
        [cube] = vault.create_memories(caller, ns.id, [CubeDraft(text="ana@example.com hi")])
        assert cube.text == "[REDACTED:email] hi"
    finally:
        vault.close()
        bus.close()


def test_lifecycle_events_keep_the_tags(env: Env) -> None:
    rec = Recorder(env.bus, ["memory.created", "memory.updated"])
    a, b = env.vault.create_memories(
        env.caller,
        env.ns,
        [CubeDraft(text="Ana: ana@example.com"), CubeDraft(text="Ana: +1 415-555-2671")],
    )
    env.vault.transition(env.caller.tenant, a.id, LifecycleState.activated, "hot")
    merged = env.vault.merge(env.caller.tenant, [a.id, b.id], "duplicates")
    env.vault.relay.drain()
    env.bus.flush()
    by_ref = {(e.data["cube_id"], e.data["version"]): e.data for e in rec.events}
    assert by_ref[(a.id, 2)]["sensitivity_tags"] == ["pii:email"]  # activated
    assert by_ref[(a.id, 3)]["sensitivity_tags"] == ["pii:email"]  # merged away
    assert by_ref[(b.id, 2)]["sensitivity_tags"] == ["pii:phone"]
    assert sorted(by_ref[(merged.id, 1)]["sensitivity_tags"]) == ["pii:email", "pii:phone"]


def test_over_the_internal_api_too(env: Env) -> None:
    """HttpVault (distributed mode) gets the same answers: the role travels in a
    header, the problem comes back with its code."""
    from fastapi.testclient import TestClient

    from services.vault.app import create_app
    from shared.clients.vault_http import HttpVault

    settings = Settings()
    with TestClient(create_app(settings, env.vault)) as internal:
        http = HttpVault(settings.vault, client=internal)
        member = env.caller.model_copy(update={"role": "member"})
        env.vault.access_admin.grant_creator(member, env.ns)  # it administers the namespace
        with pytest.raises(MemgridError) as err:
            http.update_namespace_policy(member, env.ns, NamespacePolicy(legal_hold=True))
        assert (err.value.status, err.value.code) == (403, "permission_denied")
        got = http.update_namespace_policy(env.caller, env.ns, NamespacePolicy(legal_hold=True))
        assert got.policy.legal_hold is True
        [cube] = env.vault.create_memories(env.caller, env.ns, [CubeDraft(text="kept")])
        with pytest.raises(MemgridError) as err:
            http.delete_memory(env.caller, cube.id)
        assert (err.value.status, err.value.code) == (409, "legal_hold")
        export = http.export_namespace(env.caller, env.ns)
        assert export.export.count == 1
        assert http.get_export(env.caller, export.export.id) == export.export
