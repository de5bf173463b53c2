"""BlobStore on S3: ``s3://bucket`` (MinIO in distributed mode, or any S3 service).

One bucket per deployment, created on start if missing; objects are named
exactly as the filesystem adapter names its files (shared.ports.blob.blob_key:
``{tenant}/{namespace}/sha256/{digest}``), so blobs can move between the two
with a plain copy. Keys are accepted only in that shape (split_blob_key), which
keeps a tenant-scoped call inside ``{tenant}/`` whatever key it is given.

``put`` asks first whether the object exists (HEAD) and uploads only when it
does not: the same bytes are stored once. S3 has no portable "create only"
PUT, so two writers racing on one digest may both upload; they upload the same
bytes under a name derived from those bytes, so the object never changes
content, which is the immutability the port promises. Over plain HTTP the
client signs the payload's sha256 and the server checks it, so a corrupted
upload is refused rather than stored.

Errors reaching the service (refused connection, timeouts, 5xx after the
client's retries) raise shared.errors.Unavailable; the API answers 503.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
from collections.abc import Callable
from typing import TypeVar

import certifi
import urllib3
from minio import Minio
from minio.error import MinioException, S3Error

from shared.errors import ConfigError, NotFound, Unavailable
from shared.ports.blob import BlobRef, blob_key, check_segment, is_segment, split_blob_key
from shared.settings import BlobSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

# S3 bucket naming rules (3-63 chars, lower case, digits, dots, hyphens).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_MISSING = {"NoSuchKey", "NoSuchObject", "NotFound", "ResourceNotFound"}
# Transport failures of urllib3 (connection refused, timeouts, broken pipes)
# and of the socket layer; MinioException covers 5xx answers.
_DOWN = (urllib3.exceptions.HTTPError, OSError, MinioException)


def s3_bucket(url: str) -> str:
    """``s3://memgrid`` → ``memgrid``; anything after the bucket is refused."""
    scheme, sep, rest = url.partition("://")
    if scheme.lower() != "s3" or not sep:
        raise ConfigError(f"not an s3 URL (s3://bucket): {url!r}")
    bucket = rest.rstrip("/")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise ConfigError(f"bad S3 bucket name {bucket!r} in {url!r}")
    return bucket


def _http_client(settings: BlobSettings) -> urllib3.PoolManager:
    # minio's default client waits five minutes per request and retries five
    # times: a MinIO outage would hang API requests instead of answering 503.
    timeout = urllib3.Timeout(connect=min(settings.timeout_s, 5.0), read=settings.timeout_s)
    return urllib3.PoolManager(
        timeout=timeout,
        maxsize=16,  # threads that may talk to MinIO at once without reconnecting
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
    )


class S3BlobStore:
    def __init__(self, client: Minio, bucket: str, http: urllib3.PoolManager | None = None) -> None:
        self.client = client
        self.bucket = bucket
        self._http = http
        self._call(self._ensure_bucket, f"bucket {bucket}")

    @classmethod
    def from_settings(cls, settings: BlobSettings) -> S3BlobStore:
        bucket = s3_bucket(settings.url)
        http = _http_client(settings)
        client = Minio(
            settings.endpoint,
            access_key=settings.access_key.get_secret_value() or None,
            secret_key=settings.secret_key.get_secret_value() or None,
            secure=settings.secure,
            region=settings.region or None,
            http_client=http,
        )
        return cls(client, bucket, http)

    def _ensure_bucket(self) -> None:
        if self.client.bucket_exists(self.bucket):
            return
        try:
            self.client.make_bucket(self.bucket)
            log.info("created bucket %s", self.bucket)
        except S3Error as exc:
            # Another service created it between our check and our request.
            if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    def _call(self, fn: Callable[[], T], what: str) -> T:
        """Runs one S3 operation, turning service and transport failures into Unavailable."""
        try:
            return fn()
        except S3Error as exc:
            if exc.code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise Unavailable(f"blob store refused {what}: {exc.code}") from exc
            raise Unavailable(f"blob store failed on {what}: {exc.code}: {exc.message}") from exc
        except _DOWN as exc:
            raise Unavailable(f"blob store unreachable ({what}): {exc}") from exc

    def _stat(self, key: str) -> int | None:
        """The object's size, or None when it does not exist."""

        def stat() -> int | None:
            try:
                size = self.client.stat_object(self.bucket, key).size
            except S3Error as exc:
                if exc.code in _MISSING:
                    return None
                raise
            return int(size or 0)

        return self._call(stat, f"stat {key}")

    def put(self, tenant: str, namespace: str, data: bytes) -> BlobRef:
        check_segment("tenant", tenant)
        check_segment("namespace", namespace)
        digest = hashlib.sha256(data).hexdigest()
        key = blob_key(tenant, namespace, digest)
        ref = BlobRef(key=key, digest=digest, size=len(data))
        if self._stat(key) is not None:
            return ref  # same content, same key: stored once, never overwritten
        self._call(
            lambda: self.client.put_object(self.bucket, key, io.BytesIO(data), len(data)),
            f"put {key}",
        )
        return ref

    def get(self, tenant: str, key: str) -> bytes:
        if split_blob_key(tenant, key) is None:
            raise NotFound(f"blob {key!r} not found", code="blob_not_found")

        def read() -> bytes | None:
            try:
                response = self.client.get_object(self.bucket, key)
            except S3Error as exc:
                if exc.code in _MISSING:
                    return None
                raise
            try:
                return bytes(response.read())
            finally:
                response.close()
                response.release_conn()

        data = self._call(read, f"get {key}")
        if data is None:
            raise NotFound(f"blob {key!r} not found", code="blob_not_found")
        return data

    def exists(self, tenant: str, key: str) -> bool:
        if split_blob_key(tenant, key) is None:
            return False
        return self._stat(key) is not None

    def delete(self, tenant: str, key: str) -> None:
        if split_blob_key(tenant, key) is None:
            return
        # S3 answers a DELETE of a missing object with success: idempotent as is.
        self._call(lambda: self.client.remove_object(self.bucket, key), f"delete {key}")

    def list(self, tenant: str, prefix: str = "") -> list[BlobRef]:
        """Blobs of ``tenant`` whose key starts with ``prefix`` (a full key prefix,
        e.g. ``"t1/ns1/"``; empty means all of the tenant's), sorted by key."""
        if not is_segment(tenant):
            return []
        if prefix and not prefix.startswith(f"{tenant}/") and prefix != tenant:
            return []
        # Listing under "{tenant}/" at least keeps "t1" from seeing "t10/...".
        scan = prefix if prefix.startswith(f"{tenant}/") else f"{tenant}/"

        def scan_all() -> list[BlobRef]:
            refs = []
            for obj in self.client.list_objects(self.bucket, prefix=scan, recursive=True):
                key = obj.object_name
                if key is None or obj.is_dir or not key.startswith(prefix):
                    continue
                parts = split_blob_key(tenant, key)
                if parts is not None:
                    refs.append(BlobRef(key=key, digest=parts[1], size=int(obj.size or 0)))
            return refs

        return sorted(self._call(scan_all, f"list {scan}"), key=lambda r: r.key)

    def close(self) -> None:
        if self._http is not None:
            self._http.clear()
