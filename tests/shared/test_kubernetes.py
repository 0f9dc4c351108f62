"""deploy/k8s as an operator would apply it, checked offline: each overlay rendered, every
manifest against the Kubernetes schemas (kubernetes-validate) and through checkov, and
the rules every workload must keep (probes, limits, security context, a disruption
budget, a network policy, an autoscaler, a migration Job per service)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import manifests
from tests.kustomize import build, containers_of

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
SERVICES = ("profile", "tiering", "outreach", "complaints")
KUBERNETES_VERSION = "1.32.0"  # the oldest minor still supported upstream


def tool(name: str) -> str:
    """A validator from the tools virtualenv (`make tools`; `make test` installs it)."""
    directory = Path(os.environ.get("CRM_DEPLOY_TOOLS", ROOT / ".venv-tools" / "bin"))
    path = directory / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make tools` (make test does)")
    return str(path)


def rendered(overlay: str) -> list[dict[str, Any]]:
    return build(K8S / "overlays" / overlay)


def of_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents if doc["kind"] == kind]


def test_generated_base_is_current() -> None:
    for service in manifests.SERVICES:
        committed = (K8S / "base" / f"{service.name}.yaml").read_text()
        assert committed == manifests.render(service), (
            f"deploy/k8s/base/{service.name}.yaml is stale: run `make manifests`"
        )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_validates_against_the_kubernetes_schemas(overlay: str, tmp_path: Path) -> None:
    documents = rendered(overlay)
    # Custom resources have no schema in kubernetes-validate: checked below by hand.
    core = [doc for doc in documents if doc["kind"] not in ("KafkaTopic", "ServiceMonitor")]
    path = tmp_path / f"{overlay}.yaml"
    path.write_text(yaml.safe_dump_all(core, sort_keys=False))
    result = subprocess.run(
        [tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, "--quiet", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ERROR" not in result.stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_passes_checkov(overlay: str, tmp_path: Path) -> None:
    path = tmp_path / f"{overlay}.yaml"
    path.write_text(yaml.safe_dump_all(rendered(overlay), sort_keys=False))
    result = subprocess.run(
        [
            tool("checkov"),
            "-f",
            str(path),
            "--framework",
            "kubernetes",
            "--skip-download",
            "--compact",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    # A finding is fixed or skipped with its reason in a `checkov.io/skip` annotation.
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Failed checks: 0" in result.stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_keeps_the_rules(overlay: str) -> None:
    documents = rendered(overlay)
    deployments = of_kind(documents, "Deployment")
    assert sorted(d["metadata"]["name"] for d in deployments) == sorted(SERVICES)
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        (server,) = pod["containers"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert server[probe]["httpGet"]["port"] == "http", (name, probe)
        assert server["readinessProbe"]["httpGet"]["path"] == "/readyz"
        for container in containers_of(deployment):
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert security["seccompProfile"]["type"] == "RuntimeDefault", name
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name
            tag = container["image"].partition(":")[2]
            assert tag and tag != "latest", container["image"]
        # Services never migrate at start: an init container waits for the Job's schema.
        assert [c["command"] for c in pod["initContainers"]] == [["crm", "wait-for-schema", name]]

        def selects(selector: dict[str, str], labels: dict[str, str] = labels) -> bool:
            return all(labels.get(key) == value for key, value in selector.items())

        budgets = [
            p
            for p in of_kind(documents, "PodDisruptionBudget")
            if selects(p["spec"]["selector"]["matchLabels"])
        ]
        assert len(budgets) == 1, name
        policies = [
            p
            for p in of_kind(documents, "NetworkPolicy")
            if p["spec"]["podSelector"].get("matchLabels")
            and selects(p["spec"]["podSelector"]["matchLabels"])
        ]
        assert len(policies) == 1, name
        assert set(policies[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        autoscalers = [
            h
            for h in of_kind(documents, "HorizontalPodAutoscaler")
            if h["spec"]["scaleTargetRef"]["name"] == name
        ]
        assert len(autoscalers) == 1, name
        assert "replicas" not in deployment["spec"]  # the autoscaler owns the count


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_reaches_only_its_database_kafka_and_dns(overlay: str) -> None:
    documents = rendered(overlay)
    (deny,) = [p for p in of_kind(documents, "NetworkPolicy") if p["spec"]["podSelector"] == {}]
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
    for name in SERVICES:
        (policy,) = [
            p
            for p in of_kind(documents, "NetworkPolicy")
            if p["spec"]["podSelector"].get("matchLabels") == {"app.kubernetes.io/name": name}
        ]
        egress = policy["spec"]["egress"]
        ports = {port["port"] for rule in egress for port in rule["ports"]}
        assert {53, 9092, 5432} <= ports
        databases = [
            peer["podSelector"]["matchLabels"]
            for rule in egress
            for peer in rule["to"]
            if any(port["port"] == 5432 for port in rule["ports"])
        ]
        assert databases == [{"crm.io/database": name}]
        # Only outreach talks to the outside world (its SMS and email gateways).
        assert (443 in ports) == (name == "outreach")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_migration_job_per_service_and_release(overlay: str) -> None:
    documents = rendered(overlay)
    version = manifests.project_version()
    jobs = {job["metadata"]["name"]: job for job in of_kind(documents, "Job")}
    for name in SERVICES:
        job = jobs[f"{name}-migrate-{version.replace('.', '-')}"]
        (container,) = job["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["crm", "migrate", "--service", name]
        assert container["image"].endswith(f":{version}")
        env = {item["name"]: item for item in container["env"]}
        # Its own database's credentials only.
        secret = env[f"CRM_{name.upper()}_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert secret["name"] == f"crm-{name}-db"
        assert not any(
            key.endswith("_DATABASE_URL") and key != f"CRM_{name.upper()}_DATABASE_URL"
            for key in env
        )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingress_routes_a_path_to_every_service(overlay: str) -> None:
    (ingress,) = of_kind(rendered(overlay), "Ingress")
    paths = {
        path["backend"]["service"]["name"]: path["path"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert paths == {name: f"/{name}(/|$)(.*)" for name in SERVICES}
    for deployment in of_kind(rendered(overlay), "Deployment"):
        name = deployment["metadata"]["name"]
        env = {e["name"]: e.get("value") for e in containers_of(deployment)[-1]["env"]}
        assert env[f"CRM_{name.upper()}_ROOT_PATH"] == f"/{name}"


def test_topics_are_part_of_every_overlay_and_sized_for_its_cluster() -> None:
    base_topics = [d for d in build(K8S / "base") if d["kind"] == "KafkaTopic"]
    for overlay, replicas in (("dev", 1), ("prod", 3)):
        topics = of_kind(rendered(overlay), "KafkaTopic")
        assert len(topics) == len(base_topics) > 0
        for topic in topics:
            assert topic["apiVersion"] == "kafka.strimzi.io/v1beta2"
            assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "crm"
            assert topic["spec"]["replicas"] == replicas
            assert isinstance(topic["spec"]["partitions"], int)
            assert int(topic["spec"]["config"]["min.insync.replicas"]) <= replicas


def test_prometheus_scrapes_every_service_in_prod_only() -> None:
    assert of_kind(rendered("dev"), "ServiceMonitor") == []
    (monitor,) = of_kind(rendered("prod"), "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {"port": "http", "path": "/metrics", "interval": "30s"}
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = of_kind(rendered("prod"), "Service")
    assert len(services) == len(SERVICES)
    for service in services:
        assert all(service["metadata"]["labels"].get(k) == v for k, v in selector.items())
        assert service["spec"]["ports"][0]["name"] == "http"


def test_prod_verifies_kafka_with_the_cluster_ca() -> None:
    for deployment in of_kind(rendered("prod"), "Deployment"):
        server = deployment["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in server["env"]}
        mounts = {m["name"]: m["mountPath"] for m in server["volumeMounts"]}
        assert env["CRM_KAFKA_SSL_CAFILE"].startswith(mounts["kafka-ca"])
    (config,) = of_kind(rendered("prod"), "ConfigMap")
    assert config["data"]["CRM_KAFKA_SECURITY_PROTOCOL"] == "SSL"
