"""Embedder contract, run against every adapter of the port.

Every embedder returns float32 rows of unit length, one per input, deterministic,
independent of how inputs are batched, and copes with any text a client may send.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.vault.embedders import EMBEDDERS, create_embedder
from shared.ports.embedder import Embedder
from shared.settings import EmbedderSettings

pytestmark = pytest.mark.contract

_cache: dict[str, Embedder] = {}


@pytest.fixture(params=EMBEDDERS.names())
def embedder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Embedder:
    name = request.param
    if name not in _cache:  # models load once per session: seconds each
        cache = tmp_path_factory.getbasetemp() / "models"
        _cache[name] = create_embedder(EmbedderSettings(backend=name, batch_size=4), Path(cache))
    return _cache[name]


TEXTS = [
    "Ana moved to Lisbon last spring.",
    "",
    "😀 emoji, ünïcödé and 中文",
    "word " * 2000,  # far past the model's token limit: truncated, not an error
    "Ana moved to Lisbon last spring.",
    "a",
]


def test_shape_dtype_and_unit_length(embedder: Embedder) -> None:
    out = embedder.encode(TEXTS)
    assert isinstance(embedder, Embedder)
    assert out.shape == (len(TEXTS), embedder.dimension)
    assert out.dtype == np.float32
    norms = np.linalg.norm(out, axis=1)
    nonzero = norms > 0
    assert np.allclose(norms[nonzero], 1.0, atol=1e-4)
    assert nonzero[[0, 2, 3, 4, 5]].all()


def test_deterministic_and_batch_independent(embedder: Embedder) -> None:
    together = embedder.encode(TEXTS)
    alone = np.vstack([embedder.encode([t]) for t in TEXTS])
    again = embedder.encode(TEXTS)
    assert np.array_equal(together, again)  # deterministic for the same batch
    # Exact encoders give the same vector whatever the batch; a quantised one
    # declares how far it may drift (see MiniLMInt8Embedder).
    floor = getattr(embedder, "batch_cosine_floor", None)
    if floor is None:
        assert np.allclose(together, alone, atol=2e-3)
    else:
        cos = (together * alone).sum(axis=1)
        assert (cos[[0, 2, 3, 4, 5]] >= floor).all(), cos


def test_empty_input(embedder: Embedder) -> None:
    assert embedder.encode([]).shape == (0, embedder.dimension)


def test_related_text_is_closer_than_unrelated(embedder: Embedder) -> None:
    a, b, c = embedder.encode(
        ["Ana moved to Lisbon", "Ana relocated to Lisbon", "quarterly revenue tables"]
    )
    assert float(a @ b) > float(a @ c)
