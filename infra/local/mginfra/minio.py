"""MinIO (S3-compatible object store), built from source with `go install` and cached.

MinIO community is source-only since October 2025. The Go module proxy reached from these
machines does not serve the RELEASE.2025-10-15T17-29-55Z tag (non-semver tags resolve to
pseudo-versions, and this one answers 403 "not available"); it serves the archived
repository's last commit, v0.0.0-20260212201848-7aac2a2c5b7c, which is that release plus four
bug-fix commits from 2025-10-23 and README changes. That is the default pin.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .common import (
    HOST,
    InfraError,
    Port,
    Server,
    cache_root,
    env,
    env_int,
    fresh_dir,
    require_tool,
    run_with_progress,
    say,
)

DEFAULT_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"
MODULE = "github.com/minio/minio"


class MinIO(Server):
    name = "minio"

    def version(self) -> str:
        return env("MGINFRA_MINIO_VERSION", DEFAULT_VERSION)

    @property
    def marker(self) -> str:  # type: ignore[override]
        return str(self.binary)

    def port(self) -> int:
        return env_int("MGINFRA_MINIO_PORT", 9000)

    def console_port(self) -> int:
        return env_int("MGINFRA_MINIO_CONSOLE_PORT", 9001)

    def ports(self) -> list[Port]:
        return [Port("minio S3 API", self.port()), Port("minio console", self.console_port())]

    def user(self) -> str:
        return env("MGINFRA_MINIO_ROOT_USER", "memgrid")

    def password(self) -> str:
        pw = env("MGINFRA_MINIO_ROOT_PASSWORD", "memgrid-dev-password")
        if len(pw) < 8:
            raise InfraError("MGINFRA_MINIO_ROOT_PASSWORD must be at least 8 characters")
        return pw

    def bucket(self) -> str:
        return env("MGINFRA_MINIO_BUCKET", "memgrid")

    # ------------------------------------------------------------------ install
    @property
    def install_dir(self) -> Path:
        return cache_root() / "minio" / self.version()

    @property
    def binary(self) -> Path:
        return self.install_dir / "bin" / "minio"

    def installed(self) -> bool:
        return (self.install_dir / "INSTALLED").exists() and self.binary.exists()

    def install(self) -> None:
        go = require_tool("go", "install Go >= 1.24 (the MinIO module needs it)")
        work = fresh_dir(self.install_dir.with_name(self.install_dir.name + ".partial"))
        say(
            "minio: building from source with `go install` (several minutes on 2 cores; "
            "the binary is cached afterwards)"
        )
        # A private module + build cache (about 2 GiB) that is deleted afterwards: only the
        # binary (about 150 MB) is kept. MGINFRA_MINIO_GO_CACHE=shared uses Go's own caches.
        private = env("MGINFRA_MINIO_GO_CACHE", "private") != "shared"
        go_env = {
            "GOBIN": str(work / "bin"),
            "CGO_ENABLED": "0",
            "GOFLAGS": (os.environ.get("GOFLAGS", "") + " -buildvcs=false").strip(),
            # modules come from the module proxy only: never `direct` from version control
            "GOPROXY": registry_only_goproxy(go),
            "GOPRIVATE": "",
            "GONOPROXY": "",
        }
        if private:
            go_env.update({"GOMODCACHE": str(work / "gomod"), "GOCACHE": str(work / "gocache")})
        try:
            run_with_progress(
                [go, "install", f"{MODULE}@{self.version()}"],
                work / "install.log",
                f"minio {self.version()}: go install",
                extra_env=go_env,
                cwd=work,
            )
        finally:
            if private:
                subprocess.run(
                    [go, "clean", "-modcache"],
                    env={**os.environ, **go_env},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    check=False,
                )
                shutil.rmtree(work / "gomod", ignore_errors=True)
                shutil.rmtree(work / "gocache", ignore_errors=True)
        if not (work / "bin" / "minio").exists():
            raise InfraError(f"minio install: go install produced no binary in {work / 'bin'}")
        (work / "INSTALLED").write_text(f"{MODULE}@{self.version()}\n")
        if self.install_dir.exists():
            shutil.rmtree(self.install_dir)
        work.rename(self.install_dir)

    # ------------------------------------------------------------------ run
    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def after_healthy(self) -> None:
        """Create the default bucket (idempotent) through the S3 API."""
        status, body = s3_request(
            "PUT", f"{HOST}:{self.port()}", f"/{self.bucket()}", self.user(), self.password()
        )
        if status == 200:
            say(f"minio: created bucket {self.bucket()!r}")
        elif status == 409 and b"BucketAlreadyOwnedByYou" in body:
            pass
        else:
            raise InfraError(
                f"minio: creating bucket {self.bucket()!r} -> HTTP {status}: {body[:300]!r}"
            )

    def command(self) -> list[str]:
        return [
            str(self.binary),
            "server",
            str(self.data_dir),
            "--address",
            f"{HOST}:{self.port()}",
            "--console-address",
            f"{HOST}:{self.console_port()}",
            "--anonymous",
        ]

    def environment(self) -> dict[str, str]:
        return {
            "MINIO_ROOT_USER": self.user(),
            "MINIO_ROOT_PASSWORD": self.password(),
            "MINIO_BROWSER": "on",
            "MINIO_UPDATE": "off",
            "MINIO_CALLHOME_ENABLE": "off",
            "MINIO_PROMETHEUS_AUTH_TYPE": "public",
        }

    def stop_timeout(self) -> float:
        return 20.0

    # ------------------------------------------------------------------ health
    def healthy(self) -> tuple[bool, str]:
        url = f"http://{HOST}:{self.port()}/minio/health/live"
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                if resp.status != 200:
                    return False, f"GET {url} -> {resp.status}"
        except (urllib.error.URLError, OSError) as exc:
            return False, f"GET {url} failed: {exc}"
        ready = f"http://{HOST}:{self.port()}/minio/health/ready"
        try:
            with urllib.request.urlopen(ready, timeout=3) as resp:
                return resp.status == 200, f"GET {ready} -> {resp.status}"
        except (urllib.error.URLError, OSError) as exc:
            return False, f"GET {ready} failed: {exc}"

    def connection(self) -> dict[str, Any]:
        endpoint = f"{HOST}:{self.port()}"
        return {
            "url": f"http://{endpoint}",
            "console": f"http://{HOST}:{self.console_port()}",
            "access_key": self.user(),
            "secret_key": self.password(),
            "bucket": self.bucket(),
            "env": {
                "MEMGRID_BLOB__URL": f"s3://{self.bucket()}",
                "MEMGRID_BLOB__ENDPOINT": endpoint,
                "MEMGRID_BLOB__ACCESS_KEY": self.user(),
                "MEMGRID_BLOB__SECRET_KEY": self.password(),
                "MEMGRID_BLOB__SECURE": "false",
            },
        }


def registry_only_goproxy(go: str) -> str:
    """The configured GOPROXY list without its `direct`/`off` entries."""
    configured = subprocess.run(
        [go, "env", "GOPROXY"], capture_output=True, text=True, check=False
    ).stdout.strip()
    proxies = [p for p in re.split(r"[,|]", configured) if p and p not in ("direct", "off")]
    return ",".join(proxies) or "https://proxy.golang.org"


def s3_request(
    method: str,
    endpoint: str,
    path: str,
    access_key: str,
    secret_key: str,
    region: str = "us-east-1",
) -> tuple[int, bytes]:
    """One AWS Signature V4 request with an empty body (enough to create a bucket)."""
    now = datetime.datetime.now(datetime.UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = now.strftime("%Y%m%d")
    payload_hash = hashlib.sha256(b"").hexdigest()
    headers = {"host": endpoint, "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date}
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            method,
            path,
            "",
            "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)),
            signed,
            payload_hash,
        ]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = ("AWS4" + secret_key).encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    req = urllib.request.Request(f"http://{endpoint}{path}", method=method, data=b"")
    for k, v in headers.items():
        if k != "host":
            req.add_header(k, v)
    req.add_header(
        "Authorization",
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
