"""The inference service as a real Ray Serve app (local Ray, the tiny model):
chat over HTTP, streamed and not, with memories from a vault served over HTTP;
the interface's POST /v1/chat forwarding to it; isolation across tenants.

Run by test_inference_serve.py in a pytest process of its own (see there); the
file name keeps the main session from collecting it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from services.vault.app import create_app as create_vault_app
from services.vault.factory import build_vault
from shared.settings import Settings
from tests.integration.ray_support import ServedApp, bounded, free_port, ray_session

pytestmark = pytest.mark.integration
__all__ = ["ray_session"]  # the fixture, used by name


@pytest.fixture(scope="module")
def stack(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from ray import serve

    from services.inference.serve import APP_NAME, build_application

    tmp: Path = tmp_path_factory.mktemp("inference")
    base = Settings(data_dir=tmp, admin_key="root", embedder={"backend": "hashing"})  # type: ignore[arg-type]
    vault = build_vault(base)
    vault.start()
    served_vault = ServedApp(create_vault_app(base, vault))
    port = free_port()
    settings = base.model_copy(
        update={
            "vault": base.vault.model_copy(update={"url": served_vault.url}),
            "inference": base.inference.model_copy(
                update={
                    "model": "tiny",
                    "serve": base.inference.serve.model_copy(update={"port": port}),
                }
            ),
        }
    )
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_application(settings), name=APP_NAME, route_prefix="/")
    try:
        yield {"settings": settings, "vault": vault, "url": f"http://127.0.0.1:{port}"}
    finally:
        bounded(lambda: serve.delete(APP_NAME), "serve.delete")
        served_vault.stop()
        vault.close()


def interface(stack: dict[str, Any]) -> TestClient:
    from services.interface.app import create_app
    from shared.clients.inference_http import HttpInference

    settings: Settings = stack["settings"]
    cfg = settings.inference.serve.model_copy(update={"url": stack["url"]})
    return TestClient(create_app(settings, stack["vault"], None, HttpInference(cfg)))


def test_chat_through_serve_and_the_interface(stack: dict[str, Any]) -> None:
    with interface(stack) as api:
        admin = {"Authorization": "Bearer root"}
        keys = [api.post("/v1/tenants", json={"name": n}, headers=admin).json() for n in "ab"]
        auth = [{"Authorization": f"Bearer {k['api_key']}"} for k in keys]
        ns = [api.post("/v1/namespaces", json={"name": "n"}, headers=h).json()["id"] for h in auth]
        for h, n, text in zip(
            auth, ns, ["Ana lives in Lisbon", "Bruno's code is 9931"], strict=True
        ):
            assert api.post(
                f"/v1/namespaces/{n}/memories", json={"text": text}, headers=h
            ).is_success
        body = {
            "messages": [{"role": "user", "content": "Where does Ana live?"}],
            "max_tokens": 5,
            "temperature": 0,
            "memgrid": {"namespaces": [ns[0]], "token_budget": 64},
        }
        r = api.post("/v1/chat", json=body, headers=auth[0])
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["model"] == "memgrid/tiny-gemma3"
        assert out["usage"]["completion_tokens"] <= 5
        [used] = out["memgrid"]["memories"]
        assert used["tier"] == "plaintext" and used["namespace"] == ns[0]

        with api.stream("POST", "/v1/chat", json={**body, "stream": True}, headers=auth[0]) as s:
            assert s.status_code == 200
            raw = "".join(s.iter_text())
        events = [e[6:] for e in raw.split("\n\n") if e.startswith("data: ")]
        assert events[-1] == "[DONE]"
        assert json.loads(events[0])["memgrid"]["memories"][0]["id"] == used["id"]

        # Tenant a asking for b's namespace: 404 from the vault, through Serve.
        foreign = {**body, "memgrid": {"namespaces": [ns[1]]}}
        assert api.post("/v1/chat", json=foreign, headers=auth[0]).status_code == 404
        bad = {**body, "memgrid": {"namespaces": [ns[0]], "token_budget": 10**6}}
        r = api.post("/v1/chat", json=bad, headers=auth[0])
        assert r.status_code == 422
        assert r.json()["errors"][0]["field"] == "body.memgrid.token_budget"


def test_serve_http_directly_openai_shape(stack: dict[str, Any]) -> None:
    r = httpx.post(
        stack["url"] + "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "n": 2},
        timeout=60,
    )
    assert r.status_code == 422
    r = httpx.post(
        stack["url"] + "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "seed": 7},
        timeout=60,
    )
    assert r.status_code == 200 and r.json()["object"] == "chat.completion"
    assert httpx.get(stack["url"] + "/v1/models", timeout=30).json()["data"][0]["id"]
