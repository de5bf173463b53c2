"""The trainer as its own process, on Kafka, Neo4j and MinIO (tiny model, the
inline runner: the loop Ray Train runs, without starting Ray in the e2e stack).

A training requested through the public API reaches the trainer process as a
Kafka command; the adapter's files land in MinIO, its record (DERIVED_FROM its
sources) in Neo4j through the vault, and memory.promoted on Kafka. Deleting one
source makes the trainer withdraw the adapter and retrain without it."""

from __future__ import annotations

import pytest

from shared.lora.store import AdapterStore
from shared.settings import BlobSettings
from tests.e2e.support import Collector, Stack, Tenant, wait_until

pytestmark = pytest.mark.e2e

FACTS = [
    "Zorvik keeps bees in Quenholt.",
    "Mira's boat is painted teal.",
    "Orrin Vale is married to Tessaly.",
]


def adapters(tenant: Tenant) -> list[dict]:
    r = tenant.http.get(
        "/v1/adapters", params={"namespace": tenant.namespace}, headers=tenant.headers
    )
    assert r.status_code == 200, r.text
    out: list[dict] = r.json()["adapters"]
    return out


def serving(tenant: Tenant, exclude: str = "") -> list[dict]:
    return [a for a in adapters(tenant) if a["state"] == "serving" and a["id"] != exclude]


@pytest.mark.timeout(600)
def test_the_trainer_process_distils_and_unlearns(
    stack: Stack, tenant: Tenant, collector: Collector, settings_env: dict[str, str]
) -> None:
    ids = []
    for text in FACTS:
        r = tenant.http.post(
            f"/v1/namespaces/{tenant.namespace}/memories",
            json={"text": text},
            headers=tenant.headers,
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["memories"][0]["id"])
    r = tenant.http.post(
        f"/v1/namespaces/{tenant.namespace}/adapters",
        json={"cube_ids": ids, "reason": "e2e"},
        headers=tenant.headers,
    )
    assert r.status_code == 202, r.text

    [adapter] = wait_until(lambda: serving(tenant), 300, "the trained adapter", 1.0)
    assert sorted(s.rpartition("@")[0] for s in adapter["sources"]) == sorted(ids)
    assert adapter["details"]["metrics"]["recall_after"] == 1.0
    assert adapter["details"]["command_id"] == r.json()["command_id"]
    # The graph answers "which adapters contain this memory?".
    r = tenant.http.get(f"/v1/memories/{ids[1]}/adapters", headers=tenant.headers)
    assert [a["id"] for a in r.json()["adapters"]] == [adapter["id"]]
    # The files are in MinIO, checked against the manifest's digests.
    blob = BlobSettings(
        url=settings_env["MEMGRID_BLOB__URL"],
        endpoint=settings_env["MEMGRID_BLOB__ENDPOINT"],
        access_key=settings_env["MEMGRID_BLOB__ACCESS_KEY"],  # type: ignore[arg-type]
        secret_key=settings_env["MEMGRID_BLOB__SECRET_KEY"],  # type: ignore[arg-type]
    )
    from shared.adapters import create_blob_store

    store = AdapterStore(create_blob_store(blob))
    _, manifest = store.resolve(tenant.id, tenant.namespace, adapter["id"])
    assert sorted(f"{s.cube_id}@{s.version}" for s in manifest.sources) == sorted(
        adapter["sources"]
    )
    files = store.load(tenant.id, tenant.namespace, adapter["id"], manifest.fingerprint)
    assert files.config["peft_type"] == "LORA" and len(files.weights) > 0
    promoted = wait_until(
        lambda: [e for e in collector.of("memory.promoted", tenant.id)],
        60,
        "memory.promoted on Kafka",
    )
    assert promoted[0].data["target_id"] == adapter["id"]

    # Unlearning: the deleted memory's adapter is withdrawn and replaced.
    assert tenant.http.delete(f"/v1/memories/{ids[0]}", headers=tenant.headers).status_code == 204
    [new] = wait_until(
        lambda: serving(tenant, exclude=adapter["id"]), 300, "the retrained adapter", 1.0
    )
    assert sorted(s.rpartition("@")[0] for s in new["sources"]) == sorted(ids[1:])
    old = tenant.http.get(f"/v1/adapters/{adapter['id']}", headers=tenant.headers).json()
    assert old["state"] == "withdrawn"
