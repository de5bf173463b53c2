"""Rendering the Helm chart in tests: helm template, and the rendered objects."""

from __future__ import annotations

import base64
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "infra" / "helm" / "memgrid"
PRODUCTION = CHART / "values-production.yaml"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion).
KUBE_VERSION = "1.27.0"
SERVICES = ("interface", "vault", "scheduler", "governance", "trainer", "inference")


@dataclass
class Rendered:
    docs: list[dict[str, Any]]

    def kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [d for d in self.kind(kind) if d["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
        return found[0]

    def maybe(self, kind: str, name: str) -> dict[str, Any] | None:
        found = [d for d in self.kind(kind) if d["metadata"]["name"] == name]
        return found[0] if found else None

    def config(self, name: str) -> dict[str, str]:
        data: dict[str, str] = self.get("ConfigMap", f"rel-memgrid-{name}")["data"]
        return data

    def container(self, name: str) -> dict[str, Any]:
        kind = "Job" if name == "setup" else "Deployment"
        pod = self.get(kind, f"rel-memgrid-{name}")["spec"]["template"]["spec"]
        container: dict[str, Any] = pod["containers"][0]
        return container

    def secret_data(self) -> dict[str, str]:
        data = self.get("Secret", "rel-memgrid-secrets")["data"]
        return {k: base64.b64decode(v).decode() for k, v in data.items()}


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120)


def helm_template(
    helm: str,
    *values_files: Path,
    sets: dict[str, str] | None = None,
    strings: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``sets``: --set (typed values); ``strings``: --set-string."""
    args = ["template", "rel", str(CHART), "--kube-version", KUBE_VERSION]
    for f in values_files:
        args += ["-f", str(f)]
    for key, value in (sets or {}).items():
        args += ["--set", f"{key}={value}"]
    for key, value in (strings or {}).items():
        args += ["--set-string", f"{key}={value}"]
    return run_helm(helm, *args)
