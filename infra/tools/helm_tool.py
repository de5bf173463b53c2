#!/usr/bin/env python3
"""Installs the helm CLI for `make helm-test` (standard library only).

    python3 infra/tools/helm_tool.py install    # builds it once, prints its path
    python3 infra/tools/helm_tool.py path       # prints where it is (or would be)

Helm ships no Debian or PyPI package, and its release binaries are downloads
from outside the package registries, which CI cannot reach. So the official
source is built with `go install` from the Go module proxy, pinned to one
version, into ~/.cache/memgrid/tools/helm-<version>/. A cached build is
reused; the first one takes a few minutes (modules, then compiling).

The Kubernetes schemas for offline validation come from PyPI instead
(kubernetes-validate, in the `test` extra): see infra/helm/validate.py.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

HELM_VERSION = "v3.22.0"
HELM_MODULE = "helm.sh/helm/v3"


def tools_dir() -> Path:
    return Path.home() / ".cache" / "memgrid" / "tools"


def helm_path() -> Path:
    return tools_dir() / f"helm-{HELM_VERSION}" / "helm"


def find_go() -> str:
    for candidate in (shutil.which("go"), "/usr/local/go/bin/go", "/usr/lib/go/bin/go"):
        if candidate and Path(candidate).exists():
            return candidate
    raise SystemExit(
        "helm_tool: no Go toolchain found (go on PATH or /usr/local/go/bin/go); "
        "install one (e.g. apt-get install golang-go, Go 1.24 or newer) and run again"
    )


def install() -> Path:
    """Builds helm unless the pinned version is already there; returns its path."""
    target = helm_path()
    if target.exists() and _reports_version(target):
        return target
    go = find_go()
    bindir = target.parent
    bindir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GOBIN=str(bindir), CGO_ENABLED="0", GOFLAGS="-trimpath")
    # The version stamp is what `helm version` prints; -s -w drop debug symbols.
    ldflags = f"-s -w -X {HELM_MODULE}/internal/version.version={HELM_VERSION}"
    print(f"helm_tool: building helm {HELM_VERSION} with {go} (first time: minutes)", flush=True)
    subprocess.run(
        [go, "install", f"-ldflags={ldflags}", f"{HELM_MODULE}/cmd/helm@{HELM_VERSION}"],
        env=env,
        check=True,
    )
    if not _reports_version(target):
        raise SystemExit(f"helm_tool: {target} was built but does not report {HELM_VERSION}")
    return target


def _reports_version(helm: Path) -> bool:
    try:
        out = subprocess.run(
            [str(helm), "version", "--short"], capture_output=True, text=True, timeout=60
        ).stdout
    except OSError:
        return False
    return out.strip().startswith(HELM_VERSION)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["install", "path"])
    args = parser.parse_args(argv)
    print(install() if args.command == "install" else helm_path())
    return 0


if __name__ == "__main__":
    sys.exit(main())
