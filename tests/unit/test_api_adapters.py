"""The public adapters API: GET /v1/adapters, GET /v1/adapters/{id},
GET /v1/memories/{id}/adapters and POST /v1/namespaces/{id}/adapters (a
TrainAdapter command on the bus), in embedded and split mode."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shared.adapters import create_event_bus
from shared.ports.bus import EventBus
from shared.ports.vault import VaultAPI
from shared.schemas.adapters import AdapterDetails, AdapterState
from shared.schemas.commands import TrainAdapter
from shared.schemas.events import EventEnvelope
from shared.schemas.memcube import ParametricPayload
from shared.settings import Settings
from tests.conftest import ADMIN_KEY

pytestmark = pytest.mark.unit
DIGEST = "0123456789abcdef"


@dataclass
class World:
    client: TestClient
    vault: VaultAPI  # the app's own (Vault or HttpVault): records adapters as the trainer would
    bus: EventBus
    commands: list[EventEnvelope]
    got: threading.Event


@pytest.fixture(params=["embedded", "split"])
def w(request: pytest.FixtureRequest, api_settings: Settings) -> Iterator[World]:
    commands: list[EventEnvelope] = []
    got = threading.Event()

    def collect(event: EventEnvelope) -> None:
        commands.append(event)
        got.set()

    if request.param == "embedded":
        from services.embedded import build_embedded

        app, close = build_embedded(api_settings)
        try:
            bus: EventBus = app.state.bus
            sub = bus.subscribe("test-trainer", [TrainAdapter.topic], collect)
            with TestClient(app) as client:
                yield World(client, app.state.vault, bus, commands, got)
            sub.close()
        finally:
            close()
        return

    from services.interface.app import create_app
    from services.vault.app import create_app as create_vault_app
    from services.vault.factory import build_vault
    from shared.clients.vault_http import HttpVault

    bus = create_event_bus(api_settings.bus)
    vault = build_vault(api_settings, bus=bus)
    vault.start()
    sub = bus.subscribe("test-trainer", [TrainAdapter.topic], collect)
    try:
        with TestClient(create_vault_app(api_settings, vault)) as internal:
            api = HttpVault(api_settings.vault, client=internal)
            with TestClient(create_app(api_settings, api, bus=bus)) as client:
                yield World(client, api, bus, commands, got)
    finally:
        sub.close()
        vault.close()
        bus.close()


def tenant(w: World, name: str) -> tuple[dict[str, str], str]:
    """(auth headers, tenant id) of a new tenant."""
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    r = w.client.post("/v1/tenants", json={"name": name}, headers=admin)
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['api_key']}"}, r.json()["id"]


def namespace(w: World, h: dict[str, str], name: str = "n") -> str:
    r = w.client.post("/v1/namespaces", json={"name": name}, headers=h)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def memories(w: World, h: dict[str, str], ns: str, *texts: str) -> list[dict[str, Any]]:
    out = []
    for text in texts:
        r = w.client.post(f"/v1/namespaces/{ns}/memories", json={"text": text}, headers=h)
        assert r.status_code == 201, r.text
        out.extend(r.json()["memories"])
    return out


def record(w: World, tenant_id: str, ns: str, name: str, refs: list[str]) -> str:
    aid = f"{name}@1+{DIGEST}"
    payload = ParametricPayload(
        adapter_id=aid,
        blob_key=f"adapters/{aid}/w",
        manifest_key=f"adapters/{aid}/manifest.json",
        base_model_fingerprint="tiny:abc",
        source_refs=refs,
    )
    details = AdapterDetails(metrics={"loss": 0.25}, data_size=len(refs), duration_s=2.0)
    w.vault.record_adapter(tenant_id, ns, payload, details, "trained")
    return aid


def ref(m: dict[str, Any]) -> str:
    return f"{m['id']}@{m['version']}"


def test_list_show_and_which_adapters_contain_a_memory(w: World) -> None:
    h, t = tenant(w, "acme")
    ns, ns2 = namespace(w, h, "a"), namespace(w, h, "b")
    m = memories(w, h, ns, "Ana lives in Lisbon", "Ana likes tea")
    m2 = memories(w, h, ns2, "Bruno lives in Oslo")
    a = record(w, t, ns, "lora-a", [ref(m[0])])
    b = record(w, t, ns, "lora-b", [ref(m[0]), ref(m[1])])
    c = record(w, t, ns2, "lora-c", [ref(m2[0])])

    r = w.client.get("/v1/adapters", headers=h)
    assert r.status_code == 200, r.text
    assert [x["id"] for x in r.json()["adapters"]] == [c, b, a]
    r = w.client.get("/v1/adapters", params={"namespace": ns}, headers=h)
    assert [(x["id"], x["state"]) for x in r.json()["adapters"]] == [
        (b, "serving"),
        (a, "superseded"),
    ]

    r = w.client.get(f"/v1/adapters/{b}", headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["state"] == "serving" and body["namespace"] == ns
    assert body["sources"] == [ref(m[0]), ref(m[1])]
    assert body["details"]["metrics"] == {"loss": 0.25} and body["details"]["data_size"] == 2

    r = w.client.get(f"/v1/memories/{m[0]['id']}/adapters", headers=h)
    assert r.status_code == 200, r.text
    assert [x["id"] for x in r.json()["adapters"]] == [b, a]
    r = w.client.get(f"/v1/memories/{m[1]['id']}/adapters", headers=h)
    assert [x["id"] for x in r.json()["adapters"]] == [b]

    # State changes show through.
    w.vault.set_adapter_state(t, b, AdapterState.stale, "source updated", [ref(m[1])])
    body = w.client.get(f"/v1/adapters/{b}", headers=h).json()
    assert body["state"] == "stale" and body["stale_sources"] == [ref(m[1])]


def test_another_tenants_adapters_are_not_found(w: World) -> None:
    h, t = tenant(w, "acme")
    h2, _ = tenant(w, "globex")
    ns = namespace(w, h)
    m = memories(w, h, ns, "Ana lives in Lisbon")
    a = record(w, t, ns, "lora-a", [ref(m[0])])

    r = w.client.get(f"/v1/adapters/{a}", headers=h2)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "adapter_not_found"
    assert w.client.get("/v1/adapters", headers=h2).json() == {"adapters": []}
    r = w.client.get("/v1/adapters", params={"namespace": ns}, headers=h2)
    assert (r.status_code, r.json()["code"]) == (404, "namespace_not_found")
    r = w.client.get(f"/v1/memories/{m[0]['id']}/adapters", headers=h2)
    assert r.status_code == 404
    r = w.client.post(f"/v1/namespaces/{ns}/adapters", json={"cube_ids": [m[0]["id"]]}, headers=h2)
    assert (r.status_code, r.json()["code"]) == (404, "namespace_not_found")
    assert w.client.get(f"/v1/adapters/{a}").status_code == 401
    assert not w.commands


@pytest.mark.parametrize(
    "adapter_id", [f"nope@1+{DIGEST}", "not-an-adapter-id", "a@1+XYZ", "a@1+" + "0" * 99]
)
def test_unknown_or_malformed_adapter_ids_are_404(w: World, adapter_id: str) -> None:
    h, _ = tenant(w, "acme")
    r = w.client.get(f"/v1/adapters/{adapter_id}", headers=h)
    assert (r.status_code, r.json()["code"]) == (404, "adapter_not_found")


def test_train_publishes_a_train_adapter_command(w: World) -> None:
    h, t = tenant(w, "acme")
    ns = namespace(w, h)
    m = memories(w, h, ns, "Ana lives in Lisbon", "Ana likes tea")
    ids = [m[1]["id"], m[0]["id"], m[1]["id"]]
    r = w.client.post(
        f"/v1/namespaces/{ns}/adapters", json={"cube_ids": ids, "reason": "by hand"}, headers=h
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["namespace"] == ns and body["cube_ids"] == [m[1]["id"], m[0]["id"]]
    assert w.got.wait(5)
    (event,) = w.commands
    assert event.id == body["command_id"] and event.tenant == t and event.namespace == ns
    assert event.type.endswith(TrainAdapter.topic)
    command = TrainAdapter.model_validate(event.data)
    assert command.command_id == body["command_id"]
    assert command.cube_ids == body["cube_ids"] and command.reason == "by hand"
    # Defaults: the reason says where it came from.
    r = w.client.post(f"/v1/namespaces/{ns}/adapters", json={"cube_ids": ids[:1]}, headers=h)
    assert r.status_code == 202, r.text
    assert r.json()["command_id"] != body["command_id"]


def test_train_checks_its_memories(w: World) -> None:
    h, _ = tenant(w, "acme")
    h2, _ = tenant(w, "globex")
    ns, ns2 = namespace(w, h, "a"), namespace(w, h, "b")
    m = memories(w, h, ns, "Ana lives in Lisbon", "Ana likes tea")
    other = memories(w, h, ns2, "Bruno lives in Oslo")
    foreign = memories(w, h2, namespace(w, h2), "Carla lives in Rome")
    url = f"/v1/namespaces/{ns}/adapters"

    def post(body: Any) -> Any:
        return w.client.post(url, json=body, headers=h)

    r = post({"cube_ids": [m[0]["id"], other[0]["id"]]})
    assert (r.status_code, r.json()["code"]) == (422, "validation_failed")
    assert [e["field"] for e in r.json()["errors"]] == ["body.cube_ids[1]"]
    r = post({"cube_ids": [foreign[0]["id"]]})
    assert (r.status_code, r.json()["code"]) == (404, "memory_not_found")
    r = post({"cube_ids": ["no-such-memory"]})
    assert r.status_code == 404
    r = post({"cube_ids": ["bad id!"]})
    assert r.status_code == 404
    assert w.client.delete(f"/v1/memories/{m[1]['id']}", headers=h).status_code == 204
    assert post({"cube_ids": [m[1]["id"]]}).status_code == 404  # deleted
    bads: list[dict[str, Any]] = [
        {},
        {"cube_ids": []},
        {"cube_ids": "x"},
        {"cube_ids": [m[0]["id"]], "x": 1},
    ]
    for bad in bads:
        r = post(bad)
        assert r.status_code == 422, (bad, r.text)
    r = post({"cube_ids": [m[0]["id"]], "reason": "   "})
    assert r.status_code == 422
    r = post({"cube_ids": [m[0]["id"]], "reason": "x" * 501})
    assert r.status_code == 422
    r = w.client.post(
        "/v1/namespaces/ns_unknown/adapters", json={"cube_ids": [m[0]["id"]]}, headers=h
    )
    assert (r.status_code, r.json()["code"]) == (404, "namespace_not_found")
    assert not w.commands


def test_train_without_a_bus_is_503(api_settings: Settings) -> None:
    from services.interface.app import create_app
    from services.vault.factory import build_vault

    vault = build_vault(api_settings)
    try:
        with TestClient(create_app(api_settings, vault)) as client:
            admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
            key = client.post("/v1/tenants", json={"name": "a"}, headers=admin).json()["api_key"]
            h = {"Authorization": f"Bearer {key}"}
            ns = client.post("/v1/namespaces", json={"name": "n"}, headers=h).json()["id"]
            r = client.post(f"/v1/namespaces/{ns}/memories", json={"text": "Ana"}, headers=h)
            cube = r.json()["memories"][0]["id"]
            r = client.post(f"/v1/namespaces/{ns}/adapters", json={"cube_ids": [cube]}, headers=h)
            assert (r.status_code, r.json()["code"]) == (503, "bus_unavailable")
    finally:
        vault.close()


def test_the_interface_process_connects_its_bus_on_first_use(
    api_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Distributed mode: a broker that is down makes training 503, not the API."""
    from services.interface import main as interface_main
    from services.interface.app import create_app
    from services.vault.factory import build_vault
    from shared.errors import Unavailable

    down = True

    def create(cfg: Any) -> EventBus:
        if down:
            raise Unavailable("kafka is unreachable", "bus_unavailable")
        return create_event_bus(cfg)

    monkeypatch.setattr(interface_main, "create_event_bus", create)
    bus = interface_main.LazyBus(api_settings.bus)
    vault = build_vault(api_settings)
    try:
        with TestClient(create_app(api_settings, vault, bus=bus)) as client:
            admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
            key = client.post("/v1/tenants", json={"name": "a"}, headers=admin).json()["api_key"]
            h = {"Authorization": f"Bearer {key}"}
            ns = client.post("/v1/namespaces", json={"name": "n"}, headers=h).json()["id"]
            r = client.post(f"/v1/namespaces/{ns}/memories", json={"text": "Ana"}, headers=h)
            body = {"cube_ids": [r.json()["memories"][0]["id"]]}
            r = client.post(f"/v1/namespaces/{ns}/adapters", json=body, headers=h)
            assert (r.status_code, r.json()["code"]) == (503, "bus_unavailable")
            # Every request above was answered although its decision could not go
            # on the bus: the decisions wait in the spool and go when it is back.
            spool = client.app.state.decision_spool  # type: ignore[attr-defined]
            assert spool.path.exists()
            down = False
            got: list[EventEnvelope] = []
            sub = bus.subscribe("t", [TrainAdapter.topic], got.append)
            r = client.post(f"/v1/namespaces/{ns}/adapters", json=body, headers=h)
            assert r.status_code == 202, r.text
            bus.flush()
            assert [e.id for e in got] == [r.json()["command_id"]]
            decisions: list[EventEnvelope] = []
            audit = bus.subscribe("audit-probe", ["audit.decision"], decisions.append)
            assert spool.drain() >= 0
            bus.flush()
            assert not spool.path.exists()
            routes = [e.data["route"] for e in decisions]
            assert "/v1/tenants" in routes and "/v1/namespaces/{namespace_id}/adapters" in routes
            audit.close()
            sub.close()
    finally:
        bus.close()
        vault.close()
