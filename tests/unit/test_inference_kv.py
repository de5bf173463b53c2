"""Activation memory on the tiny model: KV-cache prefixes equal plaintext, round-trips,
refusals, the LRU. The tiny model is Gemma 3-shaped with a 16-token sliding window,
so every memory text here overflows the sliding layers (their truncated caches and
restored positions are what is being tested)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared.adapters.blob_fs import FileBlobStore
from shared.errors import BadRequest, ConfigError, Conflict, NotFound
from shared.settings import Settings

pytestmark = pytest.mark.unit

# float32 on a CPU: the two paths add the same numbers in a different order (one
# long attention vs cache + short one); differences seen are ~2e-6 on logits ~7.
ATOL = 1e-4
MEMORY = (
    "Ana moved to Lisbon in March 2024. She works as a nurse at Santa Maria hospital "
    "and keeps a cat called Pixel.\n"
)
QUESTION = "Q: where does Ana live?\nA:"


@pytest.fixture(scope="module")
def backend() -> Any:
    from services.inference.backends import create_backend

    return create_backend(Settings(inference={"model": "tiny"}))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def prefix(backend: Any) -> Any:
    from services.inference.backends import SourceRef

    return backend.build_prefix(MEMORY, sources=[SourceRef("c1", 2), SourceRef("c2", 1)])


def store(backend: Any, tmp_path: Path, budget: int = 10**9, on_evict: Any = None) -> Any:
    from services.inference.kv import KVCacheStore, KVLru

    return KVCacheStore(FileBlobStore(tmp_path), backend, KVLru(budget, on_evict=on_evict))


def test_kv_prefix_logits_equal_plaintext(backend: Any, prefix: Any) -> None:
    # Same token sequence both ways (the memory ends at a token boundary).
    assert backend.encode(MEMORY + QUESTION, bos=True) == list(prefix.token_ids) + backend.encode(
        QUESTION, bos=False
    )
    assert prefix.token_count > 4 * 16  # several sliding windows long
    plain = backend.next_token_logits(MEMORY + QUESTION)
    cached = backend.next_token_logits(QUESTION, prefix=prefix)
    assert plain.shape == cached.shape == (backend.model.config.vocab_size,)
    np.testing.assert_allclose(cached, plain, atol=ATOL, rtol=0)
    assert plain.argmax() == cached.argmax()
    # Without the memory the logits differ: the prefix is really used.
    assert not np.allclose(backend.next_token_logits(QUESTION), plain, atol=1e-2)


def test_sliding_layers_keep_only_their_window(backend: Any, prefix: Any) -> None:
    window = backend.layout.sliding_window
    assert window == 16
    for kind, k in zip(prefix.layout.layer_types, prefix.keys, strict=True):
        expect = window - 1 if kind == "sliding_attention" else prefix.token_count
        assert k.shape[2] == expect


def test_generation_with_prefix_equals_plaintext_and_does_not_mutate_it(
    backend: Any, prefix: Any
) -> None:
    before = [t.clone() for t in (*prefix.keys, *prefix.values)]
    with_kv = "".join(backend.generate(QUESTION, max_new_tokens=12, prefix=prefix))
    plain = "".join(backend.generate(MEMORY + QUESTION, max_new_tokens=12))
    assert with_kv == plain and len(plain) > 0
    # Reused by a second request: still intact.
    again = "".join(backend.generate(QUESTION, max_new_tokens=12, prefix=prefix))
    assert again == with_kv
    after = (*prefix.keys, *prefix.values)
    assert all(bool((a == b).all()) for a, b in zip(before, after, strict=True))


def test_round_trip_through_the_blob_store(backend: Any, prefix: Any, tmp_path: Path) -> None:
    kv = store(backend, tmp_path)
    ref = kv.save("t1", "ns1", prefix)
    assert ref.key.startswith("t1/ns1/sha256/") and ref.token_count == prefix.token_count
    manifest = kv.manifest("t1", ref.key)
    assert manifest.fingerprint == backend.fingerprint
    assert [str(s) for s in manifest.sources] == ["c1@2", "c2@1"]
    assert manifest.layout.layer_types.count("sliding_attention") == 4
    assert manifest.dtype == "float32" and manifest.text == MEMORY
    loaded = kv.load("t1", ref.key, use_lru=False)  # from the blobs, not memory
    assert loaded is not prefix
    expect = backend.next_token_logits(QUESTION, prefix=prefix)
    assert np.array_equal(backend.next_token_logits(QUESTION, prefix=loaded), expect)
    assert kv.save("t1", "ns1", prefix).key == ref.key  # content-addressed: stored once
    assert kv.load("t1", ref.key) is prefix  # LRU hit


def test_a_cache_of_another_model_is_refused(backend: Any, prefix: Any, tmp_path: Path) -> None:
    from services.inference.backends.hf import TransformersBackend
    from shared.models.tiny import TINY_MODEL_ID, build_tiny

    other = TransformersBackend(*build_tiny(seed=1), model_id=TINY_MODEL_ID, dtype="float32")
    assert other.fingerprint != backend.fingerprint
    assert other.fingerprint.model_id == backend.fingerprint.model_id  # same id, other weights
    ref = store(backend, tmp_path).save("t1", "ns1", prefix)
    with pytest.raises(Conflict) as err:
        store(other, tmp_path).load("t1", ref.key)
    assert err.value.code == "kv_fingerprint_mismatch" and "serving model" in err.value.detail
    with pytest.raises(Conflict):
        other.next_token_logits(QUESTION, prefix=prefix)
    with pytest.raises(Conflict):
        other.generate(QUESTION, max_new_tokens=2, prefix=prefix)


def test_another_tenant_cannot_load_a_cache(backend: Any, prefix: Any, tmp_path: Path) -> None:
    kv = store(backend, tmp_path)
    ref = kv.save("t1", "ns1", prefix)
    with pytest.raises(NotFound):
        kv.load("t2", ref.key)
    with pytest.raises(NotFound):
        kv.load("t2", ref.key.replace("t1/", "t2/", 1))


def test_lru_evicts_by_bytes(backend: Any, tmp_path: Path) -> None:
    evicted: list[tuple[str, str]] = []
    one = backend.build_prefix("first memory text\n")
    kv = store(
        backend, tmp_path, budget=int(one.nbytes * 2.5), on_evict=lambda k, p: evicted.append(k)
    )
    a = kv.save("t1", "ns", one)
    b = kv.save("t1", "ns", backend.build_prefix("other memory text\n"))
    kv.load("t1", a.key)  # a is now the most recent
    c = kv.save("t1", "ns", backend.build_prefix("third memory text\n"))
    assert evicted == [("t1", b.key)]
    assert ("t1", a.key) in kv.lru and ("t1", c.key) in kv.lru
    assert kv.lru.used_bytes <= kv.lru.budget_bytes
    big = backend.build_prefix("x" * 200 + "\n")
    assert big.nbytes > kv.lru.budget_bytes
    assert kv.lru.put(("t1", "big"), big) is False and ("t1", "big") not in kv.lru
    kv.delete("t1", c.key)
    with pytest.raises(NotFound):
        kv.load("t1", c.key)


def test_tokens_budget_and_limits(backend: Any, prefix: Any) -> None:
    assert backend.count_tokens("héllo") == 6  # bytes
    cut = backend.truncate_to_tokens("hello world", 5)
    assert cut == "hello" and backend.count_tokens(cut) == 5
    assert backend.truncate_to_tokens("hi", 10) == "hi"
    with pytest.raises(BadRequest):
        backend.generate("hi", max_new_tokens=backend.context_length)
    with pytest.raises(BadRequest):
        backend.generate("", max_new_tokens=1, prefix=prefix)  # nothing to feed


def test_stop_strings_and_streaming(backend: Any) -> None:
    full = "".join(backend.generate(MEMORY + QUESTION, max_new_tokens=10))
    assert len(full) >= 6
    pieces = list(backend.generate(MEMORY + QUESTION, max_new_tokens=10, stop=[full[3:5]]))
    assert "".join(pieces) == full[: full.find(full[3:5])]
    sampled = [
        "".join(backend.generate(QUESTION, max_new_tokens=8, temperature=1.0, top_p=0.9, seed=7))
        for _ in range(2)
    ]
    assert sampled[0] == sampled[1]


def test_settings_name_backend_and_model() -> None:
    from services.inference.backends import BACKENDS, create_backend

    assert {"transformers", "openai"} <= set(BACKENDS.names())
    with pytest.raises(ConfigError, match="unknown inference backend 'nope'"):
        create_backend(Settings(inference={"backend": "nope"}))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="local Hugging Face model directory"):
        create_backend(Settings(inference={"model": "/no/such/model"}))  # type: ignore[arg-type]


def test_backend_packages_import_without_torch() -> None:
    code = (
        "import sys, services.inference.backends, services.inference.kv; "
        "sys.exit(any(m in sys.modules for m in ('torch', 'transformers')))"
    )
    root = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0


def test_namespace_activations_serve_the_plaintext_memory_block(
    backend: Any, tmp_path: Path
) -> None:
    from services.inference.kv import NamespaceActivations
    from services.inference.prompts import MemoryText, render_memories
    from shared.schemas.api import Caller

    memories = [
        MemoryText("c1", 3, "ns1", "Ana lives in Lisbon", 0.9),
        MemoryText("c2", 1, "ns1", "Ana's locker code is 1234", 0.5),
    ]
    acts = NamespaceActivations(store(backend, tmp_path))
    ref = acts.build("t1", "ns1", memories, budget=200)
    assert ref is not None and acts.current("t1", "ns1") == ref.key
    prefix = acts.prefix_for(Caller(tenant="t1", principal="p"), ["ns0", "ns1"])
    assert prefix is not None
    assert [str(s) for s in prefix.sources] == ["c1@3", "c2@1"]
    block = render_memories(memories, 200, backend.count_tokens, backend.truncate_to_tokens)
    assert prefix.text == block.text  # what plaintext injection would have put first
    prompt = "User: What is Ana's locker code?\nAssistant:"
    np.testing.assert_allclose(
        backend.next_token_logits(prompt, prefix=prefix),
        backend.next_token_logits(block.text + prompt),
        atol=ATOL,
        rtol=0,
    )
    # Another tenant asking for the same namespace id gets nothing.
    assert acts.prefix_for(Caller(tenant="t2", principal="p"), ["ns1"]) is None
    with pytest.raises(NotFound):
        acts.attach("t1", "ns2", ref.key)  # a cache of ns1 cannot serve ns2
    assert acts.detach("t1", "ns1") == ref.key
    assert acts.prefix_for(Caller(tenant="t1", principal="p"), ["ns1"]) is None
    acts.attach("t1", "ns1", ref.key)
    acts.store.delete("t1", ref.key)  # erased: plaintext serves instead
    assert acts.prefix_for(Caller(tenant="t1", principal="p"), ["ns1"]) is None
