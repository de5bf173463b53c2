"""KV caches on disk: safetensors for the tensors, a JSON manifest for what they are.

Two blobs per cache, both content-addressed in the BlobStore:

* tensors: safetensors with ``layer.{i}.key`` / ``layer.{i}.value``, each
  ``[1, num_kv_heads, stored_len, head_dim]`` in the model's dtype (sliding layers
  store fewer positions than the token count; see ``CacheLayout``);
* manifest (``memgrid.kvcache/1``): model fingerprint, token count and ids, the
  memory text, source cube ids and versions, dtype, layout, and the tensors blob's
  key and sha256. The manifest key is the cache's id.

Decoding checks the manifest's fingerprint *before* touching the tensors, so a
cache for another model is refused without reading hundreds of megabytes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from shared.errors import BadRequest, Conflict

from ..backends.base import CacheLayout, KVPrefix, ModelFingerprint, SourceRef

FORMAT = "memgrid.kvcache/1"


@dataclass(frozen=True)
class Manifest:
    fingerprint: ModelFingerprint
    token_ids: tuple[int, ...]
    text: str
    sources: tuple[SourceRef, ...]
    dtype: str
    layout: CacheLayout
    tensors_key: str
    tensors_sha256: str
    tensors_bytes: int

    @property
    def token_count(self) -> int:
        return len(self.token_ids)

    def to_json(self) -> bytes:
        body = {
            "format": FORMAT,
            "fingerprint": self.fingerprint.to_dict(),
            "token_count": self.token_count,
            "token_ids": list(self.token_ids),
            "text": self.text,
            "sources": [{"cube_id": s.cube_id, "version": s.version} for s in self.sources],
            "dtype": self.dtype,
            "layout": self.layout.to_dict(),
            "tensors": {
                "key": self.tensors_key,
                "sha256": self.tensors_sha256,
                "bytes": self.tensors_bytes,
                "names": "layer.{i}.key, layer.{i}.value",
            },
        }
        # Sorted keys: equal caches give equal bytes, hence the same content address.
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        try:
            body = json.loads(data)
            if body.get("format") != FORMAT:
                raise BadRequest(f"not a KV cache manifest ({body.get('format')!r})")
            tensors = body["tensors"]
            manifest = cls(
                fingerprint=ModelFingerprint.from_dict(body["fingerprint"]),
                token_ids=tuple(int(t) for t in body["token_ids"]),
                text=str(body["text"]),
                sources=tuple(
                    SourceRef(str(s["cube_id"]), int(s["version"])) for s in body["sources"]
                ),
                dtype=str(body["dtype"]),
                layout=CacheLayout.from_dict(body["layout"]),
                tensors_key=str(tensors["key"]),
                tensors_sha256=str(tensors["sha256"]),
                tensors_bytes=int(tensors["bytes"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BadRequest(f"malformed KV cache manifest: {exc}") from exc
        if manifest.token_count != int(body["token_count"]):
            raise BadRequest("malformed KV cache manifest: token_count disagrees with token_ids")
        return manifest


def encode_tensors(prefix: KVPrefix) -> bytes:
    from safetensors.torch import save

    tensors: dict[str, Any] = {}
    for i, (k, v) in enumerate(zip(prefix.keys, prefix.values, strict=True)):
        tensors[f"layer.{i}.key"] = k.contiguous()
        tensors[f"layer.{i}.value"] = v.contiguous()
    data: bytes = save(tensors, metadata={"format": FORMAT})
    return data


def check_fingerprint(manifest: Manifest, serving: ModelFingerprint | None, layout: Any) -> None:
    """Conflict ``kv_fingerprint_mismatch`` unless the cache is for the serving model."""
    # The layout is implied by the weights; comparing it too catches a backend that
    # builds its cache differently for the same weights (another transformers version).
    other_layout = layout is not None and manifest.layout != layout
    if serving is None or manifest.fingerprint != serving or other_layout:
        served = serving.short() if serving else "a remote model without KV caches"
        raise Conflict(
            f"KV cache built for {manifest.fingerprint.short()} cannot be used with the "
            f"serving model {served}",
            code="kv_fingerprint_mismatch",
        )


def decode_tensors(manifest: Manifest, data: bytes, device: str = "cpu") -> KVPrefix:
    from safetensors.torch import load

    if hashlib.sha256(data).hexdigest() != manifest.tensors_sha256:
        raise Conflict("KV cache tensors do not match their manifest", code="kv_corrupt")
    tensors = load(data)
    layout = manifest.layout
    keys, values = [], []
    for i in range(layout.num_layers):
        try:
            k, v = tensors[f"layer.{i}.key"], tensors[f"layer.{i}.value"]
        except KeyError:
            raise Conflict(f"KV cache lacks layer {i}", code="kv_corrupt") from None
        want = (1, layout.num_kv_heads, layout.head_dim)
        if (k.shape[0], k.shape[1], k.shape[3]) != want or k.shape != v.shape:
            raise Conflict(f"KV cache layer {i} has shape {tuple(k.shape)}", code="kv_corrupt")
        keys.append(k.to(device))
        values.append(v.to(device))
    return KVPrefix(
        fingerprint=manifest.fingerprint,
        text=manifest.text,
        token_ids=manifest.token_ids,
        keys=tuple(keys),
        values=tuple(values),
        layout=layout,
        sources=manifest.sources,
    )
