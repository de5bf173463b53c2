"""Parametric memory in a chat: the namespace's current LoRA adapter is applied to
the tiny model for a request that asks for the parametric tier and may read the
namespace, reported in the response, and never applied for anybody else."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.inference.app import create_app
from services.inference.chat import ChatEngine
from shared.schemas.api import Caller
from tests.unit.test_inference_adapters import make_adapter
from tests.unit.test_inference_serving import headers, make_settings, world  # noqa: F401

pytestmark = pytest.mark.unit


@pytest.fixture
def served(world: dict[str, Any], tmp_path: Path) -> Iterator[dict[str, Any]]:  # noqa: F811
    from services.inference.adapters import AdapterRegistry, AdapterStore
    from services.inference.backends import SourceRef, create_backend
    from shared.adapters.blob_fs import FileBlobStore

    settings = make_settings(tmp_path, model="tiny", backend="transformers")
    backend = create_backend(settings)
    registry = AdapterRegistry(AdapterStore(FileBlobStore(tmp_path / "blobs")), backend, 4)
    a = world["a"]
    files, _ = make_adapter(3)
    aid = registry.store.save(
        a["caller"].tenant,
        a["ns"],
        files=files,
        fingerprint=backend.fingerprint,
        name="faq",
        version="1",
        sources=[SourceRef(c.id, c.version) for c in a["cubes"]],
    )
    registry.promote(a["caller"].tenant, a["ns"], str(aid))
    engine = ChatEngine(settings.inference, backend, world["vault"], None, registry)
    with TestClient(create_app(settings, engine)) as client:
        yield {"client": client, "adapter": str(aid), "backend": backend}


def ask(client: TestClient, caller: Caller, ns: str, tiers: list[str]) -> dict[str, Any]:
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "Where does Ana live?"}],
        "max_tokens": 4,
        "temperature": 0,
        "memgrid": {"namespaces": [ns], "tiers": tiers, "token_budget": 64},
    }
    r = client.post("/v1/chat/completions", json=body, headers=headers(caller))
    assert r.status_code == 200, r.text
    report: dict[str, Any] = r.json()["memgrid"]
    return report


def test_the_namespace_adapter_is_applied_and_reported(
    served: dict[str, Any],
    world: dict[str, Any],  # noqa: F811
) -> None:
    a = world["a"]
    report = ask(served["client"], a["caller"], a["ns"], ["plaintext", "parametric"])
    assert "parametric" in report["tiers_applied"] and report["adapter"] == served["adapter"]
    parametric = {m["id"] for m in report["memories"] if m["tier"] == "parametric"}
    assert parametric == {c.id for c in a["cubes"]}
    # Without the tier the base model answers: no adapter reported.
    plain = ask(served["client"], a["caller"], a["ns"], ["plaintext"])
    assert plain["adapter"] is None and "parametric" not in plain["tiers_applied"]


def test_another_tenant_never_gets_the_adapter(
    served: dict[str, Any],
    world: dict[str, Any],  # noqa: F811
) -> None:
    b = world["b"]
    report = ask(served["client"], b["caller"], b["ns"], ["plaintext", "parametric"])
    assert report["adapter"] is None and "parametric" not in report["tiers_applied"]
    assert all(m["tier"] == "plaintext" for m in report["memories"])
    # Naming A's namespace does not help either: 404, nothing generated.
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 2,
        "memgrid": {"namespaces": [world["a"]["ns"]], "tiers": ["parametric"]},
    }
    r = served["client"].post("/v1/chat/completions", json=body, headers=headers(b["caller"]))
    assert r.status_code == 404, r.text
