"""Registries of named adapters, one per port (feast's pattern).

An adapter registers a factory under a short name (``sqlite``, ``neo4j``, ...);
settings name the adapter, usually through a URL scheme. Factories are given as
``"module:attr"`` strings so that choosing an adapter imports only that adapter's
dependencies (the API must start fast; the Neo4j driver is not needed to run on
SQLite). An unknown name is a ConfigError, never a silent fallback.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from shared.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, port: str) -> None:
        self.port = port
        self._factories: dict[str, str | Callable[..., T]] = {}

    def register(self, name: str, factory: str | Callable[..., T]) -> None:
        if name in self._factories:
            raise ConfigError(f"{self.port} adapter {name!r} registered twice")
        self._factories[name] = factory

    def names(self) -> list[str]:
        return sorted(self._factories)

    def factory(self, name: str) -> Callable[..., T]:
        try:
            target = self._factories[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.port} backend {name!r}; known: {', '.join(self.names())}"
            ) from None
        if callable(target):
            return target
        module, _, attr = target.partition(":")
        # "module:Class.method", as in entry points: follow the dotted attribute path.
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        fn: Callable[..., T] = obj
        return fn

    def create(self, name: str, *args: Any, **kwargs: Any) -> T:
        return self.factory(name)(*args, **kwargs)


def scheme_of(url: str) -> str:
    """``sqlite:///x`` → ``sqlite``; ``kafka://h:p`` → ``kafka``. Errors on a bare string."""
    scheme, sep, _ = url.partition("://")
    if not sep or not scheme:
        raise ConfigError(f"not a backend URL (expected scheme://...): {url!r}")
    return scheme.lower()
