"""Adapter ids and the memgrid adapter manifest (``memgrid.adapter/1``); no torch here.

An adapter is three content-addressed blobs in its namespace: peft's
``adapter_config.json`` and ``adapter_model.safetensors`` (the bytes
``save_pretrained`` wrote, untouched) and this manifest: adapter name and version,
tenant, namespace, the base model's ``ModelFingerprint``, the source cubes it was
distilled from, ``created_at``, and each file's blob key, sha256 and size.

The adapter id is ``name@version+<first 16 hex of the manifest blob's sha256>``.
The manifest cannot hold its own digest, so it holds ``name`` and ``version`` and
the id is derived; since the manifest pins the file digests, the fingerprint and
the sources, the id is immutable like vLLM's: same id, same bytes. It is also a
lookup key: the digest prefix finds the manifest blob by a key-prefix listing in
the namespace (``AdapterStore.resolve``), no index needed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.errors import BadRequest, Conflict, MemgridError
from shared.models.fingerprint import ModelFingerprint, SourceRef

FORMAT = "memgrid.adapter/1"
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
FILES = (CONFIG_FILE, WEIGHTS_FILE)
DIGEST_CHARS = 16
_NAME = r"[A-Za-z0-9][A-Za-z0-9._\-]{0,99}"
_ID = re.compile(
    rf"^(?P<name>{_NAME})@(?P<version>{_NAME})\+(?P<digest>[0-9a-f]{{{DIGEST_CHARS}}})$"
)


def adapter_invalid(detail: str) -> MemgridError:
    return MemgridError(detail, [], 422, "adapter_invalid", "Unprocessable adapter")


def fingerprint_mismatch(adapter: str, have: ModelFingerprint, served: str) -> Conflict:
    return Conflict(
        f"adapter {adapter} was trained for {have.short()} and cannot be used with the "
        f"serving model {served}",
        code="adapter_fingerprint_mismatch",
    )


@dataclass(frozen=True)
class AdapterId:
    name: str
    version: str
    digest: str

    def __str__(self) -> str:
        return f"{self.name}@{self.version}+{self.digest}"

    @classmethod
    def parse(cls, value: str) -> AdapterId:
        m = _ID.match(value)
        if m is None:
            raise BadRequest(f"{value!r} is not an adapter id (name@version+digest)")
        return cls(m["name"], m["version"], m["digest"])


def check_name(kind: str, value: str) -> None:
    if not re.fullmatch(_NAME, value):
        raise BadRequest(f"adapter {kind} {value!r}: letters, digits, '.', '_', '-' only")


@dataclass(frozen=True)
class FileRef:
    key: str
    sha256: str
    size: int


@dataclass(frozen=True)
class AdapterManifest:
    name: str
    version: str
    tenant: str
    namespace: str
    fingerprint: ModelFingerprint
    sources: tuple[SourceRef, ...]
    created_at: str
    files: Mapping[str, FileRef]
    # Optional training record (trainer); absent in manifests written without it.
    hyperparameters: Mapping[str, Any] | None = None
    data_size: int | None = None
    metrics: Mapping[str, float] | None = None
    duration_s: float | None = None

    def to_json(self) -> bytes:
        body: dict[str, Any] = {
            "format": FORMAT,
            "name": self.name,
            "version": self.version,
            "tenant": self.tenant,
            "namespace": self.namespace,
            "base_model": self.fingerprint.to_dict(),
            "sources": [{"cube_id": s.cube_id, "version": s.version} for s in self.sources],
            "created_at": self.created_at,
            "files": {
                n: {"key": f.key, "sha256": f.sha256, "bytes": f.size}
                for n, f in sorted(self.files.items())
            },
        }
        # Only when set: a manifest without them keeps its bytes, hence its id.
        if self.hyperparameters is not None:
            body["hyperparameters"] = dict(self.hyperparameters)
        if self.data_size is not None:
            body["data_size"] = self.data_size
        if self.metrics is not None:
            body["metrics"] = {k: float(v) for k, v in self.metrics.items()}
        if self.duration_s is not None:
            body["duration_s"] = self.duration_s
        # Sorted keys: the same adapter gives the same bytes, hence the same id.
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> AdapterManifest:
        try:
            body = json.loads(data)
            if not isinstance(body, dict) or body.get("format") != FORMAT:
                raise adapter_invalid("not an adapter manifest")
            files = {
                str(n): FileRef(str(f["key"]), str(f["sha256"]), int(f["bytes"]))
                for n, f in body["files"].items()
            }
            if set(files) != set(FILES):
                raise adapter_invalid(f"an adapter manifest lists exactly {list(FILES)}")
            return cls(
                name=str(body["name"]),
                version=str(body["version"]),
                tenant=str(body["tenant"]),
                namespace=str(body["namespace"]),
                fingerprint=ModelFingerprint.from_dict(body["base_model"]),
                sources=tuple(
                    SourceRef(str(s["cube_id"]), int(s["version"])) for s in body["sources"]
                ),
                created_at=str(body["created_at"]),
                files=files,
                hyperparameters=_opt_dict(body.get("hyperparameters")),
                data_size=None if body.get("data_size") is None else int(body["data_size"]),
                metrics=(
                    None
                    if body.get("metrics") is None
                    else {str(k): float(v) for k, v in body["metrics"].items()}
                ),
                duration_s=None if body.get("duration_s") is None else float(body["duration_s"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise adapter_invalid(f"malformed adapter manifest: {exc}") from exc


def _opt_dict(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError("hyperparameters must be an object")
    return dict(value)


def parse_config(data: bytes) -> dict[str, Any]:
    """``adapter_config.json`` as a dict, checked for what serving needs (else 422)."""
    try:
        config = json.loads(data)
    except ValueError as exc:
        raise adapter_invalid(f"{CONFIG_FILE} is not JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise adapter_invalid(f"{CONFIG_FILE} must be a JSON object")
    if config.get("peft_type") != "LORA":
        raise adapter_invalid(
            f"only LoRA adapters are served (peft_type {config.get('peft_type')!r})"
        )
    r = config.get("r")
    if not isinstance(r, int) or isinstance(r, bool) or r < 1:
        raise adapter_invalid(f"{CONFIG_FILE}: r must be a positive integer")
    targets = config.get("target_modules")
    if not (isinstance(targets, str) and targets) and not (
        isinstance(targets, list) and targets and all(isinstance(t, str) for t in targets)
    ):
        raise adapter_invalid(f"{CONFIG_FILE}: target_modules must be a non-empty list or regex")
    if config.get("modules_to_save"):
        # Full copies of modules would replace base weights for every adapter: refused.
        raise adapter_invalid(f"{CONFIG_FILE}: modules_to_save is not supported")
    return config


def check_base_model(
    adapter: str, config: Mapping[str, Any], fp: ModelFingerprint, served: ModelFingerprint
) -> None:
    """409 ``adapter_fingerprint_mismatch`` unless the adapter was made for ``served``.

    Our manifest's fingerprint decides (weights and tokenizer hashes); peft's
    ``base_model_name_or_path``, when set, must also name the served model id
    (a path ending in it counts: trainers often save from a local directory).
    """
    base = config.get("base_model_name_or_path")
    named_ok = (
        not base
        or base == served.model_id
        or str(base).rstrip("/").endswith("/" + served.model_id.rsplit("/", 1)[-1])
    )
    if fp != served or not named_ok:
        raise fingerprint_mismatch(adapter, fp, served.short())
