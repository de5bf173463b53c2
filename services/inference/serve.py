"""The Ray Serve application of the inference service and its process entry point.

``build_application(settings)`` gives one deployment, ``generation``, whose
replicas each hold a model backend and a vault client and serve the FastAPI
ingress of services.inference.app (built per replica by
``__serve_build_asgi_app__``, so nothing unpicklable crosses to the replicas).
Replicas, resources and autoscaling come from ``settings.inference.serve``.
``serve(settings)`` (``memgrid serve --service inference``) starts or joins Ray,
runs the application on ``inference.serve.port`` and blocks.

Ray is imported inside functions: importing this module costs nothing, and the
API process never imports Ray at all (embedded mode runs ChatEngine in process).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from services.inference.chat import ChatEngine
from shared.schemas.api import Caller
from shared.schemas.chat import ChatCompletionRequest
from shared.settings import InferenceServeSettings, Settings

log = logging.getLogger(__name__)
APP_NAME = "memgrid-inference"
DEPLOYMENT = "generation"

EngineFactory = Callable[[Settings], ChatEngine]


def build_engine(settings: Settings) -> ChatEngine:
    """A replica's engine: the configured backend and, when the vault's URL is
    http(s), its HTTP client (without one, chats that ask for memory get 503).
    With a Kafka bus, the replica also publishes activation memory's facts and
    consumes the scheduler's activation commands (one consumer group for all
    replicas: each command is carried out once; the others find the new cache
    through the vault's record)."""
    from services.inference.activation import COMMAND_GROUP, COMMAND_TOPICS, build_activation
    from services.inference.backends import create_backend
    from shared.adapters import create_event_bus
    from shared.clients.vault_http import HttpVault

    vault = None
    if settings.vault.url.startswith(("http://", "https://")):
        vault = HttpVault(settings.vault)
    else:
        log.warning("no MEMGRID_VAULT__URL: chats that ask for memory will get 503")
    backend = create_backend(settings)
    bus = create_event_bus(settings.bus) if settings.bus.url.startswith("kafka") else None
    activation = build_activation(settings, backend, vault, bus)
    if activation is not None and bus is not None:
        activation.subscription = bus.subscribe(COMMAND_GROUP, COMMAND_TOPICS, activation.handle)
    from services.inference.adapters import build_parametric

    parametric = build_parametric(settings, backend, bus, vault)
    return ChatEngine(settings.inference, backend, vault, activation, parametric)


def deployment_options(cfg: InferenceServeSettings) -> dict[str, Any]:
    """serve.deployment options: fixed replicas, or autoscaling when max_replicas > 0."""
    opts: dict[str, Any] = {
        "name": DEPLOYMENT,
        "ray_actor_options": {"num_cpus": cfg.num_cpus, "num_gpus": cfg.num_gpus},
        "max_ongoing_requests": cfg.max_ongoing_requests,
    }
    if cfg.max_replicas > 0:
        opts["autoscaling_config"] = {
            "min_replicas": cfg.min_replicas,
            "initial_replicas": max(cfg.min_replicas, 1),
            "max_replicas": max(cfg.max_replicas, cfg.min_replicas, 1),
            "target_ongoing_requests": cfg.target_ongoing_requests,
        }
    else:
        opts["num_replicas"] = cfg.num_replicas
    return opts


class Generation:
    """One replica: an engine and the ingress app over it."""

    def __init__(self, settings: Settings, factory: EngineFactory | None = None) -> None:
        self._settings = settings
        self._engine = (factory or build_engine)(settings)

    def __serve_build_asgi_app__(self) -> Any:
        from services.inference.app import create_app

        return create_app(self._settings, self._engine)

    def complete(self, caller: dict[str, Any] | None, request: dict[str, Any]) -> dict[str, Any]:
        """The non-streaming chat for deployment handles (other deployments, and
        unit tests in Serve's local testing mode, which has no HTTP)."""
        who = Caller.model_validate(caller) if caller is not None else None
        req = ChatCompletionRequest.model_validate(request)
        prepared = self._engine.prepare(who, req)
        return self._engine.complete(prepared).model_dump(mode="json")

    def __del__(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.backend.close()


def build_application(settings: Settings, factory: EngineFactory | None = None) -> Any:
    """The Serve application (``serve.run`` it). ``factory`` builds each replica's
    engine (tests pass one with a fake backend); it must be picklable."""
    from ray import serve

    ingress = serve.ingress()(Generation)
    deployment = serve.deployment(**deployment_options(settings.inference.serve))(ingress)
    return deployment.bind(settings, factory)


def init_ray(cfg: InferenceServeSettings) -> None:
    """Joins ``ray_address`` or starts a small local Ray (INFRA-NOTES: always bound
    the object store; the dashboard is not needed)."""
    import ray

    if ray.is_initialized():
        return
    if cfg.ray_address:
        ray.init(address=cfg.ray_address)
    else:
        ray.init(
            num_cpus=cfg.ray_num_cpus,
            include_dashboard=False,
            object_store_memory=cfg.ray_object_store_bytes,
        )


def serve(settings: Settings) -> None:
    """``memgrid serve --service inference``: the Serve app on inference.serve.port."""
    import ray
    from ray import serve as ray_serve

    cfg = settings.inference.serve
    # Handlers first: a signal during the start (Ray's, the model's load) still stops us.
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    init_ray(cfg)
    ray_serve.start(http_options={"host": settings.host, "port": cfg.port})
    ray_serve.run(build_application(settings), name=APP_NAME, route_prefix="/")
    print(f"memgrid inference (Ray Serve) on http://{settings.host}:{cfg.port}", flush=True)
    try:
        stop.wait()
    finally:
        ray_serve.shutdown()
        ray.shutdown()
