"""POST /v1/chat on the public API: embedded (inference in process) and split
(interface → HttpInference → inference app → HttpVault → vault), with the fake
model backend. Auth, isolation, streaming pass-through, errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from shared.settings import Settings
from tests import inference_fakes
from tests.inference_fakes import register_fake

pytestmark = pytest.mark.unit
ADMIN = {"Authorization": "Bearer root"}


@pytest.fixture(params=["embedded", "split"])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    register_fake()
    settings = Settings(  # type: ignore[arg-type]
        data_dir=tmp_path,
        admin_key="root",
        embedder={"backend": "hashing"},
        inference={"backend": "fake"},
    )
    inference_fakes.PROMPTS.clear()
    if request.param == "embedded":
        from services.embedded import build_embedded

        app, close = build_embedded(settings)
        try:
            with TestClient(app) as client:
                yield client
        finally:
            close()
        return

    from services.inference.app import create_app as create_inference_app
    from services.inference.chat import ChatEngine
    from services.interface.app import create_app
    from services.vault.app import create_app as create_vault_app
    from services.vault.factory import build_vault
    from shared.clients.inference_http import HttpInference
    from shared.clients.vault_http import HttpVault
    from tests.inference_fakes import FakeBackend

    vault = build_vault(settings)
    vault.start()
    try:
        with TestClient(create_vault_app(settings, vault)) as internal:
            engine = ChatEngine(
                settings.inference, FakeBackend(), HttpVault(settings.vault, client=internal)
            )
            with TestClient(create_inference_app(settings, engine)) as inf:
                inference = HttpInference(settings.inference.serve, client=inf)
                app = create_app(
                    settings, HttpVault(settings.vault, client=internal), None, inference
                )
                with TestClient(app) as client:
                    yield client
    finally:
        vault.close()


def tenant(api: TestClient, name: str, texts: list[str]) -> tuple[dict[str, str], str]:
    r = api.post("/v1/tenants", json={"name": name}, headers=ADMIN)
    auth = {"Authorization": f"Bearer {r.json()['api_key']}"}
    ns = api.post("/v1/namespaces", json={"name": "n"}, headers=auth).json()["id"]
    for t in texts:
        assert api.post(f"/v1/namespaces/{ns}/memories", json={"text": t}, headers=auth).is_success
    return auth, ns


def body(ns: str, **extra: Any) -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": "Where does Ana live?"}],
        "max_tokens": 4,
        "memgrid": {"namespaces": [ns], "token_budget": 48},
        **extra,
    }


def test_chat_uses_the_callers_memories(api: TestClient) -> None:
    auth, ns = tenant(api, "a", ["Ana lives in Lisbon", "Ana drinks tea"])
    r = api.post("/v1/chat", json=body(ns), headers=auth)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["object"] == "chat.completion"
    assert out["memgrid"]["memories"] and out["memgrid"]["tiers_applied"] == ["plaintext"]
    assert "Ana lives in Lisbon" in inference_fakes.PROMPTS[-1]


def test_chat_streams_server_sent_events(api: TestClient) -> None:
    auth, ns = tenant(api, "a", ["Ana lives in Lisbon"])
    with api.stream("POST", "/v1/chat", json=body(ns, stream=True), headers=auth) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = "".join(r.iter_text())
    events = [e[6:] for e in raw.split("\n\n") if e.startswith("data: ")]
    assert events[-1] == "[DONE]"
    first = json.loads(events[0])
    assert first["memgrid"]["memories"][0]["tier"] == "plaintext"
    assert json.loads(events[-2])["choices"][0]["finish_reason"] == "length"


def test_chat_isolation_and_errors(api: TestClient) -> None:
    auth_a, ns_a = tenant(api, "a", ["Ana lives in Lisbon"])
    _, ns_b = tenant(api, "b", ["Bruno's secret is 9931"])
    assert api.post("/v1/chat", json=body(ns_a)).status_code == 401
    for ns in (ns_b, "ns_nope", "../../etc"):
        for stream in (False, True):
            r = api.post("/v1/chat", json=body(ns, stream=stream), headers=auth_a)
            assert r.status_code == 404, r.text
    assert not any("9931" in p for p in inference_fakes.PROMPTS)
    bad = body(ns_a)
    bad["memgrid"]["token_budget"] = 10**7
    r = api.post("/v1/chat", json=bad, headers=auth_a)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "body.memgrid.token_budget"
    r = api.post("/v1/chat", json={"messages": [{"content": "x"}]}, headers=auth_a)
    assert r.status_code == 422
    r = api.post("/v1/chat", json=body(ns_a, n=3), headers=auth_a)
    assert r.status_code == 422
    r = api.post(
        "/v1/chat", content=b"{not json", headers={**auth_a, "content-type": "application/json"}
    )
    assert r.status_code == 400
    huge = body(ns_a)
    huge["messages"] = [{"role": "user", "content": "x" * 40_000}]
    r = api.post("/v1/chat", json=huge, headers=auth_a)
    assert r.status_code == 413 and r.json()["errors"][0]["field"] == "body.messages.0.content"


def test_inference_down_is_503(tmp_path: Path) -> None:
    from services.interface.app import create_app
    from shared.clients.inference_http import HttpInference
    from tests.fake_vault import FakeVault

    settings = Settings(
        data_dir=tmp_path, admin_key="root", inference={"serve": {"url": "http://127.0.0.1:9"}}
    )  # type: ignore[arg-type]
    vault = FakeVault()
    refused = httpx.Client(
        base_url="http://inference",
        transport=httpx.MockTransport(
            lambda req: (_ for _ in ()).throw(httpx.ConnectError("refused"))
        ),
    )
    app = create_app(settings, vault, None, HttpInference(settings.inference.serve, client=refused))
    with TestClient(app) as api:
        r = api.post("/v1/tenants", json={"name": "a"}, headers=ADMIN)
        auth = {"Authorization": f"Bearer {r.json()['api_key']}"}
        for stream in (False, True):
            r = api.post(
                "/v1/chat",
                json={"messages": [{"role": "user", "content": "hi"}], "stream": stream},
                headers=auth,
            )
            assert r.status_code == 503, r.text
            assert r.json()["code"] == "dependency_unavailable"
