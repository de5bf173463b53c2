"""LocalInference: the InferenceAPI running in this process (embedded mode).

Embedded mode does not start Ray Serve: the API must start in about a second,
and Ray with Serve costs seconds and most of a gigabyte before the first chat.
It runs the deployment's own logic (ChatEngine) in process instead, building the
backend (loading the model) on the first chat request. ``memgrid serve
--service inference`` is the Ray Serve way; an embedded API can use one by
setting ``MEMGRID_INFERENCE__SERVE__URL``.
"""

from __future__ import annotations

from collections.abc import Iterator

from services.inference.app import LazyEngine, sse_lines
from services.inference.chat import ChatEngine
from shared.errors import Unavailable
from shared.ports.vault import VaultAPI
from shared.schemas.api import Caller
from shared.schemas.chat import ChatCompletionRequest, ChatCompletionResponse
from shared.settings import Settings


class LocalInference:
    def __init__(
        self, settings: Settings, vault: VaultAPI, engine: ChatEngine | None = None
    ) -> None:
        """``engine``: an engine already built (tests pass one with a fake backend)."""

        def build() -> ChatEngine:
            if engine is not None:
                return engine
            from services.inference.backends import create_backend

            try:
                backend = create_backend(settings)
            except ImportError as exc:  # an API installed without the inference extra
                raise Unavailable(
                    f"inference dependencies missing ({exc.name}): install memgrid[inference]",
                    code="inference_unavailable",
                ) from exc
            return ChatEngine(settings.inference, backend, vault)

        self.engine = LazyEngine(build)

    def complete(self, caller: Caller, req: ChatCompletionRequest) -> ChatCompletionResponse:
        eng = self.engine.get()
        return eng.complete(eng.prepare(caller, req))

    def stream(self, caller: Caller, req: ChatCompletionRequest) -> Iterator[bytes]:
        eng = self.engine.get()
        prepared = eng.prepare(caller, req)
        return sse_lines(eng, prepared, eng.start(prepared))

    def close(self) -> None:
        self.engine.close()
