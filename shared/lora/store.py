"""AdapterStore: LoRA adapters saved to and read from the BlobStore, checked on read.

``save`` puts peft's two files then the manifest, each content-addressed under
``{tenant}/{namespace}/sha256/`` (the key helpers of shared.ports.blob, as the KV
store uses), and returns the adapter id. ``load`` resolves an id *within one
tenant and namespace* (so another tenant's or namespace's adapter is simply not
found), refuses an adapter for another model (409 ``adapter_fingerprint_mismatch``)
before reading its weights, parses and checks ``adapter_config.json`` (422
``adapter_invalid``) and checks every file's sha256 against the manifest (409
``adapter_digest_mismatch``: a blob changed under its content address).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.errors import Conflict, NotFound
from shared.lora.manifest import (
    CONFIG_FILE,
    DIGEST_CHARS,
    FILES,
    WEIGHTS_FILE,
    AdapterId,
    AdapterManifest,
    FileRef,
    check_base_model,
    check_name,
    parse_config,
)
from shared.models.fingerprint import ModelFingerprint, SourceRef
from shared.ports.blob import BlobStore, blob_key, check_segment, split_blob_key

_MANIFEST_MAX = 1024 * 1024


@dataclass(frozen=True)
class AdapterFiles:
    """A verified adapter, ready for ``backend.load_adapter``."""

    adapter_id: str
    manifest: AdapterManifest
    manifest_key: str
    config: dict[str, Any]
    weights: bytes


def not_found(adapter_id: str) -> NotFound:
    return NotFound(f"adapter {adapter_id!r} not found", code="adapter_not_found")


class AdapterStore:
    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs

    def save(
        self,
        tenant: str,
        namespace: str,
        *,
        name: str,
        version: str,
        files: Mapping[str, bytes],
        fingerprint: ModelFingerprint,
        sources: Sequence[SourceRef] = (),
        created_at: datetime | None = None,
        hyperparameters: Mapping[str, Any] | None = None,
        data_size: int | None = None,
        metrics: Mapping[str, float] | None = None,
        duration_s: float | None = None,
    ) -> str:
        """Stores an adapter (``files``: the two peft files' bytes); returns its id.

        ``hyperparameters``, ``data_size``, ``metrics`` and ``duration_s`` are the
        trainer's record of how it was made, kept in the manifest when given.
        """
        check_segment("tenant", tenant)
        check_segment("namespace", namespace)
        check_name("name", name)
        check_name("version", version)
        if set(files) != set(FILES):
            raise ValueError(f"an adapter is exactly the files {list(FILES)}")
        config = parse_config(files[CONFIG_FILE])
        # A trainer error caught at save time is cheaper than every replica refusing it.
        check_base_model(f"{name}@{version}", config, fingerprint, fingerprint)
        refs = {}
        for fname in FILES:
            ref = self.blobs.put(tenant, namespace, files[fname])
            refs[fname] = FileRef(ref.key, ref.digest, ref.size)
        manifest = AdapterManifest(
            name=name,
            version=version,
            tenant=tenant,
            namespace=namespace,
            fingerprint=fingerprint,
            sources=tuple(sources),
            created_at=(created_at or datetime.now(UTC)).isoformat(),
            files=refs,
            hyperparameters=hyperparameters,
            data_size=data_size,
            metrics=metrics,
            duration_s=duration_s,
        )
        mref = self.blobs.put(tenant, namespace, manifest.to_json())
        return str(AdapterId(name, version, mref.digest[:DIGEST_CHARS]))

    def save_dir(self, tenant: str, namespace: str, path: Path, **kwargs: Any) -> str:
        """``save`` from a ``save_pretrained`` directory."""
        files = {f: (path / f).read_bytes() for f in FILES}
        return self.save(tenant, namespace, files=files, **kwargs)

    def resolve(self, tenant: str, namespace: str, adapter_id: str) -> tuple[str, AdapterManifest]:
        """``(manifest key, manifest)`` of ``adapter_id`` in this tenant's namespace."""
        aid = AdapterId.parse(adapter_id)
        check_segment("tenant", tenant)
        check_segment("namespace", namespace)
        prefix = blob_key(tenant, namespace, aid.digest)
        for key, manifest in self._manifests(tenant, prefix):
            if (manifest.name, manifest.version, manifest.tenant, manifest.namespace) == (
                aid.name,
                aid.version,
                tenant,
                namespace,
            ):
                return key, manifest
        raise not_found(adapter_id)

    def _manifests(self, tenant: str, prefix: str) -> list[tuple[str, AdapterManifest]]:
        found = []
        for ref in self.blobs.list(tenant, prefix):
            if ref.size > _MANIFEST_MAX:  # weights or a KV cache, not a manifest
                continue
            try:
                found.append((ref.key, AdapterManifest.from_json(self.blobs.get(tenant, ref.key))))
            except Exception:  # any other small blob (KV manifests, configs): not ours
                continue
        return found

    def load(
        self, tenant: str, namespace: str, adapter_id: str, served: ModelFingerprint | None
    ) -> AdapterFiles:
        key, manifest = self.resolve(tenant, namespace, adapter_id)
        if served is None:
            raise Conflict("the serving model has no fingerprint", "adapter_fingerprint_mismatch")
        blobs: dict[str, bytes] = {}
        config: dict[str, Any] = {}
        for fname in FILES:  # config first: it is checked before the weights are read
            ref = manifest.files[fname]
            parts = split_blob_key(tenant, ref.key)
            if parts is None or parts[0] != namespace:
                raise not_found(adapter_id)  # a manifest pointing outside its namespace
            if fname == WEIGHTS_FILE:
                # The cheap check first: no weights are read for an adapter of another model.
                config = parse_config(blobs[CONFIG_FILE])
                check_base_model(adapter_id, config, manifest.fingerprint, served)
            data = self.blobs.get(tenant, ref.key)
            if hashlib.sha256(data).hexdigest() != ref.sha256 or len(data) != ref.size:
                raise Conflict(
                    f"adapter {adapter_id}: {fname} does not match its recorded digest",
                    code="adapter_digest_mismatch",
                )
            blobs[fname] = data
        return AdapterFiles(adapter_id, manifest, key, config, blobs[WEIGHTS_FILE])

    def delete(self, tenant: str, namespace: str, adapter_id: str) -> None:
        """Removes the manifest and its files (erasure); idempotent.

        Blobs are content-addressed, so two adapters with the same LoRA config share
        the config blob: a file still listed by another manifest of the namespace stays.
        """
        try:
            key, manifest = self.resolve(tenant, namespace, adapter_id)
        except NotFound:
            return
        self.blobs.delete(tenant, key)
        others = self._manifests(tenant, f"{tenant}/{namespace}/")
        shared = {f.key for k, m in others if k != key for f in m.files.values()}
        for ref in manifest.files.values():
            if ref.key not in shared:
                self.blobs.delete(tenant, ref.key)
