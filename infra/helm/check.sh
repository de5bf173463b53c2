#!/usr/bin/env bash
# The chart's static checks (make helm-test runs this, then tests/helm):
#   helm lint --strict with the default and the production-like values,
#   helm template with both into build/helm/, every manifest validated offline,
#   strictly (unknown fields are errors), against the Kubernetes JSON schemas that
#   kubernetes-validate bundles, for the oldest Kubernetes the chart supports and
#   the newest schemas known; and hadolint on infra/docker/Dockerfile.
# Usage: infra/helm/check.sh VENV_BIN   (helm: infra/tools/helm_tool.py)
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:?usage: infra/helm/check.sh VENV_BIN}
helm=$(python3 infra/tools/helm_tool.py path)
chart=infra/helm/memgrid
out=build/helm
kube_min=$(sed -n 's/^kubeVersion: ">=\([0-9.]*\)-0"$/\1/p' "$chart/Chart.yaml")
kube_new=$("$bin/python" -c 'import kubernetes_validate as k; print(k.latest_version())')
mkdir -p "$out"
for values in default production; do
  args=()
  [[ $values == production ]] && args=(-f "$chart/values-production.yaml")
  "$helm" lint --strict --kube-version "$kube_min" "${args[@]}" "$chart"
  "$helm" template memgrid "$chart" --kube-version "$kube_min" "${args[@]}" > "$out/$values.yaml"
  for kube in "$kube_min" "$kube_new"; do
    "$bin/kubernetes-validate" --strict --quiet -k "$kube" "$out/$values.yaml"
    echo "helm-test: $values values: $(grep -c '^kind:' "$out/$values.yaml") manifests valid for Kubernetes $kube"
  done
done
"$bin/hadolint" --config infra/docker/hadolint.yaml infra/docker/Dockerfile
echo "helm-test: infra/docker/Dockerfile passes hadolint"
