"""HttpInference: the InferenceAPI over the inference service's HTTP API.

The caller's identity travels in X-Memgrid-* headers (as to the vault), with the
service token when set. Problems from the service are raised again with their
status, code and fields, so the interface answers as in embedded mode; a
service that cannot be reached, or fails with a 5xx, is Unavailable (503).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
from opentelemetry.propagate import inject

from shared.errors import FieldError, MemgridError, Unavailable
from shared.schemas.activation import ActivationBuildRequest, ActivationBuilt
from shared.schemas.api import Caller
from shared.schemas.chat import ChatCompletionRequest, ChatCompletionResponse
from shared.settings import InferenceServeSettings

PATH = "/v1/chat/completions"


class HttpInference:
    def __init__(self, cfg: InferenceServeSettings, client: httpx.Client | None = None) -> None:
        """``client`` lets tests pass an in-process client (a TestClient of the app)."""
        self._http = client or httpx.Client(base_url=cfg.url.rstrip("/"), timeout=cfg.timeout_s)
        self._token = cfg.service_token.get_secret_value() if cfg.service_token else None

    def close(self) -> None:
        self._http.close()

    def _headers(self, caller: Caller) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "X-Memgrid-Tenant": caller.tenant,
            "X-Memgrid-Principal": caller.principal,
            "X-Memgrid-Role": caller.role,
        }
        if caller.key_prefix is not None:
            headers["X-Memgrid-Key-Prefix"] = caller.key_prefix
        if self._token is not None:
            headers["X-Memgrid-Service-Token"] = self._token
        inject(headers)  # the inference spans join the interface's trace
        return headers

    def complete(self, caller: Caller, req: ChatCompletionRequest) -> ChatCompletionResponse:
        body = req.model_copy(update={"stream": False}).model_dump_json(exclude_none=True)
        try:
            r = self._http.post(PATH, content=body, headers=self._headers(caller))
        except httpx.TransportError as exc:
            raise Unavailable(f"inference unreachable: {type(exc).__name__}") from exc
        if r.status_code >= 400:
            raise _error(r.status_code, r.reason_phrase, _json(r))
        return ChatCompletionResponse.model_validate(r.json())

    def stream(self, caller: Caller, req: ChatCompletionRequest) -> Iterator[bytes]:
        body = req.model_copy(update={"stream": True}).model_dump_json(exclude_none=True)
        request = self._http.build_request(
            "POST", PATH, content=body, headers=self._headers(caller)
        )
        try:
            r = self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise Unavailable(f"inference unreachable: {type(exc).__name__}") from exc
        if r.status_code >= 400:
            try:
                r.read()
            finally:
                r.close()
            raise _error(r.status_code, r.reason_phrase, _json(r))
        return _relay(r)

    def build_activation(
        self, caller: Caller, namespace: str, req: ActivationBuildRequest
    ) -> ActivationBuilt:
        path = f"/v1/namespaces/{quote(namespace, safe='')}/activation"
        body = req.model_dump_json(exclude_none=True)
        try:
            r = self._http.post(path, content=body, headers=self._headers(caller))
        except httpx.TransportError as exc:
            raise Unavailable(f"inference unreachable: {type(exc).__name__}") from exc
        if r.status_code >= 400:
            raise _error(r.status_code, r.reason_phrase, _json(r))
        return ActivationBuilt.model_validate(r.json())


def _relay(r: httpx.Response) -> Iterator[bytes]:
    try:
        yield from r.iter_raw()
    except httpx.TransportError:  # cut mid-stream: end the events as the service would
        yield b'data: {"error": {"status": 503, "code": "dependency_unavailable"}}\n\n'
        yield b"data: [DONE]\n\n"
    finally:
        r.close()


def _json(r: httpx.Response) -> dict[str, Any]:
    try:
        body = r.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error(status: int, reason: str, body: dict[str, Any]) -> MemgridError:
    if status >= 500 and status != 503:
        return Unavailable(f"inference failed with {status}")
    return MemgridError(
        detail=str(body.get("detail", reason)),
        errors=[FieldError(e["field"], e["message"]) for e in body.get("errors") or []],
        status=status,
        code=str(body.get("code", "error")),
        title=str(body.get("title", reason)),
    )


class NoInference:
    """No inference service configured (an interface without MEMGRID_INFERENCE__SERVE__URL)."""

    def complete(self, caller: Caller, req: ChatCompletionRequest) -> ChatCompletionResponse:
        raise Unavailable("no inference service configured", code="inference_unavailable")

    def stream(self, caller: Caller, req: ChatCompletionRequest) -> Iterator[bytes]:
        raise Unavailable("no inference service configured", code="inference_unavailable")

    def build_activation(
        self, caller: Caller, namespace: str, req: ActivationBuildRequest
    ) -> ActivationBuilt:
        raise Unavailable("no inference service configured", code="inference_unavailable")

    def close(self) -> None:
        return None
