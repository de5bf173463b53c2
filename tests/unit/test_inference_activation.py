"""Activation memory end to end with the tiny model: the public build endpoint,
chats that start from the cache (same greedy answer and logits as plaintext),
the scheduler's commands (idempotent), eviction, restart, isolation."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from shared.schemas.api import Caller, CubeDraft, NamespaceCreate
from shared.schemas.commands import BuildActivation, EvictActivation, make_command
from shared.schemas.events import EventEnvelope
from shared.settings import Settings

pytestmark = pytest.mark.unit

ADMIN = {"Authorization": "Bearer root"}
TEXTS = ["Ana lives in Lisbon", "Ana's locker code is 1234", "Ana likes green tea"]
QUESTION = "What is Ana's locker code?"


def settings_for(tmp: Path, **inference: Any) -> Settings:
    return Settings(  # type: ignore[arg-type]
        data_dir=tmp,
        admin_key="root",
        embedder={"backend": "hashing"},
        inference={"model": "tiny", **inference},
    )


@pytest.fixture(scope="module")
def backend() -> Any:
    from services.inference.backends import create_backend

    return create_backend(Settings(inference={"model": "tiny"}))  # type: ignore[arg-type]


# --- public API, embedded ------------------------------------------------------------


def chat(ns: str, tiers: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": QUESTION}],
        "max_tokens": 8,
        "temperature": 0,
        "memgrid": {"namespaces": [ns], "tiers": tiers, "token_budget": 200, "top_k": 3},
        **extra,
    }


@pytest.fixture
def api(tmp_path: Path) -> Iterator[TestClient]:
    from services.embedded import build_embedded

    app, close = build_embedded(settings_for(tmp_path))
    try:
        with TestClient(app) as client:
            yield client
    finally:
        close()


def tenant(api: TestClient, name: str) -> tuple[dict[str, str], str, list[str]]:
    r = api.post("/v1/tenants", json={"name": name}, headers=ADMIN)
    auth = {"Authorization": f"Bearer {r.json()['api_key']}"}
    ns = api.post("/v1/namespaces", json={"name": "n"}, headers=auth).json()["id"]
    ids = []
    for t in TEXTS:
        r = api.post(f"/v1/namespaces/{ns}/memories", json={"text": t}, headers=auth)
        assert r.is_success, r.text
        ids.append(r.json()["memories"][0]["id"])
    return auth, ns, ids


def test_build_endpoint_then_chat_equals_plaintext(api: TestClient) -> None:
    auth, ns, ids = tenant(api, "a")
    plain = api.post("/v1/chat", json=chat(ns, ["plaintext"]), headers=auth)
    assert plain.status_code == 200, plain.text
    # The cache holds what plaintext retrieval picks for the question, in its order.
    r = api.post(
        f"/v1/namespaces/{ns}/activation",
        json={"query": QUESTION, "top_k": 3, "token_budget": 200},
        headers=auth,
    )
    assert r.status_code == 201, r.text
    built = r.json()
    assert built["namespace"] == ns and built["token_count"] > 0
    assert sorted(s.split("@")[0] for s in built["sources"]) == sorted(ids)
    assert built["record"] == f"kv_{ns}@1"
    hot = api.post("/v1/chat", json=chat(ns, ["activation", "plaintext"]), headers=auth)
    assert hot.status_code == 200, hot.text
    report = hot.json()["memgrid"]
    assert report["tiers_applied"] == ["activation"]
    assert {m["tier"] for m in report["memories"]} == {"activation"}
    assert [f"{m['id']}@{m['version']}" for m in report["memories"]] == built["sources"]
    answer = hot.json()["choices"][0]["message"]["content"]
    assert answer == plain.json()["choices"][0]["message"]["content"]

    # Logits: the prepared activation request against the prepared plaintext one.
    from shared.schemas.chat import ChatCompletionRequest

    engine = api.app.state.inference.engine.get()  # type: ignore[attr-defined]
    tenant_id = api.get(f"/v1/namespaces/{ns}", headers=auth).json()["tenant"]
    caller = Caller(tenant=tenant_id, principal="p")
    hot_p = engine.prepare(caller, ChatCompletionRequest.model_validate(chat(ns, ["activation"])))
    plain_p = engine.prepare(caller, ChatCompletionRequest.model_validate(chat(ns, ["plaintext"])))
    assert hot_p.prefix is not None and plain_p.prefix is None
    assert hot_p.prefix.text + hot_p.prompt == plain_p.prompt
    np.testing.assert_allclose(
        engine.backend.next_token_logits(hot_p.prompt, prefix=hot_p.prefix),
        engine.backend.next_token_logits(plain_p.prompt),
        atol=1e-4,
        rtol=0,
    )
    # The record is an activation cube, DERIVED_FROM each source; not in search.
    lineage = api.get(f"/v1/memories/kv_{ns}/lineage", headers=auth).json()
    derived = {e["dst"] for e in lineage["edges"] if e["kind"] == "DERIVED_FROM"}
    assert derived == set(built["sources"])
    found = api.post("/v1/search", json={"query": "Ana", "namespaces": [ns]}, headers=auth)
    assert all(h["id"] != f"kv_{ns}" for h in found.json()["results"])


def test_build_endpoint_errors_are_4xx(api: TestClient) -> None:
    auth_a, ns_a, ids_a = tenant(api, "a")
    auth_b, ns_b, _ = tenant(api, "b")
    url = f"/v1/namespaces/{ns_a}/activation"
    assert api.post(url, json={"cube_ids": ids_a}).status_code == 401
    assert api.post(url, json={"cube_ids": ids_a}, headers=auth_b).status_code == 404
    r = api.post("/v1/namespaces/ns_nope/activation", json={"query": "x"}, headers=auth_a)
    assert r.status_code == 404
    r = api.post(f"/v1/namespaces/{ns_b}/activation", json={"cube_ids": ids_a}, headers=auth_b)
    assert r.status_code == 404  # another tenant's memories
    assert api.post(url, json={}, headers=auth_a).status_code == 422
    r = api.post(url, json={"query": "x", "token_budget": 10**6}, headers=auth_a)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.token_budget"
    r = api.post(url, json={"query": "x", "token_budget": 0}, headers=auth_a)
    assert r.status_code == 422
    r = api.post(url, json={"cube_ids": ids_a, "bogus": 1}, headers=auth_a)
    assert r.status_code == 422


def test_isolation_other_tenant_and_unnamed_namespace(api: TestClient) -> None:
    auth_a, ns_a, ids_a = tenant(api, "a")
    auth_b, ns_b, _ = tenant(api, "b")
    ns_a2 = api.post("/v1/namespaces", json={"name": "other"}, headers=auth_a).json()["id"]
    api.post(f"/v1/namespaces/{ns_a2}/memories", json={"text": "Ana owns a bike"}, headers=auth_a)
    r = api.post(f"/v1/namespaces/{ns_a}/activation", json={"cube_ids": ids_a}, headers=auth_a)
    assert r.status_code == 201
    # Another tenant naming A's namespace: 404, the cache is never looked at.
    assert api.post("/v1/chat", json=chat(ns_a, ["activation"]), headers=auth_b).status_code == 404
    # B's own namespace (same shape): no cache.
    out = api.post("/v1/chat", json=chat(ns_b, ["activation"]), headers=auth_b).json()
    assert out["memgrid"]["tiers_applied"] == []
    # A's other namespace, not the cached one: no cache either.
    out = api.post("/v1/chat", json=chat(ns_a2, ["activation", "plaintext"]), headers=auth_a)
    assert {m["tier"] for m in out.json()["memgrid"]["memories"]} == {"plaintext"}
    assert all(m["namespace"] == ns_a2 for m in out.json()["memgrid"]["memories"])


# --- commands, eviction, restart (the service over a real vault and bus) -------------


@pytest.fixture
def world(tmp_path: Path, backend: Any) -> Iterator[dict[str, Any]]:
    from services.vault.factory import build_vault
    from shared.adapters import create_event_bus

    settings = settings_for(tmp_path)
    bus = create_event_bus(settings.bus)
    vault = build_vault(settings, bus=bus)
    vault.start()
    t = vault.create_tenant("a")
    caller = Caller(tenant=t.id, principal="p")
    ns = vault.create_namespace(caller, NamespaceCreate(name="n")).id
    ns2 = vault.create_namespace(caller, NamespaceCreate(name="m")).id
    cubes = vault.create_memories(caller, ns, [CubeDraft(text=x) for x in TEXTS])
    cubes2 = vault.create_memories(caller, ns2, [CubeDraft(text="Bruno lives in Oslo")])
    facts: list[EventEnvelope] = []
    lock = threading.Lock()

    def collect(event: EventEnvelope) -> None:
        with lock:
            facts.append(event)

    sub = bus.subscribe("test", ["memory.promoted", "memory.demoted"], collect)
    yield {
        "settings": settings,
        "bus": bus,
        "vault": vault,
        "caller": caller,
        "ns": ns,
        "ns2": ns2,
        "cubes": cubes,
        "cubes2": cubes2,
        "facts": facts,
    }
    sub.close()
    vault.close()
    bus.close()


def service(w: dict[str, Any], backend: Any, **inference: Any) -> Any:
    from services.inference.activation import build_activation

    settings = settings_for(w["settings"].data_dir, **inference)
    return build_activation(settings, backend, w["vault"], w["bus"])


def command(w: dict[str, Any], cmd: Any) -> EventEnvelope:
    return make_command(cmd, tenant=w["caller"].tenant)


def facts(w: dict[str, Any], topic: str) -> list[EventEnvelope]:
    w["bus"].flush()
    return [e for e in w["facts"] if e.topic == topic]


def build_cmd(w: dict[str, Any], ns: str, cubes: list[Any]) -> BuildActivation:
    return BuildActivation(
        command_id=str(uuid.uuid4()),
        namespace=ns,
        reason="hot: 3 accesses",
        issued_at=datetime.now(UTC),
        cube_ids=[c.id for c in cubes],
        token_budget=200,
    )


def test_build_command_twice_promotes_once_and_survives_restart(
    world: dict[str, Any], backend: Any
) -> None:
    w = world
    cmd = build_cmd(w, w["ns"], w["cubes"])
    svc = service(w, backend)
    svc.handle(command(w, cmd))
    svc.handle(command(w, cmd))  # redelivered
    promoted = facts(w, "memory.promoted")
    assert len(promoted) == 1
    data = promoted[0].data
    assert data["command_id"] == cmd.command_id and data["to_tier"] == "activation"
    assert data["from_tier"] == "plaintext" and sorted(data["cube_ids"]) == sorted(
        c.id for c in w["cubes"]
    )
    key = data["target_id"]
    # A restarted process: the cache is found through the vault's record, and the
    # same command delivered once more is recognised as done.
    again = service(w, backend)
    again.handle(command(w, cmd))
    assert len(facts(w, "memory.promoted")) == 1
    prefix = again.prefix_for(w["caller"], [w["ns"]])
    assert prefix is not None and [s.cube_id for s in prefix.sources] == [c.id for c in w["cubes"]]
    assert again.activations.current(w["caller"].tenant, w["ns"]) == key
    # Never for another tenant, nor for a namespace the request does not name.
    assert again.prefix_for(Caller(tenant="t_other", principal="p"), [w["ns"]]) is None
    assert again.prefix_for(w["caller"], [w["ns2"]]) is None


def test_evict_command_demotes(world: dict[str, Any], backend: Any) -> None:
    w = world
    svc = service(w, backend)
    svc.handle(command(w, build_cmd(w, w["ns"], w["cubes"])))
    key = facts(w, "memory.promoted")[0].data["target_id"]
    evict = EvictActivation(
        command_id=str(uuid.uuid4()),
        namespace=w["ns"],
        reason="cold",
        issued_at=datetime.now(UTC),
        target_id=key,
        cube_ids=[c.id for c in w["cubes"]],
    )
    svc.handle(command(w, evict))
    svc.handle(command(w, evict))
    demoted = facts(w, "memory.demoted")
    assert len(demoted) == 1 and demoted[0].data["target_id"] == key
    assert demoted[0].data["to_tier"] == "plaintext"
    assert demoted[0].data["command_id"] == evict.command_id
    assert w["vault"].current_activation(w["caller"].tenant, w["ns"]) is None
    assert svc.prefix_for(w["caller"], [w["ns"]]) is None


def test_lru_eviction_demotes(world: dict[str, Any], backend: Any) -> None:
    w = world
    first = service(w, backend)
    first.handle(command(w, build_cmd(w, w["ns"], w["cubes"])))
    size = first.activations.store.lru.used_bytes
    # An LRU room for one cache: building the second pushes the first out.
    svc = service(w, backend, kv_cache_bytes=size + size // 2)
    assert svc.prefix_for(w["caller"], [w["ns"]]) is not None  # loaded from the blob store
    key = svc.activations.current(w["caller"].tenant, w["ns"])
    svc.handle(command(w, build_cmd(w, w["ns2"], w["cubes2"])))
    demoted = facts(w, "memory.demoted")
    assert [e.data["target_id"] for e in demoted] == [key]
    assert "LRU" in demoted[0].data["reason"]
    assert w["vault"].current_activation(w["caller"].tenant, w["ns"]) is None
    assert svc.activations.current(w["caller"].tenant, w["ns2"]) is not None


def test_split_mode_build_over_http(tmp_path: Path, backend: Any) -> None:
    """interface → HttpInference → inference app → HttpVault → vault."""
    from services.inference.activation import build_activation
    from services.inference.app import create_app as create_inference_app
    from services.inference.chat import ChatEngine
    from services.interface.app import create_app
    from services.vault.app import create_app as create_vault_app
    from services.vault.factory import build_vault
    from shared.clients.inference_http import HttpInference
    from shared.clients.vault_http import HttpVault

    settings = settings_for(tmp_path)
    vault = build_vault(settings)
    vault.start()
    try:
        with TestClient(create_vault_app(settings, vault)) as internal:
            remote = HttpVault(settings.vault, client=internal)
            activation = build_activation(settings, backend, remote, None)
            engine = ChatEngine(settings.inference, backend, remote, activation)
            with TestClient(create_inference_app(settings, engine)) as inf:
                inference = HttpInference(settings.inference.serve, client=inf)
                with TestClient(create_app(settings, remote, None, inference)) as api:
                    auth, ns, ids = tenant(api, "a")
                    url = f"/v1/namespaces/{ns}/activation"
                    r = api.post(url, json={"cube_ids": ids[1:]}, headers=auth)
                    assert r.status_code == 201, r.text
                    assert [s.split("@")[0] for s in r.json()["sources"]] == ids[1:]
                    out = api.post("/v1/chat", json=chat(ns, ["activation"]), headers=auth)
                    tiers = {m["tier"] for m in out.json()["memgrid"]["memories"]}
                    assert tiers == {"activation"}
                    r = api.post(url, json={"query": "x", "token_budget": 10**6}, headers=auth)
                    assert r.status_code == 422
                    r = api.post(
                        "/v1/namespaces/ns_nope/activation", json={"query": "x"}, headers=auth
                    )
                    assert r.status_code == 404
    finally:
        vault.close()
