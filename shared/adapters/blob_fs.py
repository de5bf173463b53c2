"""BlobStore on the local filesystem: ``file:///dir`` (embedded mode).

Layout mirrors the S3 keys: ``{root}/{tenant}/{namespace}/sha256/{digest}``.
A blob is written to a temporary file in its final directory, flushed, and
renamed into place, so a reader never sees a partial blob and a crash leaves at
most a ``.tmp-*`` file (which ``list`` ignores). Keys are accepted only in the
exact shape ``put`` produces (shared.ports.blob.split_blob_key), which rules out
traversal (``..``, absolute paths, backslashes) and reads outside the tenant's
prefix before any path is built.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from shared.errors import ConfigError, NotFound, Unavailable
from shared.ports.blob import (
    BlobRef,
    blob_key,
    check_segment,
    is_digest,
    is_segment,
    split_blob_key,
)
from shared.settings import BlobSettings


def fs_root(url: str) -> Path:
    """``file:///abs/dir`` → ``/abs/dir``; relative paths (``file://rel``) are refused."""
    parsed = urlparse(url)
    if parsed.scheme.lower() != "file":
        raise ConfigError(f"not a file URL: {url!r}")
    if parsed.netloc not in ("", "localhost"):
        raise ConfigError(f"file URL must be file:///absolute/path, got {url!r}")
    path = unquote(parsed.path)
    if not path.startswith("/"):
        raise ConfigError(f"file URL must be file:///absolute/path, got {url!r}")
    return Path(path)


class FileBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise Unavailable(f"cannot create blob directory {root}: {exc}") from exc

    @classmethod
    def from_settings(cls, settings: BlobSettings) -> FileBlobStore:
        return cls(fs_root(settings.url))

    def _path(self, tenant: str, key: str) -> Path:
        """The file of ``key``, or NotFound when the key is not a blob key of ``tenant``."""
        if split_blob_key(tenant, key) is None:
            raise NotFound(f"blob {key!r} not found", code="blob_not_found")
        return self.root.joinpath(*key.split("/"))

    def put(self, tenant: str, namespace: str, data: bytes) -> BlobRef:
        check_segment("tenant", tenant)
        check_segment("namespace", namespace)
        digest = hashlib.sha256(data).hexdigest()
        key = blob_key(tenant, namespace, digest)
        path = self.root.joinpath(*key.split("/"))
        ref = BlobRef(key=key, digest=digest, size=len(data))
        if path.exists():
            return ref  # same content, same key: stored once, never overwritten
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(tmp, 0o444)
                # Two writers racing on the same digest write the same bytes, so
                # whichever rename wins leaves identical content.
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            _fsync_dir(path.parent)
        except OSError as exc:
            raise Unavailable(f"cannot write blob {key}: {exc}") from exc
        return ref

    def get(self, tenant: str, key: str) -> bytes:
        path = self._path(tenant, key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"blob {key!r} not found", code="blob_not_found") from None
        except OSError as exc:
            raise Unavailable(f"cannot read blob {key}: {exc}") from exc

    def exists(self, tenant: str, key: str) -> bool:
        try:
            return self._path(tenant, key).is_file()
        except NotFound:
            return False

    def delete(self, tenant: str, key: str) -> None:
        try:
            path = self._path(tenant, key)
        except NotFound:
            return
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise Unavailable(f"cannot delete blob {key}: {exc}") from exc

    def list(self, tenant: str, prefix: str = "") -> list[BlobRef]:
        """Blobs of ``tenant`` whose key starts with ``prefix`` (a full key prefix,
        e.g. ``"t1/ns1/"``; empty means all of the tenant's), sorted by key."""
        if not is_segment(tenant):
            return []
        base = self.root / tenant
        if prefix and not prefix.startswith(f"{tenant}/") and prefix != tenant:
            return []
        refs = []
        for ns_dir in _subdirs(base):
            for path in _files(ns_dir / "sha256"):
                key = f"{tenant}/{ns_dir.name}/sha256/{path.name}"
                if key.startswith(prefix) and is_digest(path.name):
                    refs.append(BlobRef(key=key, digest=path.name, size=path.stat().st_size))
        return sorted(refs, key=lambda r: r.key)

    def close(self) -> None:
        return None


def _subdirs(path: Path) -> list[Path]:
    try:
        return [p for p in path.iterdir() if p.is_dir() and not p.is_symlink()]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _files(path: Path) -> list[Path]:
    try:
        return [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _fsync_dir(path: Path) -> None:
    # Makes the rename durable; not every platform can open a directory.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
