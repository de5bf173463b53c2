"""The real embedders: all-MiniLM-L6-v2 from its PyPI package, offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.vault.embedders import EMBEDDERS, HashingEmbedder, create_embedder
from shared.errors import ConfigError
from shared.settings import EmbedderSettings

pytestmark = pytest.mark.unit


def test_hashing_is_deterministic_and_normalised() -> None:
    e = HashingEmbedder()
    a, b = e.encode(["Ana lives in Lisbon", "Ana lives in Lisbon"])
    assert np.allclose(a, b)
    assert np.isclose(np.linalg.norm(a), 1.0)
    assert e.encode([]).shape == (0, 384)


def test_unknown_embedder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown embedder backend 'bert'"):
        create_embedder(EmbedderSettings(backend="bert"), tmp_path)
    assert {"minilm", "minilm-int8", "hashing"} <= set(EMBEDDERS.names())


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["minilm", "minilm-int8"])
def test_minilm_ranks_a_paraphrase_first(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cache = tmp_path_factory.getbasetemp() / "models"
    e = create_embedder(EmbedderSettings(backend=backend), cache)
    docs = e.encode(
        [
            "The quarterly report is due on Friday.",
            "My grandmother adopted a small terrier puppy.",
            "We replaced the roof tiles after the storm.",
        ]
    )
    q = e.encode(["Who got a new dog?"])[0]
    assert docs.shape == (3, 384) and docs.dtype == np.float32
    assert np.allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-5)
    assert int(np.argmax(docs @ q)) == 1
