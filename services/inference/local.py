"""LocalInference: the InferenceAPI running in this process (embedded mode).

Embedded mode does not start Ray Serve: the API must start in about a second,
and Ray with Serve costs seconds and most of a gigabyte before the first chat.
It runs the deployment's own logic (ChatEngine) in process instead, building the
backend (loading the model) on the first chat request. ``memgrid serve
--service inference`` is the Ray Serve way; an embedded API can use one by
setting ``MEMGRID_INFERENCE__SERVE__URL``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from services.inference.activation import build_activation
from services.inference.app import LazyEngine, activation_of, sse_lines
from services.inference.chat import ChatEngine
from shared.errors import Unavailable
from shared.ports.bus import EventBus
from shared.ports.vault import VaultAPI
from shared.schemas.activation import ActivationBuildRequest, ActivationBuilt
from shared.schemas.api import Caller
from shared.schemas.chat import ChatCompletionRequest, ChatCompletionResponse
from shared.schemas.events import EventEnvelope
from shared.settings import Settings

log = logging.getLogger(__name__)


class LocalInference:
    def __init__(
        self,
        settings: Settings,
        vault: VaultAPI,
        engine: ChatEngine | None = None,
        bus: EventBus | None = None,
    ) -> None:
        """``engine``: an engine already built (tests pass one with a fake backend);
        ``bus``: where activation memory's memory.promoted / demoted go."""

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
            activation = build_activation(settings, backend, vault, bus)
            from services.inference.adapters import build_parametric

            parametric = build_parametric(settings, backend, bus, vault)
            return ChatEngine(settings.inference, backend, vault, activation, parametric)

        self.engine = LazyEngine(build)

    def complete(self, caller: Caller, req: ChatCompletionRequest) -> ChatCompletionResponse:
        eng = self.engine.get()
        return eng.complete(eng.prepare(caller, req))

    def stream(self, caller: Caller, req: ChatCompletionRequest) -> Iterator[bytes]:
        eng = self.engine.get()
        prepared = eng.prepare(caller, req)
        return sse_lines(eng, prepared, eng.start(prepared))

    def build_activation(
        self, caller: Caller, namespace: str, req: ActivationBuildRequest
    ) -> ActivationBuilt:
        return activation_of(self.engine.get()).build_for(caller, namespace, req)

    def handle_command(self, event: EventEnvelope) -> None:
        """The scheduler's BuildActivation / EvictActivation (a bus handler). Embedded
        mode loads its model on the first chat, not for the scheduler: before that,
        a command is acknowledged and skipped (logged); the scheduler plans again
        on a later tick. Once loaded, commands are carried out here."""
        if not self.engine.loaded:
            log.info("%s %s skipped: no model loaded yet", event.topic, event.id)
            return
        try:
            service = activation_of(self.engine.get())
        except Exception:  # a backend without KV caches: nothing to do
            return
        service.handle(event)

    def close(self) -> None:
        self.engine.close()
