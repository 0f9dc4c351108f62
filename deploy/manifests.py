"""Write deploy/k8s/base/<service>.yaml: each service's Kubernetes resources from one table.

The four services differ only in name, port, size and what they reach outside the
cluster, so their manifests are generated here rather than kept as four hand-edited
copies; `tests/shared/test_kubernetes.py` fails when the committed files are stale.
Usage: `make manifests`. Overlays (deploy/k8s/overlays/) adjust what differs per
environment: replicas, image tag, sizes.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "deploy" / "k8s" / "base"
NAMESPACE = "crm"
IMAGE = "ghcr.io/crm-retention/crm-retention"
UID = 10001


@dataclass(frozen=True)
class Size:
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    size: Size
    min_replicas: int
    max_replicas: int
    why_size: str
    # Outside the cluster, beyond its database and Kafka (outreach's SMS/email gateways).
    reaches_internet: bool = False


# Sizes from bench/RESULTS.md (2 cores of the bench machine): what one replica sustains
# there, with headroom. Memory limits hold the largest in-process work each does.
SERVICES = (
    Service(
        "profile",
        8001,
        Size("250m", "1", "256Mi", "512Mi"),
        2,
        6,
        "a purchase CSV import runs ~20,000 rows/s on one core; requests are light",
    ),
    Service(
        "tiering",
        8002,
        Size("500m", "2", "1Gi", "3Gi"),
        2,
        4,
        "a 1M-customer re-rank takes ~10 s on one core and holds its columns in memory",
    ),
    Service(
        "outreach",
        8003,
        Size("250m", "2", "512Mi", "1Gi"),
        2,
        6,
        "the daily planning of 1M customers takes ~45 s in 2 processes (~200 MiB each, "
        "CRM_OUTREACH_PLANNING_PROCESSES); ~1,800 deliveries/s",
        reaches_internet=True,
    ),
    Service(
        "complaints",
        8004,
        Size("250m", "1", "256Mi", "512Mi"),
        2,
        6,
        "statistics over 1M closed complaints answer in < 1 s; timers cost nothing idle",
    ),
)


def project_version() -> str:
    version: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    return version


def _labels(service: Service, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": service.name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "crm",
    }


def _meta(name: str, labels: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": NAMESPACE, "labels": labels, **extra}


CONTAINER_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": UID,
    "runAsGroup": UID,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": UID,
    "runAsGroup": UID,
    "fsGroup": UID,
    "seccompProfile": {"type": "RuntimeDefault"},
}
# Checkov findings that do not apply, each with why (read by checkov from the annotation).
CHECKOV_SKIPS = {
    "checkov.io/skip1": "CKV_K8S_35=settings come from the environment (pydantic-settings); "
    "the Secret is mounted by reference, never written into the manifest",
    "checkov.io/skip2": "CKV_K8S_43=the overlay pins the release tag; a digest is set by "
    "the release pipeline that pushes the image",
}


def _env(service: Service) -> list[dict[str, Any]]:
    return [
        {
            "name": "CRM_API_KEYS",
            "valueFrom": {"secretKeyRef": {"name": "crm-api-keys", "key": "CRM_API_KEYS"}},
        },
        {
            "name": f"CRM_{service.name.upper()}_DATABASE_URL",
            "valueFrom": {"secretKeyRef": {"name": f"crm-{service.name}-db", "key": "url"}},
        },
        {"name": f"CRM_{service.name.upper()}_PORT", "value": str(service.port)},
        {"name": f"CRM_{service.name.upper()}_ROOT_PATH", "value": f"/{service.name}"},
    ]


def _container(service: Service, name: str, command: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "image": f"{IMAGE}:{project_version()}",
        "imagePullPolicy": "Always",
        "command": command,
        "envFrom": [{"configMapRef": {"name": "crm-config"}}],
        "env": _env(service),
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - an emptyDir
    }


def _resources(size: Size) -> dict[str, Any]:
    return {
        "requests": {"cpu": size.cpu_request, "memory": size.memory_request},
        "limits": {"cpu": size.cpu_limit, "memory": size.memory_limit},
    }


def _pod(service: Service, containers: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "serviceAccountName": service.name,
        "automountServiceAccountToken": False,
        "securityContext": POD_SECURITY,
        "containers": containers,
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
    }


def deployment(service: Service) -> dict[str, Any]:
    labels = _labels(service, "server")
    server = _container(service, service.name, ["crm", "serve", service.name])
    server["ports"] = [{"name": "http", "containerPort": service.port}]
    server["resources"] = _resources(service.size)
    # Startup: migrations are not run here (the Job does); a slow first connection to
    # Kafka or the database gets 2 minutes before liveness may restart the pod.
    server["startupProbe"] = {
        "httpGet": {"path": "/healthz", "port": "http"},
        "periodSeconds": 2,
        "failureThreshold": 60,
    }
    server["readinessProbe"] = {
        "httpGet": {"path": "/readyz", "port": "http"},
        "periodSeconds": 10,
        "failureThreshold": 3,
    }
    server["livenessProbe"] = {
        "httpGet": {"path": "/healthz", "port": "http"},
        "periodSeconds": 20,
        "failureThreshold": 3,
    }
    wait = _container(service, "wait-for-schema", ["crm", "wait-for-schema", service.name])
    wait["resources"] = _resources(Size("50m", "200m", "128Mi", "256Mi"))
    pod = _pod(service, [server])
    pod["initContainers"] = [wait]
    pod["terminationGracePeriodSeconds"] = 30
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(service.name, labels, annotations=CHECKOV_SKIPS),
        "spec": {
            # No replicas: the HorizontalPodAutoscaler owns the count (minReplicas at first).
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": _selector(service)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(service.port),
                        "prometheus.io/path": "/metrics",
                        **CHECKOV_SKIPS,
                    },
                },
                "spec": pod,
            },
        },
    }


def _selector(service: Service) -> dict[str, str]:
    return {"app.kubernetes.io/name": service.name, "app.kubernetes.io/component": "server"}


def migration_job(service: Service) -> dict[str, Any]:
    """One migration run per release: the name carries the version, so a new release is a
    new Job (a Job's pod template cannot change) and the old one's record stays."""
    labels = _labels(service, "migration")
    migrate = _container(service, "migrate", ["crm", "migrate", "--service", service.name])
    migrate["resources"] = _resources(Size("100m", "500m", "256Mi", "512Mi"))
    pod = _pod(service, [migrate])
    pod["restartPolicy"] = "OnFailure"
    version = project_version().replace(".", "-")
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(f"{service.name}-migrate-{version}", labels, annotations=CHECKOV_SKIPS),
        "spec": {
            "backoffLimit": 6,
            "activeDeadlineSeconds": 1800,
            "ttlSecondsAfterFinished": 604800,
            "template": {
                "metadata": {"labels": labels, "annotations": CHECKOV_SKIPS},
                "spec": pod,
            },
        },
    }


def service_account(service: Service) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(service.name, _labels(service, "server")),
        "automountServiceAccountToken": False,
    }


def service_resource(service: Service) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(service.name, _labels(service, "server")),
        "spec": {
            "selector": _selector(service),
            "ports": [{"name": "http", "port": service.port, "targetPort": "http"}],
        },
    }


def autoscaler(service: Service) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(service.name, _labels(service, "server")),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": service.name},
            "minReplicas": service.min_replicas,
            # More replicas than a topic has partitions would sit idle as consumers.
            "maxReplicas": service.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                }
            ],
        },
    }


def disruption_budget(service: Service) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(service.name, _labels(service, "server")),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _selector(service)}},
    }


def network_policy(service: Service) -> dict[str, Any]:
    """Its pods (server and migration) reach DNS, Kafka and their own database only; only
    the ingress controller and Prometheus reach them."""
    egress: list[dict[str, Any]] = [
        {
            "to": [
                {"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}
            ],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        },
        {
            "to": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kafka"}},
                    "podSelector": {"matchLabels": {"strimzi.io/cluster": "crm"}},
                }
            ],
            "ports": [{"protocol": "TCP", "port": 9092}, {"protocol": "TCP", "port": 9093}],
        },
        {
            "to": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "databases"}
                    },
                    "podSelector": {"matchLabels": {"crm.io/database": service.name}},
                }
            ],
            "ports": [{"protocol": "TCP", "port": 5432}],
        },
    ]
    if service.reaches_internet:
        egress.append(
            {
                "to": [
                    {
                        "ipBlock": {
                            "cidr": "0.0.0.0/0",
                            "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"],
                        }
                    }
                ],
                "ports": [{"protocol": "TCP", "port": 443}],
            }
        )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(service.name, _labels(service, "server")),
        "spec": {
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": service.name}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": name}
                            }
                        }
                        for name in ("ingress-nginx", "monitoring")
                    ],
                    "ports": [{"protocol": "TCP", "port": service.port}],
                }
            ],
            "egress": egress,
        },
    }


def documents(service: Service) -> list[dict[str, Any]]:
    return [
        service_account(service),
        deployment(service),
        service_resource(service),
        autoscaler(service),
        disruption_budget(service),
        network_policy(service),
        migration_job(service),
    ]


class _NoAliases(yaml.SafeDumper):
    """Plain YAML: the same labels written out twice, not as an anchor and an alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render(service: Service) -> str:
    header = (
        f"# Generated by `make manifests` (deploy/manifests.py): do not edit by hand.\n"
        f"# {service.name}: size from bench/RESULTS.md: {service.why_size}.\n"
    )
    body = yaml.dump_all(documents(service), Dumper=_NoAliases, sort_keys=False, width=100)
    return header + body


def main() -> None:
    BASE.mkdir(parents=True, exist_ok=True)
    for service in SERVICES:
        (BASE / f"{service.name}.yaml").write_text(render(service))
    print(f"wrote {len(SERVICES)} files to {BASE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
