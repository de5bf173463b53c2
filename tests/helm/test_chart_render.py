"""The Helm chart, rendered with helm template: what each service gets, secrets
kept out of ConfigMaps, replicas and autoscaling, network policies, the setup
hook, Ray by values, and every manifest valid against the Kubernetes schemas."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pytest

from shared.settings import load_settings, unknown_env_settings
from tests.helm.chart import (
    KUBE_VERSION,
    SERVICES,
    Rendered,
    helm_template,
)

pytestmark = pytest.mark.helm

Render = Callable[..., Rendered]
SECRETISH = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|ACCESS_KEY|ADMIN_KEY")


def _env_names(container: dict[str, Any]) -> list[str]:
    return [e["name"] for e in container.get("env", [])]


def _secret_refs(container: dict[str, Any]) -> dict[str, str]:
    return {
        e["name"]: e["valueFrom"]["secretKeyRef"]["key"]
        for e in container.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }


# --- services and settings ----------------------------------------------------------


def test_one_deployment_per_service_each_running_memgrid_serve(default: Rendered) -> None:
    for name in SERVICES:
        container = default.container(name)
        assert container["command"] == ["memgrid", "serve", "--service", name]
        assert container["image"] == f"memgrid-{name}:0.1.0"
        port = container["ports"][0]["containerPort"]
        service = default.get("Service", f"rel-memgrid-{name}")
        assert service["spec"]["ports"][0]["port"] == port
        assert service["spec"]["selector"]["app.kubernetes.io/component"] == name
    bundled = {"rel-memgrid-kafka", "rel-memgrid-neo4j", "rel-memgrid-minio"}
    assert bundled <= {d["metadata"]["name"] for d in default.kind("Deployment")}


def test_probes_use_healthz_and_a_readiness_that_checks_dependencies(default: Rendered) -> None:
    for name in SERVICES:
        c = default.container(name)
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
        # /readyz asks each service's dependencies (vault, Neo4j, the scheduler's
        # restored tables, governance's writable log and assigned partitions).
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"


@pytest.mark.parametrize("values", ["default", "production"])
def test_every_setting_the_chart_sets_is_a_real_settings_field_and_loads(
    values: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered: Rendered = request.getfixturevalue(values)
    for name in (*SERVICES, "setup"):
        container = rendered.container(name)
        # A container's own env holds secret references only; settings are in its ConfigMap.
        inline = [e["name"] for e in container["env"] if "valueFrom" not in e]
        assert not [n for n in inline if n.startswith("MEMGRID_")], name
        env = dict(rendered.config(name))
        env.update({n: "x-secret-value" for n in _secret_refs(container)})
        assert all(n.startswith("MEMGRID_") for n in env)
        assert unknown_env_settings(env) == [], name
        # The values must parse too (ports, booleans, URLs): as the service would.
        for key in [k for k in os.environ if k.startswith("MEMGRID_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = load_settings()
        assert settings.mode == "distributed"
        assert settings.host == "0.0.0.0"


def test_each_service_reaches_the_others_by_their_services(default: Rendered) -> None:
    interface = default.config("interface")
    assert interface["MEMGRID_VAULT__URL"] == "http://rel-memgrid-vault:8091"
    assert interface["MEMGRID_SCHEDULER__URL"] == "http://rel-memgrid-scheduler:6066"
    assert interface["MEMGRID_GOVERNANCE__URL"] == "http://rel-memgrid-governance:6067"
    assert interface["MEMGRID_INFERENCE__SERVE__URL"] == "http://rel-memgrid-inference:8093"
    assert default.config("vault")["MEMGRID_GRAPH__URL"] == "bolt://rel-memgrid-neo4j:7687"
    for name in SERVICES:
        assert default.config(name)["MEMGRID_BUS__URL"] == "kafka://rel-memgrid-kafka:9092"
    assert default.config("trainer")["MEMGRID_BLOB__ENDPOINT"] == "rel-memgrid-minio:9000"
    # Least privilege: only the vault (and setup) know where Neo4j is.
    assert [n for n in SERVICES if "MEMGRID_GRAPH__URL" in default.config(n)] == ["vault"]


def test_env_from_values_reaches_every_service_or_one_and_the_service_wins(
    render: Render,
) -> None:
    r = render(
        strings={
            "settings.extra.MEMGRID_LIMITS__MAX_TAGS": "9",
            "settings.extra.MEMGRID_SEARCH__RRF_K": "30",
            "services.vault.env.MEMGRID_SEARCH__RRF_K": "90",
        },
        sets={"settings.logLevel": "debug"},
    )
    for name in SERVICES:
        assert r.config(name)["MEMGRID_LIMITS__MAX_TAGS"] == "9"
        assert r.config(name)["MEMGRID_LOG_LEVEL"] == "debug"
        assert r.config(name)["MEMGRID_SEARCH__RRF_K"] == ("90" if name == "vault" else "30")


def test_a_config_change_rolls_the_pods_of_that_service_only(render: Render) -> None:
    def checksums(r: Rendered) -> dict[str, str]:
        return {
            n: r.get("Deployment", f"rel-memgrid-{n}")["spec"]["template"]["metadata"][
                "annotations"
            ]["checksum/config"]
            for n in SERVICES
        }

    before = checksums(render())
    after = checksums(
        render(strings={"services.scheduler.env.MEMGRID_SCHEDULER__TICK_INTERVAL_S": "5"})
    )
    assert [n for n in SERVICES if before[n] != after[n]] == ["scheduler"]


# --- secrets --------------------------------------------------------------------


SENTINELS = {
    "secrets.adminKey": "sentinel-admin-0001",
    "secrets.vaultServiceToken": "sentinel-vault-0002",
    "secrets.governanceServiceToken": "sentinel-gov-0003",
    "secrets.inferenceServiceToken": "sentinel-inf-0004",
    "secrets.neo4jPassword": "sentinel-neo4j-0005",
    "secrets.s3AccessKey": "sentinel-s3a-0006",
    "secrets.s3SecretKey": "sentinel-s3s-0007",
    "secrets.openaiApiKey": "sentinel-openai-0008",
}


def test_secrets_are_only_in_the_secret_never_inline(render: Render) -> None:
    r = render(strings=SENTINELS)
    data = r.secret_data()
    assert set(SENTINELS.values()) == set(data.values())
    for doc in r.docs:
        if doc["kind"] == "Secret":
            continue
        text = repr(doc)
        for value in SENTINELS.values():
            assert value not in text, f"{doc['kind']}/{doc['metadata']['name']} holds a secret"
    for cm in r.kind("ConfigMap"):
        assert not [k for k in cm["data"] if SECRETISH.search(k)], cm["metadata"]["name"]


def test_each_service_gets_only_the_secrets_it_uses(default: Rendered) -> None:
    refs = {n: set(_secret_refs(default.container(n))) for n in (*SERVICES, "setup")}
    assert "MEMGRID_ADMIN_KEY" in refs["interface"]
    assert [n for n, r in refs.items() if "MEMGRID_ADMIN_KEY" in r] == ["interface"]
    assert [n for n, r in refs.items() if "MEMGRID_GRAPH__PASSWORD" in r] == ["vault", "setup"]
    assert refs["governance"] == {"MEMGRID_GOVERNANCE__SERVICE_TOKEN"}
    assert "MEMGRID_BLOB__SECRET_KEY" not in refs["interface"] | refs["vault"]
    # Interface and vault share the vault's token; interface and inference theirs.
    keys = {n: _secret_refs(default.container(n)) for n in SERVICES}
    assert keys["interface"]["MEMGRID_VAULT__SERVICE_TOKEN"] == "vault-service-token"
    assert keys["vault"]["MEMGRID_VAULT__SERVICE_TOKEN"] == "vault-service-token"
    assert (
        keys["inference"]["MEMGRID_INFERENCE__SERVE__SERVICE_TOKEN"]
        == (keys["interface"]["MEMGRID_INFERENCE__SERVE__SERVICE_TOKEN"])
    )


def test_generated_secrets_fill_what_is_not_given(default: Rendered) -> None:
    data = default.secret_data()
    # Bundled servers: their credentials are generated with the rest.
    for key in ("admin-key", "vault-service-token", "neo4j-password", "s3-secret-key"):
        assert len(data[key]) == 40
    assert "openai-api-key" not in data


def test_an_existing_secret_replaces_the_release_secret(production: Rendered) -> None:
    assert production.kind("Secret") == []
    for name in (*SERVICES, "setup"):
        for e in production.container(name)["env"]:
            if "secretKeyRef" in e.get("valueFrom", {}):
                assert e["valueFrom"]["secretKeyRef"]["name"] == "memgrid-secrets"


def test_external_servers_need_their_credentials(helm: str) -> None:
    result = helm_template(
        helm,
        sets={"bundled.neo4j.enabled": "false"},
        strings={"neo4j.url": "bolt://neo4j.db:7687"},
    )
    assert result.returncode != 0
    assert "neo4j-password is required" in result.stderr


@pytest.mark.parametrize(
    ("sets", "strings", "message"),
    [
        ({"bundled.kafka.enabled": "false"}, {}, "kafka.url is required"),
        ({}, {"settings.extra.MEMGRID_GRAPH__PASSWORD": "x"}, "MEMGRID_GRAPH__PASSWORD"),
        ({}, {"services.vault.env.MEMGRID_ADMIN_KEY": "x"}, "MEMGRID_ADMIN_KEY"),
        ({}, {"settings.extra.LOG_LEVEL": "x"}, "LOG_LEVEL"),
        ({"services.scheduler.replicas": "13"}, {}, "maximum"),
        ({"services.vault.replica": "2"}, {}, "replica"),
        ({}, {"kafka.url": "http://kafka:9092"}, "kafka/url"),
        ({"settings.telemetry.sampleRatio": "1.5"}, {}, "sampleRatio"),
    ],
)
def test_bad_values_are_refused_with_the_field_named(
    helm: str, sets: dict[str, str], strings: dict[str, str], message: str
) -> None:
    result = helm_template(helm, sets=sets, strings=strings)
    assert result.returncode != 0
    assert message in result.stderr


# --- replicas, autoscaling, disruption --------------------------------------------


def test_replicas_come_from_values(render: Render, default: Rendered) -> None:
    for name in ("interface", "vault", "scheduler", "trainer", "inference"):
        assert default.get("Deployment", f"rel-memgrid-{name}")["spec"]["replicas"] == 1
    r = render(sets={"services.interface.replicas": "4", "services.scheduler.replicas": "6"})
    assert r.get("Deployment", "rel-memgrid-interface")["spec"]["replicas"] == 4
    assert r.get("Deployment", "rel-memgrid-scheduler")["spec"]["replicas"] == 6
    governance = r.get("Deployment", "rel-memgrid-governance")["spec"]
    assert governance["replicas"] == 1  # one writer per audit log, whatever the values
    assert governance["strategy"]["type"] == "Recreate"
    assert default.kind("HorizontalPodAutoscaler") == []


def test_autoscaling_leaves_replicas_to_the_hpa(render: Render, production: Rendered) -> None:
    hpa = production.get("HorizontalPodAutoscaler", "rel-memgrid-interface")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 20)
    assert hpa["scaleTargetRef"]["name"] == "rel-memgrid-interface"
    assert "replicas" not in production.get("Deployment", "rel-memgrid-interface")["spec"]
    r = render(sets={"services.inference.autoscaling.enabled": "true"})
    hpa = r.get("HorizontalPodAutoscaler", "rel-memgrid-inference")["spec"]
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    assert "replicas" not in r.get("Deployment", "rel-memgrid-inference")["spec"]


def test_rolling_updates_never_drop_below_the_replicas(default: Rendered) -> None:
    for name in ("interface", "vault", "scheduler", "trainer", "inference"):
        strategy = default.get("Deployment", f"rel-memgrid-{name}")["spec"]["strategy"]
        assert strategy["rollingUpdate"]["maxUnavailable"] == 0
    names = {p["metadata"]["name"] for p in default.kind("PodDisruptionBudget")}
    assert names == {f"rel-memgrid-{n}" for n in ("interface", "vault", "scheduler", "inference")}


# --- security ---------------------------------------------------------------------


def test_pods_run_unprivileged_without_api_tokens(production: Rendered) -> None:
    assert production.kind("Role") == production.kind("RoleBinding") == []
    assert production.kind("ClusterRole") == []
    for sa in production.kind("ServiceAccount"):
        assert sa["automountServiceAccountToken"] is False
    for name in (*SERVICES, "setup"):
        kind = "Job" if name == "setup" else "Deployment"
        pod = production.get(kind, f"rel-memgrid-{name}")["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == f"rel-memgrid-{name}"
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        sc = pod["containers"][0]["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert pod["containers"][0]["resources"]["requests"]["memory"]


def _policy(r: Rendered, target: str) -> dict[str, Any]:
    spec: dict[str, Any] = r.get("NetworkPolicy", f"rel-memgrid-{target}")["spec"]
    return spec


def _peers(rule: dict[str, Any]) -> set[str]:
    return {
        p["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for p in rule.get("from", [])
        if "podSelector" in p and "app.kubernetes.io/component" in p["podSelector"]["matchLabels"]
    }


def test_network_policies_admit_only_the_callers(default: Rendered, production: Rendered) -> None:
    deny = default.get("NetworkPolicy", "rel-memgrid-default-deny")["spec"]
    assert deny["policyTypes"] == ["Ingress"] and "ingress" not in deny
    vault = _policy(default, "vault")["ingress"]
    assert _peers(vault[0]) == {"interface", "scheduler", "trainer", "inference", "ray-worker"}
    assert vault[0]["ports"] == [{"port": 8091}]
    assert _policy(default, "trainer")["ingress"] == []
    assert _peers(_policy(default, "neo4j")["ingress"][0]) == {"vault", "setup"}
    # Only the public API is open to all (default), and only when apiFrom is empty.
    for policy in default.kind("NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []):
            if "from" not in rule:
                assert policy["metadata"]["name"] == "rel-memgrid-interface"
    api = _policy(production, "interface")["ingress"]
    assert api[0]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ingress-nginx"
    }
    assert all(
        "from" in rule
        for p in production.kind("NetworkPolicy")
        for rule in p["spec"].get("ingress", [])
    )
    # Prometheus may scrape every service port.
    for name in SERVICES:
        rules = _policy(production, name)["ingress"]
        assert any(
            r["from"][0].get("namespaceSelector", {}).get("matchLabels")
            == {"kubernetes.io/metadata.name": "monitoring"}
            for r in rules
        ), name


# --- setup hook, servers, Ray ----------------------------------------------------------


def test_setup_job_runs_memgrid_setup_on_install_and_before_upgrades(
    default: Rendered,
) -> None:
    job = default.get("Job", "rel-memgrid-setup")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,pre-upgrade"
    c = default.container("setup")
    assert c["command"][:2] == ["memgrid", "setup"]
    assert c["image"] == "memgrid-vault:0.1.0"
    cfg = default.config("setup")
    assert cfg["MEMGRID_GRAPH__URL"] == "bolt://rel-memgrid-neo4j:7687"
    assert cfg["MEMGRID_BLOB__URL"] == "s3://memgrid"
    # The hook's ConfigMap and account exist before the Job (lower weight).
    for kind in ("ConfigMap", "ServiceAccount"):
        meta = default.get(kind, "rel-memgrid-setup")["metadata"]["annotations"]
        assert int(meta["helm.sh/hook-weight"]) < 0


def test_production_uses_external_servers_and_a_ray_cluster(production: Rendered) -> None:
    names = {d["metadata"]["name"] for d in production.docs}
    assert not names & {"rel-memgrid-kafka", "rel-memgrid-neo4j", "rel-memgrid-minio"}
    assert production.config("vault")["MEMGRID_GRAPH__URL"] == "neo4j+s://neo4j.data:7687"
    assert production.config("trainer")["MEMGRID_BLOB__SECURE"] == "true"
    assert production.config("setup")["MEMGRID_BUS__REPLICATION_FACTOR"] == "3"
    # Traces to a collector, one in ten sampled, in every service alike.
    for name in SERVICES:
        assert production.config(name)["MEMGRID_TELEMETRY__EXPORTER"] == "otlp"
        assert production.config(name)["MEMGRID_TELEMETRY__SAMPLE_RATIO"] == "0.1"
    # Ray: the inference pod is the head, workers join it, the trainer uses Ray Client.
    head = production.container("inference")
    assert "ray start --head" in head["args"][0]
    assert "exec memgrid serve --service inference" in head["args"][0]
    assert production.config("inference")["MEMGRID_INFERENCE__SERVE__RAY_ADDRESS"] == "auto"
    assert production.config("trainer")["MEMGRID_TRAINER__RAY_ADDRESS"] == (
        "ray://rel-memgrid-inference:10001"
    )
    worker = production.get("Deployment", "rel-memgrid-ray-worker")
    command = worker["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "--address=rel-memgrid-inference:6379" in command
    hpas = {h["spec"]["scaleTargetRef"]["name"] for h in production.kind("HorizontalPodAutoscaler")}
    assert hpas == {"rel-memgrid-interface", "rel-memgrid-ray-worker"}
    ports = {p["name"] for p in production.get("Service", "rel-memgrid-inference")["spec"]["ports"]}
    assert ports == {"http", "ray-gcs", "ray-client", "ray-dashboard"}
    ingress = production.get("Ingress", "rel-memgrid")["spec"]
    assert ingress["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == (
        "rel-memgrid-interface"
    )


# --- Kubernetes schemas ----------------------------------------------------------------


@pytest.mark.parametrize("values", ["default", "production"])
@pytest.mark.parametrize("kube", [KUBE_VERSION, kubernetes_validate.latest_version()])
def test_every_manifest_is_valid_against_the_kubernetes_schemas(
    values: str, kube: str, request: pytest.FixtureRequest
) -> None:
    rendered: Rendered = request.getfixturevalue(values)
    assert len(rendered.docs) > 30
    for doc in rendered.docs:
        # strict: unknown fields are errors too (a typo would be dropped by the API server).
        kubernetes_validate.validate(doc, kube, strict=True)


def test_the_schema_check_catches_unknown_fields(default: Rendered) -> None:
    doc = default.get("Deployment", "rel-memgrid-vault")
    broken = {**doc, "spec": {**doc["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBE_VERSION, strict=True)


def test_a_service_image_can_be_pinned_for_a_staged_upgrade(render: Render) -> None:
    r = render(
        strings={
            "image.tag": "0.2.0",
            "services.interface.imageTag": "0.1.0",
            "services.inference.imageTag": "0.1.0",
        }
    )
    tags = {n: r.container(n)["image"].rsplit(":", 1)[1] for n in (*SERVICES, "setup")}
    assert tags == {
        "interface": "0.1.0",
        "vault": "0.2.0",
        "scheduler": "0.2.0",
        "governance": "0.2.0",
        "trainer": "0.2.0",
        "inference": "0.1.0",
        "setup": "0.2.0",
    }
