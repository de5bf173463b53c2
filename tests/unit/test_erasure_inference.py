"""Inference's side of an erasure (tiny model): the EvictActivation the vault sends
for a KV cache built from erased memories drops it from memory and deletes its
blobs; an ordinary eviction keeps the blobs (history, reuse)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.schemas.commands import EvictActivation
from shared.schemas.erasure import ErasureRequest, ErasureSubject
from tests.unit.test_inference_activation import (  # noqa: F401 (fixtures)
    backend,
    build_cmd,
    command,
    facts,
    service,
    world,
)

pytestmark = pytest.mark.unit


def test_an_erased_cache_loses_its_blobs_and_is_not_served(
    world: dict[str, Any],  # noqa: F811
    backend: Any,  # noqa: F811
) -> None:
    w = world
    svc = service(w, backend)
    svc.handle(command(w, build_cmd(w, w["ns"], w["cubes"])))
    key = facts(w, "memory.promoted")[0].data["target_id"]
    tenant = w["caller"].tenant
    blobs = svc.activations.store.blobs
    tensors = svc.activations.store.manifest(tenant, key).tensors_key
    assert blobs.exists(tenant, key) and blobs.exists(tenant, tensors)
    assert svc.prefix_for(w["caller"], [w["ns"]]) is not None
    sub = w["bus"].subscribe("inference-test", [EvictActivation.topic], svc.handle)
    try:
        req = ErasureRequest(subject=ErasureSubject(kind="person", value="ana"))
        report = w["vault"].erase(w["caller"], req)
        assert report.kv_caches_evicted == [key]
        w["vault"].relay.drain()
        w["bus"].flush()
    finally:
        sub.close()
    assert not blobs.exists(tenant, key) and not blobs.exists(tenant, tensors)
    assert (tenant, key) not in svc.activations.store.lru
    assert svc.prefix_for(w["caller"], [w["ns"]]) is None
    [demoted] = facts(w, "memory.demoted")
    assert demoted.data["reason"] == "erased" and demoted.data["target_id"] == key


def test_an_ordinary_eviction_keeps_the_blobs(
    world: dict[str, Any],  # noqa: F811
    backend: Any,  # noqa: F811
) -> None:
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
    assert svc.activations.store.blobs.exists(w["caller"].tenant, key)
