"""Right to erasure end to end in embedded mode, on the tiny model.

Memories about a person (one only in an older version, one only as the speaker)
→ a KV cache built from them and an adapter distilled from them → the person is
erased through the API → no search finds any of it, the memories are gone or
content-free, the KV cache is neither current nor served and its blobs are gone,
the adapter is withdrawn with its files deleted, a retrained one leaves the erased
memories out, and a chat on the parametric tier no longer completes the erased fact.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shared.errors import NotFound
from shared.lora.store import AdapterStore
from shared.settings import Settings
from tests.unit.test_trainer_flow import FACTS, answered, ask, serving, wait_for
from tests.unit.test_trainer_job import FAST
from tests.unit.test_vault import Clock

pytestmark = pytest.mark.unit

ADMIN = {"Authorization": "Bearer root"}
PERSON = "zorvik"  # FACTS[0] is about Zorvik; FACTS[1:] are not


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[TestClient, Any]]:
    from services.embedded import build_embedded

    settings = Settings(  # type: ignore[arg-type]
        data_dir=tmp_path,
        admin_key="root",
        embedder={"backend": "hashing"},
        inference={"backend": "transformers", "model": "tiny"},
        trainer=FAST,
        # No scheduler decisions here: the cache and the adapter are asked for by hand.
        scheduler={"tick_interval_s": 86_400},
    )
    app, close = build_embedded(settings, clock=Clock())
    try:
        with TestClient(app) as client:
            yield client, app
    finally:
        close()


def settle(app: Any) -> None:
    app.state.vault.relay.drain()
    # The trainer's handler of memory.deleted retrains the stale adapter in line:
    # seconds on an idle machine, more on a busy one.
    app.state.bus.flush(timeout_s=120)


def test_erasing_a_person_reaches_search_kv_caches_and_adapters(
    world: tuple[TestClient, Any],
) -> None:
    client, app = world
    created = client.post("/v1/tenants", json={"name": "acme"}, headers=ADMIN).json()
    tenant, auth = created["id"], {"Authorization": f"Bearer {created['api_key']}"}
    ns = client.post("/v1/namespaces", json={"name": "facts"}, headers=auth).json()["id"]

    def add(body: dict[str, Any]) -> str:
        r = client.post(f"/v1/namespaces/{ns}/memories", json=body, headers=auth)
        assert r.status_code == 201, r.text
        return str(r.json()["memories"][0]["id"])

    fact_ids = [add({"text": text}) for text in FACTS]
    kite = add({"text": "Zorvik flies a red kite."})
    r = client.patch(f"/v1/memories/{kite}", json={"text": "The kite is red."}, headers=auth)
    assert r.status_code == 200, r.text  # the person is now only in version 1
    said = add(
        {
            "messages": [
                {
                    "id": "m1",
                    "role": "user",
                    "name": "Zorvik",
                    "content": "I moved to Lisbon yesterday",
                    "timestamp": "2024-03-02T10:00:00Z",
                }
            ]
        }
    )
    erased = {fact_ids[0], kite, said}
    kept = fact_ids[1:]

    # A KV cache from all of them, and an adapter distilled from the three facts.
    r = client.post(
        f"/v1/namespaces/{ns}/activation",
        json={"cube_ids": [*fact_ids, kite, said]},
        headers=auth,
    )
    assert r.status_code == 201, r.text
    cache = r.json()["cache_id"]
    blobs = app.state.trainer.blobs
    assert blobs.exists(tenant, cache)
    r = client.post(
        f"/v1/namespaces/{ns}/adapters",
        json={"cube_ids": fact_ids, "reason": "erasure test"},
        headers=auth,
    )
    assert r.status_code == 202, r.text
    [adapter] = wait_for(lambda: serving(client, auth, ns), "the adapter to serve")
    files = AdapterStore(blobs)
    files.resolve(tenant, ns, adapter["id"])  # its files are there
    hot = ask(client, auth, ns, FACTS[0], ["activation"])
    assert hot["memgrid"]["tiers_applied"] == ["activation"]
    before = wait_for(
        lambda: (
            (o := ask(client, auth, ns, FACTS[0], ["parametric"]))["memgrid"]["adapter"]
            == adapter["id"]
            and o
        ),
        "inference to load the adapter",
        60,
    )
    assert answered(before, FACTS[0])  # so its absence below means something

    # The erasure.
    r = client.post(
        "/v1/erasures", json={"subject": {"kind": "person", "value": "ZORVIK"}}, headers=auth
    )
    assert r.status_code == 201, r.text
    report = r.json()
    assert set(report["cube_ids"]) == erased
    assert report["versions_purged"] == 4  # the kite's two versions, one each for the others
    assert report["kv_caches_evicted"] == [cache]
    assert report["adapters_stale"] == [adapter["id"]]
    assert PERSON not in r.text.lower()
    assert client.get(f"/v1/erasures/{report['id']}", headers=auth).json() == report
    settle(app)

    # Search: nothing of it, whatever the query.
    for query in ("Zorvik", "bees Quenholt", "red kite", "Lisbon", "boat teal"):
        body = {"query": query, "namespaces": [ns], "top_k": 20}
        hits = client.post("/v1/search", json=body, headers=auth).json()["results"]
        assert not erased & {h["id"] for h in hits}
        assert all(PERSON not in h["text"].lower() for h in hits)
    for cube_id in erased:
        assert client.get(f"/v1/memories/{cube_id}", headers=auth).status_code == 404
        history = client.get(f"/v1/memories/{cube_id}/history", headers=auth).json()["versions"]
        assert all(v["payload"]["text"] == "" and v["metadata"] == {} for v in history)
    assert client.get(f"/v1/memories/{kept[0]}", headers=auth).status_code == 200

    # The KV cache: not current, not served, its blobs deleted.
    assert app.state.vault.current_activation(tenant, ns) is None
    wait_for(lambda: not blobs.exists(tenant, cache), "the KV cache's blobs to go", 30)
    cold = ask(client, auth, ns, FACTS[0], ["activation"])
    assert "activation" not in cold["memgrid"]["tiers_applied"]

    # The adapter: withdrawn, files deleted; a retrained one without the erased memory.
    old = client.get(f"/v1/adapters/{adapter['id']}", headers=auth).json()
    assert old["state"] == "withdrawn"
    with pytest.raises(NotFound):
        files.resolve(tenant, ns, adapter["id"])
    [new] = wait_for(
        lambda: [a for a in serving(client, auth, ns) if a["id"] != adapter["id"]],
        "the retrained adapter",
    )
    assert sorted(s.rpartition("@")[0] for s in new["sources"]) == sorted(kept)
    after = wait_for(
        lambda: (
            (o := ask(client, auth, ns, FACTS[0], ["parametric"]))["memgrid"]["adapter"]
            == new["id"]
            and o
        ),
        "inference to switch to the retrained adapter",
        60,
    )
    assert not answered(after, FACTS[0]), after["choices"][0]["message"]["content"]

    # Again: nothing left to erase.
    r = client.post(
        "/v1/erasures", json={"subject": {"kind": "person", "value": "Zorvik"}}, headers=auth
    )
    assert r.status_code == 201 and r.json()["cube_ids"] == [], r.text
