"""Chat with memory: ``POST /v1/chat`` forwards to the inference service.

The body is the inference service's (OpenAI's chat completions plus ``memgrid``:
namespaces, tiers, token budget); the tenant is the caller's, from the API key,
never from the body. Sizes are checked here (413 naming the field) before the
inference service is bothered; the rest (namespaces of the tenant → 404, token
budget → 422, tiers the model cannot take → 400) is answered by inference and
passed on as it came. A streamed answer (``stream: true``) is relayed event by
event; errors are known before the first byte, so they keep their status.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from services.interface.auth import CallerDep
from services.interface.deps import SettingsDep, StrictJSONRoute
from services.interface.limits import check_id
from shared.errors import FieldError, PayloadTooLarge
from shared.http_problems import problem_responses
from shared.ports.inference import InferenceAPI
from shared.schemas.activation import ActivationBuildRequest, ActivationBuilt
from shared.schemas.chat import ChatCompletionRequest, ChatCompletionResponse
from shared.settings import LimitSettings

router = APIRouter(tags=["chat"], route_class=StrictJSONRoute)
SSE = "text/event-stream"


def get_inference(request: Request) -> InferenceAPI:
    inference: InferenceAPI = request.app.state.inference
    return inference


InferenceDep = Annotated[InferenceAPI, Depends(get_inference)]


def check_chat(req: ChatCompletionRequest, limits: LimitSettings) -> None:
    if len(req.messages) > limits.max_messages:
        raise PayloadTooLarge(
            f"at most {limits.max_messages} messages",
            [FieldError("body.messages", f"at most {limits.max_messages} messages")],
        )
    for i, m in enumerate(req.messages):
        if len(m.content) > limits.max_text_chars:
            raise PayloadTooLarge(
                f"message {i} is longer than {limits.max_text_chars} characters",
                [FieldError(f"body.messages.{i}.content", f"at most {limits.max_text_chars}")],
            )
    opts = req.memgrid
    if opts is None:
        return
    if len(opts.namespaces) > limits.max_namespaces_per_search:
        raise PayloadTooLarge(
            f"at most {limits.max_namespaces_per_search} namespaces",
            [FieldError("body.memgrid.namespaces", "too many namespaces")],
        )
    for i, ns in enumerate(opts.namespaces):
        check_id(ns, f"namespace {i}")


@router.post(
    "/v1/chat",
    response_model=ChatCompletionResponse,
    summary="Chat with a model, drawing on the tenant's memories (OpenAI-compatible)",
    responses={
        200: {"content": {SSE: {}}, "description": "JSON, or server-sent events with stream"},
        **problem_responses(400, 401, 404, 413, 422, 429, 503),
    },
)
def chat(
    body: ChatCompletionRequest,
    caller: CallerDep,
    inference: InferenceDep,
    settings: SettingsDep,
) -> object:
    """OpenAI's chat completions request and response, plus ``memgrid``: in the
    request, which namespaces, tiers and token budget to use; in the response (the
    first event when streaming), which memories were used (ids, versions, tiers)."""
    check_chat(body, settings.limits)
    if not body.stream:
        return inference.complete(caller, body)
    return StreamingResponse(
        inference.stream(caller, body),
        media_type=SSE,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post(
    "/v1/namespaces/{namespace_id}/activation",
    response_model=ActivationBuilt,
    status_code=201,
    summary="Build a KV cache of a namespace's memories and serve it (activation memory)",
    responses=problem_responses(400, 401, 404, 413, 422, 429, 503),
)
def build_activation(
    namespace_id: str,
    body: ActivationBuildRequest,
    caller: CallerDep,
    inference: InferenceDep,
    settings: SettingsDep,
) -> ActivationBuilt:
    """Runs the memories named by ``cube_ids`` (or retrieved for ``query``) through
    the model once and makes the result the namespace's current KV cache: chats
    asking for tier ``activation`` then start from it instead of reading those
    memories as text. Returns the cache id, its tokens and its sources (id@version)."""
    check_id(namespace_id, "namespace")
    for i, cube_id in enumerate(body.cube_ids or []):
        check_id(cube_id, f"cube {i}")
    if body.query is not None and len(body.query) > settings.limits.max_text_chars:
        raise PayloadTooLarge("query too long", [FieldError("body.query", "too long")])
    return inference.build_activation(caller, namespace_id, body)
