"""Adapter cases for the contract suites: one entry per backend of a port.

A server-backed adapter (Neo4j, MinIO, Kafka) is added by appending one
``AdapterCase`` with ``requires=(host, port)``; its tests are skipped, not
failed, when nothing listens there. Tests use fresh random tenant ids, so a
shared server keeps working across runs without being wiped.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import pytest

T = TypeVar("T")


@dataclass(frozen=True)
class AdapterCase(Generic[T]):
    name: str
    make: Callable[[Path], T]
    requires: tuple[str, int] | None = None  # a server that must be reachable

    def build(self, tmp_path: Path) -> T:
        if self.requires is not None and not reachable(*self.requires):
            host, port = self.requires
            pytest.skip(f"{self.name}: nothing listens on {host}:{port}")
        return self.make(tmp_path)


def params(cases: list[AdapterCase[Any]]) -> list[Any]:
    return [pytest.param(c, id=c.name) for c in cases]


def reachable(host: str, port: int, timeout_s: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
