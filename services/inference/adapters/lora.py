"""LoRA adapters inside one transformers model, with peft (imported lazily, torch-heavy).

One ``PeftModel`` wraps the backend's model once the first adapter is loaded; every
adapter is a named peft adapter (``add_adapter`` + ``set_peft_model_state_dict``,
from bytes: no temporary directories). Selection is **per forward pass**, under the
backend's forward lock: ``set_adapter(name)`` for an adapter, ``disable_adapter()``
for the base weights. We chose this over peft's mixed-batch ``adapter_names``
because the backend runs one sequence per forward anyway (CPU serving, one lock),
and switching is only a flag flip on the LoRA layers; streams of different
adapters can interleave token by token and each forward still sees its own.

Adapter names are slot names made by the registry (peft keeps adapters in
``ModuleDict``s, which refuse ``.`` in keys, so an id like ``faq@1.2+ab12`` cannot
be used directly).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from typing import Any

from shared.errors import NotFound
from shared.lora.manifest import adapter_invalid

SLOT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def check_targets(model: Any, config: Mapping[str, Any]) -> None:
    """422 unless every module ``target_modules`` names exists in ``model``."""
    targets = config.get("target_modules")
    names = [n for n, _ in model.named_modules()]
    if isinstance(targets, str):  # peft: a string is a regex over full module names
        if not any(re.fullmatch(targets, n) for n in names):
            raise adapter_invalid(f"target_modules {targets!r} matches no module of the model")
        return
    if not isinstance(targets, list) or not targets:
        raise adapter_invalid("adapter_config.json: target_modules must be a list or a regex")
    leaves = {n.rsplit(".", 1)[-1] for n in names} | set(names)
    missing = [t for t in targets if t not in leaves]
    if missing:
        raise adapter_invalid(f"target modules not in the base model: {sorted(missing)}")


class LoraHost:
    """The LoRA adapters loaded into one model (used under the backend's lock)."""

    def __init__(self, model: Any) -> None:
        self.base = model
        self.peft: Any = None
        self.loaded: set[str] = set()

    def load(self, name: str, config: Mapping[str, Any], weights: bytes) -> None:
        from peft import LoraConfig, PeftModel, set_peft_model_state_dict
        from safetensors.torch import load as load_safetensors

        if not SLOT.match(name):
            raise ValueError(f"adapter slot name {name!r} is not an identifier")
        if name in self.loaded:
            return
        check_targets(self.base, config)
        try:
            lora = LoraConfig.from_peft_type(**dict(config))
            state = load_safetensors(weights)
        except Exception as exc:  # peft/safetensors raise many kinds for bad input
            raise adapter_invalid(f"adapter files unreadable: {exc}") from exc
        lora.inference_mode = True
        if self.peft is None:
            self.peft = PeftModel(self.base, lora, adapter_name=name)
        else:
            self.peft.add_adapter(name, lora)
        self.loaded.add(name)
        try:
            result: Any = set_peft_model_state_dict(self.peft, state, adapter_name=name)
            # Base weights are always "missing" from an adapter file; its own LoRA ones not.
            missing = [k for k in result.missing_keys if f".{name}." in k]
            if result.unexpected_keys or missing:
                raise adapter_invalid(
                    "adapter weights do not fit the model "
                    f"(unexpected {list(result.unexpected_keys)[:3]}, missing {missing[:3]})"
                )
        except Exception:
            self.unload(name)
            raise
        self.peft.eval()

    def unload(self, name: str) -> None:
        if name not in self.loaded:
            return
        self.loaded.discard(name)
        if not self.loaded:
            # peft cannot run with zero adapters: drop the LoRA layers, back to the base.
            self.base = self.peft.unload()
            self.peft = None
            return
        if name in self.peft.active_adapters:
            self.peft.set_adapter(next(iter(self.loaded)))
        self.peft.delete_adapter(name)

    @contextlib.contextmanager
    def selected(self, name: str | None) -> Iterator[Any]:
        """The module to call for one forward with ``name`` (None: base weights)."""
        if name is None:
            if self.peft is None:
                yield self.base
            else:
                with self.peft.disable_adapter():
                    yield self.peft
            return
        if name not in self.loaded:
            raise NotFound(f"adapter {name!r} is not loaded", code="adapter_not_loaded")
        self.peft.set_adapter(name)
        yield self.peft
