"""Embedder: text → L2-normalised float32 vectors, encoded in batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    model_id: str
    dimension: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Shape (len(texts), dimension), float32, each row of unit length."""
        ...
