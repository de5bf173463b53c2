"""Identity of a model: a KV cache or LoRA adapter is valid only for an equal one.

Inference (serving) and trainer (distilling adapters) both compute it from the
model they loaded, so it lives here; torch is imported only inside
``weights_digest``.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ModelFingerprint:
    """Identity of a served model: a KV cache or adapter is valid only for an equal one.

    ``weights_sha256`` hashes the weight tensors (names, shapes, dtypes, bytes) as
    loaded, ``tokenizer_sha256`` the tokenizer's serialised vocabulary and rules, so a
    re-quantised or re-tokenised model with the same id is still told apart.
    """

    model_id: str
    weights_sha256: str
    tokenizer_sha256: str
    dtype: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelFingerprint:
        return cls(
            model_id=str(data["model_id"]),
            weights_sha256=str(data["weights_sha256"]),
            tokenizer_sha256=str(data["tokenizer_sha256"]),
            dtype=str(data["dtype"]),
        )

    def short(self) -> str:
        w, t = self.weights_sha256[:12], self.tokenizer_sha256[:12]
        return f"{self.model_id}[w:{w} t:{t} {self.dtype}]"


@dataclass(frozen=True)
class SourceRef:
    """A memory a KV cache was built from, at the version it was read."""

    cube_id: str
    version: int

    def __str__(self) -> str:
        return f"{self.cube_id}@{self.version}"


def weights_digest(model: Any) -> str:
    """sha256 over every tensor's name, shape, dtype and bytes, in name order."""
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}\n".encode())
        # bfloat16 has no numpy dtype: hash the raw bytes through an int16 view.
        raw = t.view(torch.int16) if t.dtype == torch.bfloat16 else t
        h.update(raw.numpy().tobytes())
    return h.hexdigest()


def tokenizer_digest(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return hashlib.sha256(backend.to_str().encode()).hexdigest()
    vocab = sorted(tokenizer.get_vocab().items())  # slow tokenizers: vocabulary only
    return hashlib.sha256(repr(vocab).encode()).hexdigest()
