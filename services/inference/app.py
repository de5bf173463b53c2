"""The inference service's HTTP API (the Serve deployment's FastAPI ingress).

``POST /v1/chat/completions`` is OpenAI's chat completions API plus memgrid's
``memgrid`` fields (shared.schemas.chat); ``stream: true`` answers with
server-sent events (``data: {chunk}`` lines, then ``data: [DONE]``).

The API is internal, like the vault's: the interface authenticates the client
and passes its identity in ``X-Memgrid-Tenant`` / ``-Principal`` / ``-Role``
headers, and when ``inference.serve.service_token`` is set every call must
present it (``X-Memgrid-Service-Token``). A request without a tenant may chat
but not draw on memory (401). Only the interface should be exposed.
"""

from __future__ import annotations

import hmac
import json
import threading
from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from services.inference.activation import ActivationService, unsupported
from services.inference.chat import ChatEngine, Prepared
from shared.errors import MemgridError, Unauthorized
from shared.http_problems import install_problem_handlers, problem_responses
from shared.http_telemetry import HttpTelemetryMiddleware, add_metrics_route
from shared.schemas.activation import ActivationBuildRequest, ActivationBuilt
from shared.schemas.api import Caller
from shared.schemas.chat import ChatCompletionRequest, ChatCompletionResponse
from shared.settings import Settings

SSE_MEDIA_TYPE = "text/event-stream"


class LazyEngine:
    """Builds the engine (loads the model) on first use, once, under a lock:
    embedded mode must start its API fast, and replicas build theirs at start."""

    def __init__(self, build: Callable[[], ChatEngine]) -> None:
        self._build = build
        self._engine: ChatEngine | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._engine is not None

    def get(self) -> ChatEngine:
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = self._build()
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.backend.close()
            self._engine = None


def _caller(
    x_memgrid_tenant: Annotated[str | None, Header()] = None,
    x_memgrid_principal: Annotated[str | None, Header()] = None,
    x_memgrid_role: Annotated[str, Header()] = "tenant_admin",
    x_memgrid_key_prefix: Annotated[str | None, Header()] = None,
) -> Caller | None:
    if not x_memgrid_tenant:
        return None
    return Caller(
        tenant=x_memgrid_tenant,
        principal=x_memgrid_principal or x_memgrid_tenant,
        role=x_memgrid_role,
        key_prefix=x_memgrid_key_prefix or None,
    )


def activation_of(engine: ChatEngine) -> ActivationService:
    """The engine's activation memory; 400 tier_unsupported for a backend without it.
    (ChatEngine keeps its ActivationSource private; the service is the one the
    factories give it: build_activation.)"""
    source = getattr(engine, "_activation", None)
    if not isinstance(source, ActivationService):
        raise unsupported(engine.backend.name)
    return source


def sse_lines(engine: ChatEngine, prepared: Prepared, pieces: Iterator[str]) -> Iterator[bytes]:
    """Server-sent events of a primed generation; an error after the first byte
    can no longer change the status, so it is sent as an ``error`` event."""
    try:
        for chunk in engine.chunks(prepared, pieces):
            yield b"data: " + chunk.model_dump_json(exclude_none=True).encode() + b"\n\n"
    except MemgridError as exc:
        yield b"data: " + json.dumps({"error": exc.to_problem()}).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"


def create_app(settings: Settings, engine: ChatEngine | LazyEngine) -> FastAPI:
    """The ingress app over ``engine`` (a LazyEngine loads the model on first chat)."""
    holder = engine if isinstance(engine, LazyEngine) else LazyEngine(lambda: engine)
    token = settings.inference.serve.service_token
    secret = token.get_secret_value() if token else None

    async def check_token(
        x_memgrid_service_token: Annotated[str | None, Header()] = None,
    ) -> None:
        if secret is None:
            return
        given = (x_memgrid_service_token or "").encode()
        if not hmac.compare_digest(given, secret.encode()):
            raise Unauthorized("missing or invalid service token")

    app = FastAPI(title="memgrid inference (internal)", version="1", docs_url=None, redoc_url=None)
    app.state.engine = holder
    install_problem_handlers(app)

    @app.post(
        "/v1/chat/completions",
        response_model=ChatCompletionResponse,
        responses={
            200: {"content": {SSE_MEDIA_TYPE: {}}, "description": "JSON, or SSE with stream"},
            **problem_responses(400, 401, 404, 413, 422, 503),
        },
        dependencies=[Depends(check_token)],
    )
    async def chat_completions(
        body: ChatCompletionRequest,
        caller: Annotated[Caller | None, Depends(_caller)],
    ) -> object:
        # Retrieval and generation block (vault calls, forward passes): threads.
        eng = await run_in_threadpool(holder.get)
        prepared = await run_in_threadpool(eng.prepare, caller, body)
        if not body.stream:
            return await run_in_threadpool(eng.complete, prepared)
        pieces = await run_in_threadpool(eng.start, prepared)
        return StreamingResponse(
            sse_lines(eng, prepared, pieces),
            media_type=SSE_MEDIA_TYPE,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.post(
        "/v1/namespaces/{namespace_id}/activation",
        response_model=ActivationBuilt,
        status_code=201,
        responses=problem_responses(400, 401, 404, 422, 503),
        dependencies=[Depends(check_token)],
    )
    async def build_activation(
        namespace_id: str,
        body: ActivationBuildRequest,
        caller: Annotated[Caller | None, Depends(_caller)],
    ) -> ActivationBuilt:
        if caller is None:
            raise Unauthorized("activation memory needs the caller's tenant (X-Memgrid-Tenant)")
        eng = await run_in_threadpool(holder.get)
        service = activation_of(eng)
        return await run_in_threadpool(service.build_for, caller, namespace_id, body)

    @app.get("/v1/models", dependencies=[Depends(check_token)])
    def models() -> dict[str, object]:
        eng = holder.get()
        return {"object": "list", "data": [{"id": eng.model, "object": "model"}]}

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz(request: Request) -> dict[str, str]:
        return {"status": "ready" if holder.loaded else "model not loaded yet"}

    # The replica's metrics (KV cache hits among them; shared.metrics) and spans
    # that continue the interface's traceparent.
    add_metrics_route(app)
    app.add_middleware(HttpTelemetryMiddleware, service="inference")
    return app
