"""Right to erasure in distributed mode: interface → vault (Neo4j) over HTTP, the
events on Kafka, the trainer process withdrawing the adapter, deleting its files
from MinIO and retraining without the erased memory (tiny model, inline runner).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from shared.errors import NotFound
from shared.lora.store import AdapterStore
from shared.settings import BlobSettings
from tests.e2e.support import Collector, Stack, Tenant, wait_until
from tests.e2e.test_trainer_process import FACTS, serving

pytestmark = pytest.mark.e2e


@pytest.fixture
def erasures(stack: Stack, settings_env: dict[str, str]) -> Iterator[Collector]:
    c = Collector(settings_env["MEMGRID_BUS__URL"], ["erasure.completed", "memory.deleted"])
    yield c
    c.close()


@pytest.mark.timeout(600)
def test_an_erasure_reaches_neo4j_kafka_and_the_trainer_process(
    stack: Stack, tenant: Tenant, erasures: Collector, settings_env: dict[str, str]
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

    body = {"subject": {"kind": "person", "value": "Zorvik"}}
    r = tenant.http.post("/v1/erasures", json=body, headers=tenant.headers)
    assert r.status_code == 201, r.text
    report = r.json()
    assert report["cube_ids"] == [ids[0]] and report["adapters_stale"] == [adapter["id"]]
    got = tenant.http.get(f"/v1/erasures/{report['id']}", headers=tenant.headers)
    assert got.json() == report

    # Neo4j: neither index finds it; the versions are content-free.
    hits = tenant.search("Zorvik bees Quenholt", top_k=10).json()["results"]
    assert ids[0] not in {h["id"] for h in hits}
    history = tenant.http.get(f"/v1/memories/{ids[0]}/history", headers=tenant.headers).json()
    assert all(v["payload"]["text"] == "" for v in history["versions"])

    # Kafka: the fact of the erasure, by digest, and memory.deleted (erased).
    [done] = wait_until(
        lambda: erasures.of("erasure.completed", tenant.id), 60, "erasure.completed"
    )
    digest = hashlib.sha256(b"person\x00Zorvik").hexdigest()
    assert done.data["subject_digest"] == digest and done.data["cubes_erased"] == 1
    assert "zorvik" not in done.model_dump_json().lower()
    deleted = wait_until(lambda: erasures.of("memory.deleted", tenant.id), 60, "memory.deleted")
    assert deleted[0].data["reason"] == "erased"

    # The trainer process: withdrawn, files gone from MinIO, retrained without it.
    [new] = wait_until(
        lambda: serving(tenant, exclude=adapter["id"]), 300, "the retrained adapter", 1.0
    )
    assert sorted(s.rpartition("@")[0] for s in new["sources"]) == sorted(ids[1:])
    old = tenant.http.get(f"/v1/adapters/{adapter['id']}", headers=tenant.headers).json()
    assert old["state"] == "withdrawn"
    blob = BlobSettings(
        url=settings_env["MEMGRID_BLOB__URL"],
        endpoint=settings_env["MEMGRID_BLOB__ENDPOINT"],
        access_key=settings_env["MEMGRID_BLOB__ACCESS_KEY"],  # type: ignore[arg-type]
        secret_key=settings_env["MEMGRID_BLOB__SECRET_KEY"],  # type: ignore[arg-type]
    )
    from shared.adapters import create_blob_store

    files = AdapterStore(create_blob_store(blob))
    with pytest.raises(NotFound):
        files.resolve(tenant.id, tenant.namespace, adapter["id"])
    files.resolve(tenant.id, tenant.namespace, new["id"])  # the replacement's are there
