"""The ``transformers`` backend: a local causal LM on torch (see ``base`` for the contract).

Activation memory is the model's own cache: ``build_prefix`` runs the memory text once
and keeps each layer's keys and values; a request rebuilds a fresh ``DynamicCache``
around those tensors (no copy: ``DynamicLayer.update`` concatenates into new tensors,
so the prefix is never written to) and feeds only its own tokens, with positions
continuing after the prefix. Sliding-window layers (Gemma 3) keep just their last
``sliding_window - 1`` positions, and their ``cumulative_length`` is restored to the
prefix length so masks and positions come out as if the prefix had been in the prompt.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.errors import BadRequest, Conflict, NotFound
from shared.models.fingerprint import ModelFingerprint, SourceRef, tokenizer_digest, weights_digest
from shared.models.loading import load_model
from shared.settings import Settings

from .base import CacheLayout, KVPrefix

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


class TransformersBackend:
    name = "transformers"
    supports_activation = True
    supports_adapters = True

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        model_id: str,
        dtype: str,
        max_context_tokens: int = 8_192,
        max_prefix_tokens: int = 4_096,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.dtype = dtype
        self.config = model.config.get_text_config(decoder=True)
        self.context_length = min(
            max_context_tokens, int(getattr(self.config, "max_position_embeddings", 8_192))
        )
        self.max_prefix_tokens = max_prefix_tokens
        self.fingerprint: ModelFingerprint | None = ModelFingerprint(
            model_id=model_id,
            weights_sha256=weights_digest(model),
            tokenizer_sha256=tokenizer_digest(tokenizer),
            dtype=dtype,
        )
        self.bos_id: int | None = tokenizer.bos_token_id
        self.eos_ids = _eos_ids(model, tokenizer)
        self.layout = _layout(self.config)
        # One forward at a time: on a CPU two concurrent forwards only fight for cores.
        self._lock = threading.Lock()
        self._lora: Any = None  # adapters.lora.LoraHost, made on the first load_adapter

    @classmethod
    def from_settings(cls, settings: Settings) -> TransformersBackend:
        import torch

        cfg = settings.inference
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        model, tokenizer, model_id = load_model(cfg.model, cfg.dtype, settings.cache_dir)
        model.to(cfg.device)
        return cls(
            model,
            tokenizer,
            model_id=model_id,
            dtype=cfg.dtype,
            max_context_tokens=cfg.max_context_tokens,
            max_prefix_tokens=cfg.kv_max_tokens,
        )

    # -- tokens --------------------------------------------------------------------

    def encode(self, text: str, *, bos: bool) -> list[int]:
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ([self.bos_id] if bos and self.bos_id is not None else []) + ids

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text, bos=False))

    def truncate_to_tokens(self, text: str, budget: int) -> str:
        if budget <= 0:
            return ""
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
        if len(offsets) <= budget:
            return text
        return text[: offsets[budget - 1][1]]

    # -- forward passes ------------------------------------------------------------

    def _cache_for(self, prefix: KVPrefix | None) -> tuple[Any, int]:
        """A fresh DynamicCache holding ``prefix`` (or empty) and the next position."""
        from transformers import DynamicCache

        cache: Any = DynamicCache(config=self.model.config)
        if prefix is None:
            return cache, 0
        self.check_prefix(prefix)
        n = prefix.token_count
        for layer, k, v in zip(cache.layers, prefix.keys, prefix.values, strict=True):
            layer.lazy_initialization(k, v)
            layer.keys, layer.values = k, v
            if hasattr(layer, "cumulative_length"):  # sliding layer: tokens seen, not kept
                layer.cumulative_length = n
        return cache, n

    def check_prefix(self, prefix: KVPrefix) -> None:
        """Conflict ``kv_fingerprint_mismatch`` unless ``prefix`` was built by this model."""
        if prefix.fingerprint != self.fingerprint or prefix.layout != self.layout:
            served = self.fingerprint.short() if self.fingerprint else "?"
            raise Conflict(
                f"KV cache built for {prefix.fingerprint.short()} cannot be used with the "
                f"serving model {served}",
                code="kv_fingerprint_mismatch",
            )

    # -- LoRA adapters (parametric memory; services.inference.adapters) -------------

    def load_adapter(self, name: str, config: dict[str, Any], weights: bytes) -> None:
        """Loads a validated LoRA adapter as ``name`` (see adapters.lora.LoraHost)."""
        from ..adapters.lora import LoraHost

        with self._lock:
            if self._lora is None:
                self._lora = LoraHost(self.model)
            self._lora.load(name, config, weights)

    def unload_adapter(self, name: str) -> None:
        with self._lock:
            if self._lora is not None:
                self._lora.unload(name)

    def check_adapter(self, adapter: str | None) -> None:
        if adapter is not None and (self._lora is None or adapter not in self._lora.loaded):
            raise NotFound(f"adapter {adapter!r} is not loaded", code="adapter_not_loaded")

    def _forward(
        self, ids: list[int], cache: Any, start: int, adapter: str | None = None
    ) -> torch.Tensor:
        import torch

        input_ids = torch.tensor([ids], dtype=torch.long, device=self.model.device)
        positions = torch.arange(start, start + len(ids), device=self.model.device)[None]
        with self._lock, torch.inference_mode(), self._selected(adapter) as model:
            out = model(
                input_ids=input_ids,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,  # the vocabulary is large: never materialise all rows
            )
        logits: torch.Tensor = out.logits[0, -1].float()
        return logits

    def _selected(self, adapter: str | None) -> Any:
        if self._lora is None:
            self.check_adapter(adapter)
            return contextlib.nullcontext(self.model)
        return self._lora.selected(adapter)

    def _prompt_ids(self, prompt: str, prefix: KVPrefix | None, max_new: int) -> list[int]:
        ids = self.encode(prompt, bos=prefix is None)
        if not ids:
            raise BadRequest("the prompt is empty")
        total = len(ids) + (prefix.token_count if prefix else 0) + max_new
        if total > self.context_length:
            raise BadRequest(
                f"prefix, prompt and max_new_tokens span {total} tokens; "
                f"the model serves at most {self.context_length}"
            )
        return ids

    def next_token_logits(
        self, prompt: str, *, prefix: KVPrefix | None = None, adapter: str | None = None
    ) -> np.ndarray:
        self.check_adapter(adapter)
        ids = self._prompt_ids(prompt, prefix, 0)
        cache, start = self._cache_for(prefix)
        return self._forward(ids, cache, start, adapter).cpu().numpy()

    def build_prefix(self, text: str, *, sources: Sequence[SourceRef] = ()) -> KVPrefix:
        ids = self.encode(text, bos=True)
        if len(ids) > self.max_prefix_tokens + 1:
            raise BadRequest(
                f"memory text of {len(ids) - 1} tokens is over the KV cache limit of "
                f"{self.max_prefix_tokens} (inference.kv_max_tokens)"
            )
        cache, _ = self._cache_for(None)
        self._forward(ids, cache, 0)
        keys, values = [], []
        for layer in cache.layers:
            # A sliding layer's tensors are views into the full pass: clone to free the rest.
            keys.append(layer.keys.contiguous().clone())
            values.append(layer.values.contiguous().clone())
        assert self.fingerprint is not None
        return KVPrefix(
            fingerprint=self.fingerprint,
            text=text,
            token_ids=tuple(ids),
            keys=tuple(keys),
            values=tuple(values),
            layout=self.layout,
            sources=tuple(sources),
        )

    # -- generation ----------------------------------------------------------------

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
    ) -> Iterator[str]:
        self.check_adapter(adapter)
        if max_new_tokens < 1:
            raise BadRequest("max_new_tokens must be at least 1")
        if temperature < 0 or not 0 < top_p <= 1:
            raise BadRequest("temperature must be >= 0 and top_p in (0, 1]")
        # Validate before the first next(): errors surface at call time, not mid-stream.
        ids = self._prompt_ids(prompt, prefix, max_new_tokens)
        cache, pos = self._cache_for(prefix)
        sampling = (temperature, top_p, stop, seed)
        return self._stream(ids, cache, pos, max_new_tokens, sampling, adapter)

    def _stream(
        self,
        ids: list[int],
        cache: Any,
        pos: int,
        max_new: int,
        sampling: tuple[float, float, Sequence[str], int | None],
        adapter: str | None,
    ) -> Iterator[str]:
        import torch

        temperature, top_p, stop, seed = sampling

        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        out_ids: list[int] = []
        emitted = 0
        hold = max((len(s) for s in stop), default=1) - 1
        for _ in range(max_new):
            logits = self._forward(ids, cache, pos, adapter)
            pos += len(ids)
            token = _sample(logits, temperature, top_p, gen)
            if token in self.eos_ids:
                break
            out_ids.append(token)
            ids = [token]
            text = self.tokenizer.decode(out_ids, skip_special_tokens=True)
            cut = _first_stop(text, stop)
            if cut is not None:
                yield text[emitted:cut]
                return
            # Hold back an incomplete UTF-8 character and what could start a stop string.
            safe = len(text) - hold if stop else len(text)
            if text.endswith("\ufffd"):
                safe = min(safe, len(text) - 1)
            if safe > emitted:
                yield text[emitted:safe]
                emitted = safe
            elif emitted == 0 and len(out_ids) == 1:
                yield ""  # the first token is out: callers time TTFT on this
        text = self.tokenizer.decode(out_ids, skip_special_tokens=True)
        if len(text) > emitted:
            yield text[emitted:]

    def close(self) -> None:
        self.model = None


def _sample(logits: torch.Tensor, temperature: float, top_p: float, gen: Any) -> int:
    import torch

    if temperature == 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1:
        sorted_p, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_p, dim=-1) - sorted_p < top_p  # always keeps the top one
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
    return int(torch.multinomial(probs, 1, generator=gen))


def _first_stop(text: str, stop: Sequence[str]) -> int | None:
    hits = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return min(hits) if hits else None


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids = getattr(model.generation_config, "eos_token_id", None) or tokenizer.eos_token_id
    if ids is None:
        return frozenset()
    return frozenset([ids] if isinstance(ids, int) else ids)


def _layout(config: Any) -> CacheLayout:
    n = int(config.num_hidden_layers)
    types = getattr(config, "layer_types", None) or ["full_attention"] * n
    heads = int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    window = getattr(config, "sliding_window", None)
    has_sliding = any(t == "sliding_attention" for t in types)
    return CacheLayout(
        num_layers=n,
        num_kv_heads=heads,
        head_dim=int(head_dim),
        layer_types=tuple(str(t) for t in types),
        sliding_window=int(window) if window and has_sliding else None,
        cache_class="DynamicCache",
    )
