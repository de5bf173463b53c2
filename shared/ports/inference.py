"""InferenceAPI: what the interface asks of the inference service, in process or over HTTP.

The interface depends only on this Protocol. Embedded mode hands it the chat
logic running in the API process (services.inference.local.LocalInference,
wired by services/embedded.py); distributed mode an HTTP client of the Ray Serve
app (shared.clients.inference_http.HttpInference).

Both raise shared.errors.MemgridError for a bad request (4xx with the inference
service's code and fields) **before** anything is returned, and Unavailable (503)
when the service cannot be reached, so a streamed answer never starts with an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from shared.schemas.activation import ActivationBuildRequest, ActivationBuilt
from shared.schemas.api import Caller
from shared.schemas.chat import ChatCompletionRequest, ChatCompletionResponse


@runtime_checkable
class InferenceAPI(Protocol):
    def complete(self, caller: Caller, req: ChatCompletionRequest) -> ChatCompletionResponse:
        """The whole answer (``req.stream`` is ignored)."""
        ...

    def stream(self, caller: Caller, req: ChatCompletionRequest) -> Iterator[bytes]:
        """Server-sent events, byte for byte as the inference service sends them
        (``data: {chunk}\\n\\n`` ..., ``data: [DONE]\\n\\n``). Closing the iterator
        stops generation."""
        ...

    def build_activation(
        self, caller: Caller, namespace: str, req: ActivationBuildRequest
    ) -> ActivationBuilt:
        """Builds a KV cache of the namespace's memories and makes it the namespace's
        current one (docs/inference.md#activation-memory-end-to-end)."""
        ...

    def close(self) -> None: ...
