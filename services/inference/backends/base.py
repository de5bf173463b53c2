"""The model backend port: what the inference service asks of a language model.

Contract (read before implementing or calling):

* A backend is built once per replica from settings (``create_backend`` in
  ``services.inference.backends``) and is then used from one request thread at a
  time **or** concurrently: implementations must be safe to call from several
  threads (the transformers backend serialises forward passes with a lock, since
  two CPU forwards at once are slower than two in a row).
* Prompts are plain completion text. Chat rendering (roles, memory blocks) belongs
  to the caller; the backend adds the model's BOS token itself.
* ``count_tokens`` / ``truncate_to_tokens`` count exactly the tokens ``generate``
  would feed for that text (no BOS), so callers can budget memory text.
* ``generate`` is a **generator** that yields decoded text pieces as they are
  produced (concatenate them for the full text; a piece may be ``""``). It stops at
  ``max_new_tokens``, at the model's end-of-sequence token, or when the generated
  text contains one of ``stop`` (the stop string itself is not yielded). The first
  ``next()`` returns after the prompt is processed and the first token sampled, so
  timing the first ``next()`` is time to first token. ``temperature == 0`` means
  greedy decoding; ``seed`` makes sampling reproducible. Closing the generator
  early (``gen.close()``) stops generation and frees its state.
* ``prefix`` (activation memory) is a KV cache built by ``build_prefix`` of the
  **same** backend model (same fingerprint; anything else raises
  ``shared.errors.Conflict`` with code ``kv_fingerprint_mismatch``). The token
  sequence seen by the model is then ``BOS + tokens(prefix.text) + tokens(prompt)``:
  exactly what ``prompt=prefix.text + prompt`` would give when ``prefix.text`` ends
  at a token boundary (end memory text with ``"\\n"``). Positions continue after the
  prefix. The prefix is never mutated: one ``KVPrefix`` may serve many concurrent
  requests.
* ``next_token_logits`` returns the float32 logits (shape ``[vocab]``) for the
  token after ``prompt`` (and ``prefix``), computed with no sampling; it is what the
  equivalence tests compare.
* Backends that cannot do activation memory (``supports_activation`` false, e.g.
  remote OpenAI-compatible servers) raise ``shared.errors.BadRequest`` with code
  ``tier_unsupported`` from ``build_prefix`` and for a non-None ``prefix``.
* ``adapter`` (parametric memory) names a LoRA adapter loaded into this backend
  (``load_adapter(name, config, weights)`` on backends with ``supports_adapters``;
  services.inference.adapters does the loading, validation and LRU). None means the
  base weights, exactly as if no adapter had ever been loaded. An unknown name
  raises ``NotFound`` (``adapter_not_loaded``); backends without adapter support
  raise ``BadRequest``-like ``tier_unsupported`` (400) for a non-None ``adapter``.
* Errors: bad arguments → ``BadRequest``; prompt plus ``max_new_tokens`` over the
  context window → ``BadRequest`` (``context_length`` tells the limit up front);
  remote backend unreachable → ``Unavailable``.

``KVPrefix`` lives here (not in ``kv/``) so this module imports neither torch nor
transformers: the API process may import it freely. Saving prefixes to the blob
store, loading them back (with the fingerprint check) and the LRU are in
``services.inference.kv``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from shared.models.fingerprint import ModelFingerprint, SourceRef

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class CacheLayout:
    """How the K/V tensors are laid out, so a loader can rebuild the model's cache.

    ``layer_types[i]`` is ``"full_attention"`` or ``"sliding_attention"``; a sliding
    layer keeps only its last ``sliding_window - 1`` positions (Gemma 3 interleaves
    five sliding layers per full one), so its stored length may be shorter than the
    token count. Tensors are ``[batch=1, num_kv_heads, stored_len, head_dim]``.
    """

    num_layers: int
    num_kv_heads: int
    head_dim: int
    layer_types: tuple[str, ...]
    sliding_window: int | None
    cache_class: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["layer_types"] = list(self.layer_types)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CacheLayout:
        sw = data.get("sliding_window")
        return cls(
            num_layers=int(data["num_layers"]),
            num_kv_heads=int(data["num_kv_heads"]),
            head_dim=int(data["head_dim"]),
            layer_types=tuple(str(t) for t in data["layer_types"]),
            sliding_window=None if sw is None else int(sw),
            cache_class=str(data["cache_class"]),
        )


@dataclass(frozen=True, eq=False)
class KVPrefix:
    """Activation memory: the model's keys and values after reading ``text``.

    ``keys[i]`` / ``values[i]`` are layer ``i``'s tensors (torch tensors at run time;
    typed ``Any`` so this module needs no torch). ``token_ids`` include the BOS
    token, so ``token_count == len(token_ids)`` is also the position where a prompt
    continues. Treat every tensor as read-only.
    """

    fingerprint: ModelFingerprint
    text: str
    token_ids: tuple[int, ...]
    keys: tuple[Any, ...]
    values: tuple[Any, ...]
    layout: CacheLayout
    sources: tuple[SourceRef, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def token_count(self) -> int:
        return len(self.token_ids)

    @property
    def nbytes(self) -> int:
        """Bytes held by the K/V tensors (what the LRU budget counts)."""
        total = 0
        for t in (*self.keys, *self.values):
            total += int(t.numel()) * int(t.element_size())
        return total


@runtime_checkable
class ModelBackend(Protocol):
    """A language model the inference service can generate with (see module docstring)."""

    name: str
    """Registry name: ``"transformers"``, ``"openai"``."""
    fingerprint: ModelFingerprint | None
    """None for remote backends (their weights cannot be checked)."""
    supports_activation: bool
    """Whether ``build_prefix`` and ``prefix=`` work (KV-cache memory)."""
    supports_adapters: bool
    """Whether LoRA adapters can be loaded (parametric memory)."""
    context_length: int
    """Most tokens (prefix + prompt + generated) one request may span."""

    def count_tokens(self, text: str) -> int: ...

    def truncate_to_tokens(self, text: str, budget: int) -> str:
        """The longest prefix of ``text`` of at most ``budget`` tokens (cut at a token)."""
        ...

    def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: Sequence[str] = (),
        prefix: KVPrefix | None = None,
        seed: int | None = None,
        adapter: str | None = None,
    ) -> Iterator[str]: ...

    def next_token_logits(
        self, prompt: str, *, prefix: KVPrefix | None = None, adapter: str | None = None
    ) -> np.ndarray: ...

    def build_prefix(self, text: str, *, sources: Sequence[SourceRef] = ()) -> KVPrefix: ...

    def close(self) -> None:
        """Frees the model; the backend must not be used afterwards."""
        ...
