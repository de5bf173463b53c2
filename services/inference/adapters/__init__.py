"""Parametric memory: LoRA adapters served per namespace (docs/inference.md).

``shared.lora.AdapterStore`` keeps adapters in the BlobStore (peft's files plus a
``memgrid.adapter/1`` manifest; ids ``name@version+digest``) and checks them on
read; ``AdapterRegistry`` is chat's ``ParametricSource``: the current adapter per
namespace and an LRU of adapters loaded into the backend. torch and peft are
imported only by ``lora`` (by the transformers backend), never here.
"""

from __future__ import annotations

from shared.lora.manifest import FORMAT, AdapterId, AdapterManifest
from shared.lora.store import AdapterFiles, AdapterStore

from .registry import ActiveAdapter, AdapterRegistry, build_parametric, slot_name

__all__ = [
    "FORMAT",
    "ActiveAdapter",
    "AdapterFiles",
    "AdapterId",
    "AdapterManifest",
    "AdapterRegistry",
    "AdapterStore",
    "build_parametric",
    "slot_name",
]
