"""Every error is problem+json with a stable code; nothing a client sends gives a 5xx.

Runs the real app over a FakeVault (tests/fake_vault.py) so that the vault can be
made to fail on demand. The same requests against the real vault are in
test_api_*.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from services.interface.app import create_app
from services.interface.extractors import OpenAIExtractor
from shared.errors import PROBLEM_MEDIA_TYPE
from shared.http_telemetry import HttpTelemetryMiddleware
from shared.settings import ExtractorSettings, Settings
from tests.fake_vault import FakeVault

pytestmark = pytest.mark.unit


@pytest.fixture
def vault() -> FakeVault:
    return FakeVault()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        admin_key="root",
        limits={  # type: ignore[arg-type]
            "max_body_bytes": 64 * 1024,
            "max_text_chars": 100,
            "max_messages": 5,
            "max_query_chars": 50,
            "max_namespaces_per_search": 3,
            "max_metadata_bytes": 200,
            "max_tags": 3,
        },
        search={"max_top_k": 20},  # type: ignore[arg-type]
    )


@pytest.fixture
def client(settings: Settings, vault: FakeVault) -> Iterator[TestClient]:
    with TestClient(create_app(settings, vault), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def auth(vault: FakeVault) -> dict[str, str]:
    return {"Authorization": f"Bearer {vault.create_tenant('acme').api_key}"}


@pytest.fixture
def ns(client: TestClient, auth: dict[str, str]) -> str:
    r = client.post("/v1/namespaces", json={"name": "n"}, headers=auth)
    assert r.status_code == 201
    return str(r.json()["id"])


def problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body: dict[str, Any] = r.json()
    assert body["code"] == code and body["status"] == status
    assert body["type"].endswith("/" + code) and body["title"] and body["detail"]
    return body


def fields(body: dict[str, Any]) -> set[str]:
    return {e["field"] for e in body.get("errors", [])}


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_503_when_the_vault_is_down(client: TestClient, vault: FakeVault) -> None:
    assert client.get("/readyz").status_code == 200
    vault.down = True
    problem(client.get("/readyz"), 503, "dependency_unavailable")
    vault.down, vault.explode = False, RuntimeError("boom")
    problem(client.get("/readyz"), 503, "dependency_unavailable")


def test_unknown_route_and_method(client: TestClient) -> None:
    problem(client.get("/nope"), 404, "not_found")
    body = problem(client.put("/healthz"), 405, "method_not_allowed")
    assert body["instance"] == "/healthz"


def test_malformed_json_is_400(client: TestClient, auth: dict[str, str], ns: str) -> None:
    h = {**auth, "Content-Type": "application/json"}
    url = f"/v1/namespaces/{ns}/memories"
    for raw in [
        b"{",
        b"not json",
        b'{"text": NaN}',
        b'{"text": "\\ud800"}',
        b"[" * 5000 + b"]" * 5000,
        b'{"text": "' + b"\xff\xfe" + b'"}',
    ]:
        problem(client.post(url, content=raw, headers=h), 400, "invalid_json")


def test_validation_errors_name_the_fields(
    client: TestClient, auth: dict[str, str], ns: str
) -> None:
    url = f"/v1/namespaces/{ns}/memories"
    msgs = [{"id": "1", "role": "user", "content": "x"}] * 3 + [{"id": "4", "role": "user"}]
    body = problem(
        client.post(url, json={"messages": msgs}, headers=auth), 422, "validation_failed"
    )
    assert "body.messages.3.content" in fields(body)

    body = problem(
        client.post(url, json={"text": "a", "ttl_seconds": 10**30}, headers=auth),
        422,
        "validation_failed",
    )
    assert fields(body) == {"body.ttl_seconds"}
    body = problem(client.post(url, json={"text": 5}, headers=auth), 422, "validation_failed")
    assert fields(body) == {"body.text"}
    body = problem(
        client.post(url, json={"text": "a", "bogus": 1}, headers=auth), 422, "validation_failed"
    )
    assert fields(body) == {"body.bogus"}
    problem(client.post(url, json=None, headers=auth), 422, "validation_failed")
    problem(client.post(url, json=[], headers=auth), 422, "validation_failed")
    problem(client.post(url, content=b"text=a", headers=auth), 422, "validation_failed")


def test_text_xor_messages(client: TestClient, auth: dict[str, str], ns: str) -> None:
    url = f"/v1/namespaces/{ns}/memories"
    problem(client.post(url, json={}, headers=auth), 422, "validation_failed")
    both = {"text": "a", "messages": [{"id": "1", "role": "u", "content": "c"}]}
    problem(client.post(url, json=both, headers=auth), 422, "validation_failed")


def test_metadata_values_that_cannot_be_stored(
    client: TestClient, auth: dict[str, str], ns: str
) -> None:
    url = f"/v1/namespaces/{ns}/memories"
    body = problem(
        client.post(url, json={"text": "a", "metadata": {"n": 2**70}}, headers=auth),
        422,
        "validation_failed",
    )
    assert fields(body) == {"body.metadata.n"}
    raw = b'{"text": "a", "metadata": {"f": 1e400}}'
    h = {**auth, "Content-Type": "application/json"}
    body = problem(client.post(url, content=raw, headers=h), 422, "validation_failed")
    assert fields(body) == {"body.metadata.f"}
    deep: Any = "x"
    for _ in range(40):
        deep = {"d": deep}
    body = problem(
        client.post(url, json={"text": "a", "metadata": deep}, headers=auth),
        422,
        "validation_failed",
    )


def test_dates_outside_the_calendar_in_utc(
    client: TestClient, auth: dict[str, str], ns: str
) -> None:
    url = f"/v1/namespaces/{ns}/memories"
    r = client.post(
        url, json={"text": "a", "event_time": "0001-01-01T00:00:00+05:00"}, headers=auth
    )
    assert fields(problem(r, 422, "validation_failed")) == {"body.event_time"}
    msgs = [{"id": "1", "role": "u", "content": "c", "timestamp": "9999-12-31T23:00:00-05:00"}]
    r = client.post(url, json={"messages": msgs}, headers=auth)
    assert fields(problem(r, 422, "validation_failed")) == {"body.messages.0.timestamp"}


def test_size_limits_are_413_naming_the_field(
    client: TestClient, auth: dict[str, str], ns: str
) -> None:
    url = f"/v1/namespaces/{ns}/memories"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"text": "x" * 101}, "body.text"),
        ({"text": "a", "tags": ["a", "b", "c", "d"]}, "body.tags"),
        ({"text": "a", "metadata": {"k": "v" * 300}}, "body.metadata"),
        (
            {"messages": [{"id": str(i), "role": "u", "content": "c"} for i in range(6)]},
            "body.messages",
        ),
        (
            {
                "messages": [
                    {"id": "1", "role": "u", "content": "c"},
                    {"id": "2", "role": "u", "content": "y" * 101},
                ]
            },
            "body.messages.1.content",
        ),
    ]
    for payload, field in cases:
        body = problem(client.post(url, json=payload, headers=auth), 413, "payload_too_large")
        assert fields(body) == {field}, payload


def test_body_limit_by_content_length_and_by_stream(
    client: TestClient, auth: dict[str, str], ns: str
) -> None:
    url = f"/v1/namespaces/{ns}/memories"
    big = b'{"text": "' + b"x" * (70 * 1024) + b'"}'
    h = {**auth, "Content-Type": "application/json"}
    body = problem(client.post(url, content=big, headers=h), 413, "payload_too_large")
    assert fields(body) == {"body"}

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
        yield b'{"text": "'
        for _ in range(70):
            yield b"x" * 1024
        yield b'"}'

    problem(client.post(url, content=chunks(), headers=h), 413, "payload_too_large")


def test_search_limits(client: TestClient, auth: dict[str, str], ns: str) -> None:
    def search(**kw: Any) -> Any:
        return client.post(
            "/v1/search", json={"query": "q", "namespaces": [ns], **kw}, headers=auth
        )

    assert search().status_code == 200
    assert fields(problem(search(query="q" * 51), 413, "payload_too_large")) == {"body.query"}
    r = search(namespaces=[ns] * 4)
    assert fields(problem(r, 413, "payload_too_large")) == {"body.namespaces"}
    assert fields(problem(search(top_k=21), 422, "validation_failed")) == {"body.top_k"}
    assert fields(problem(search(top_k=0), 422, "validation_failed")) == {"body.top_k"}
    r = search(filters={"metadata": {"x": 2**64}})
    assert fields(problem(r, 422, "validation_failed")) == {"body.filters.metadata.x"}
    r = search(filters={"tags_any": ["a", "b", "c", "d"]})
    assert fields(problem(r, 413, "payload_too_large")) == {"body.filters.tags_any"}
    problem(search(namespaces=["../etc/passwd"]), 404, "not_found")


def test_odd_ids_in_paths_are_404(client: TestClient, auth: dict[str, str]) -> None:
    for mid in [
        "x" * 500,
        "%00",
        "a%2Fb",
        "ü",
        "..",
        "'; DROP TABLE x;--",
        "%F0%9F%98%80",
        "%ED%A0%80",
    ]:
        problem(client.get(f"/v1/memories/{mid}", headers=auth), 404, "not_found")
        problem(client.get(f"/v1/memories/{mid}/history", headers=auth), 404, "not_found")


def test_patch_needs_something_to_change(client: TestClient, auth: dict[str, str]) -> None:
    r = client.patch("/v1/memories/m_1", json={}, headers=auth)
    assert fields(problem(r, 422, "validation_failed")) == {"body"}


def test_vault_errors_pass_through_as_problems(
    client: TestClient, auth: dict[str, str], vault: FakeVault
) -> None:
    problem(client.get("/v1/memories/m_unknown", headers=auth), 404, "not_found")
    from shared.errors import Unavailable

    vault.explode = Unavailable("store down")
    problem(client.get("/v1/memories/m_1", headers=auth), 503, "dependency_unavailable")


def test_unexpected_errors_are_500_problems_without_internals(
    client: TestClient, auth: dict[str, str], vault: FakeVault, caplog: pytest.LogCaptureFixture
) -> None:
    vault.explode = RuntimeError("secret internal detail")
    with caplog.at_level("ERROR"):
        r = client.get("/v1/memories/m_1", headers=auth)
    body = problem(r, 500, "internal")
    assert "secret" not in r.text and "Traceback" not in r.text
    assert "secret internal detail" in caplog.text  # logged with its stack
    assert body["instance"] == "/v1/memories/m_1"


def test_messages_reach_the_vault_as_drafts(
    client: TestClient, auth: dict[str, str], ns: str, vault: FakeVault
) -> None:
    msgs = [
        {
            "id": "D1:1",
            "role": "user",
            "name": "Ann",
            "content": "hi yesterday",
            "timestamp": "2023-05-08T10:00:00",
        }
    ]
    r = client.post(f"/v1/namespaces/{ns}/memories", json={"messages": msgs}, headers=auth)
    assert r.status_code == 201
    [d] = vault.drafts
    assert d.text == "Ann: hi yesterday [2023-05-07]" and d.sources == ["D1:1"]


def test_openapi_declares_problems_and_security(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/v1/namespaces/{namespace_id}/memories"]["post"]
    for status in ("401", "404", "413", "422", "429", "503"):
        content = op["responses"][status]["content"]
        assert content == {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    assert op["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/MemoriesResponse"
    )
    assert spec["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    assert client.get("/docs").status_code == 200


def test_tracing_middleware_names_spans_by_route() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hi")

    inner = Starlette(routes=[Route("/items/{item_id}", hello)])
    app = HttpTelemetryMiddleware(inner, provider.get_tracer("t"))
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    r = TestClient(app).get("/items/42", headers={"traceparent": tp})
    assert r.status_code == 200
    [span] = exporter.get_finished_spans()
    assert span.name == "GET /items/{item_id}"
    assert span.attributes is not None
    assert span.attributes["http.response.status_code"] == 200
    assert format(span.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"


def test_extractor_runs_when_on_and_its_outage_is_503(
    settings: Settings, vault: FakeVault, auth: dict[str, str]
) -> None:
    answer = {"status": 200}

    def llm(request: httpx.Request) -> httpx.Response:
        content = '{"facts": [{"text": "Ann likes tea", "sources": ["m1"]}]}'
        body = {"choices": [{"message": {"content": content}}]}
        return httpx.Response(answer["status"], json=body)

    cfg = ExtractorSettings(backend="openai", base_url="http://llm.test/v1")
    app = create_app(settings.model_copy(update={"extractor": cfg}), vault)
    app.state.extractor = OpenAIExtractor(
        cfg, client=httpx.Client(transport=httpx.MockTransport(llm))
    )
    with TestClient(app) as c:
        ns = c.post("/v1/namespaces", json={"name": "n"}, headers=auth).json()["id"]
        msgs = [{"id": "m1", "role": "user", "name": "Ann", "content": "I love tea"}]
        r = c.post(f"/v1/namespaces/{ns}/memories", json={"messages": msgs}, headers=auth)
        assert r.status_code == 201
        fact = r.json()["memories"][1]
        assert fact["origin"] == "inference_extraction" and fact["sources"] == ["m1"]
        answer["status"] = 500
        r = c.post(f"/v1/namespaces/{ns}/memories", json={"messages": msgs}, headers=auth)
        problem(r, 503, "extractor_unavailable")
