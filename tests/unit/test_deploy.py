"""deploy/: the Kubernetes manifests parse and describe every service the same way."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
import yaml

from shared.settings import SERVICE_PORTS
from shared.topology import SERVICES

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
MANIFESTS = sorted((REPO / "deploy").rglob("*.yaml")) + sorted((REPO / "deploy").rglob("*.yml"))


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@cache
def resources() -> dict[tuple[str, str], dict]:
    out = {}
    for path in MANIFESTS:
        for doc in documents(path):
            out[(doc["kind"], doc["metadata"]["name"])] = doc
    return out


def container(name: str) -> dict:
    [only] = resources()[("Deployment", name)]["spec"]["template"]["spec"]["containers"]
    return only


def test_there_are_manifests():
    assert K8S.is_dir() and MANIFESTS


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_manifest_parses_and_names_its_kind(path):
    docs = documents(path)
    assert docs, f"{path} holds no document"
    for doc in docs:
        assert isinstance(doc.get("apiVersion"), str) and doc["apiVersion"], doc
        assert isinstance(doc.get("kind"), str) and doc["kind"], doc
        assert isinstance(doc.get("metadata", {}).get("name"), str) and doc["metadata"]["name"], doc


def test_kustomization_applies_every_manifest_beside_it():
    listed = set(documents(K8S / "kustomization.yaml")[0]["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


def test_every_namespaced_resource_lives_in_the_m1_namespace():
    for (kind, name), doc in resources().items():
        if kind not in ("Namespace", "Kustomization"):
            assert doc["metadata"].get("namespace") == "m1", (kind, name)
    assert ("Namespace", "m1") in resources()


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_is_one_deployment_of_the_one_image_running_its_package(name):
    spec = container(name)
    assert spec["command"] == ["python", "-m", f"services.{name}"]
    assert len({container(s)["image"] for s in SERVICES}) == 1
    assert spec["ports"] == [{"name": "http", "containerPort": SERVICE_PORTS[name]}]


@pytest.mark.parametrize("name", SERVICES)
def test_each_deployment_is_probed_on_health(name):
    spec = container(name)
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert spec[probe]["httpGet"] == {"path": "/health", "port": "http"}, probe


@pytest.mark.parametrize("name", SERVICES)
def test_each_deployment_asks_for_modest_resources_and_caps_them(name):
    res = container(name)["resources"]
    assert set(res["requests"]) == set(res["limits"]) == {"cpu", "memory"}


@pytest.mark.parametrize("name", SERVICES)
def test_each_deployment_reads_settings_and_its_own_urls(name):
    spec = container(name)
    assert {"configMapRef": {"name": "m1-settings"}} in spec["envFrom"]
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in spec["env"] if "valueFrom" in e}
    assert env["M1_DATABASE_URL"] == {"name": "m1-urls", "key": f"{name}-database-url"}
    assert env["M1_RABBITMQ_URL"] == {"name": "m1-urls", "key": "rabbitmq-url"}
    secret = resources()[("Secret", "m1-urls")]["stringData"]
    assert {f"{name}-database-url", "rabbitmq-url"} <= set(secret)
    config = resources()[("ConfigMap", "m1-settings")]["data"]
    assert config["M1_HTTP_HOST"] == "0.0.0.0"
    assert all(key.startswith("M1_") for key in config)


def test_the_notification_service_reaches_its_relay_with_starttls_and_the_password_from_a_secret():
    env = {e["name"]: e for e in container("notification")["env"]}
    assert env["M1_SMTP_TLS"]["value"] == "starttls"
    assert env["M1_SMTP_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "m1-smtp", "key": "password"}
    assert "password" in resources()[("Secret", "m1-smtp")]["stringData"]


@pytest.mark.parametrize("name", SERVICES)
def test_each_deployment_runs_as_the_images_non_root_user(name):
    pod = resources()[("Deployment", name)]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container(name)["securityContext"]["allowPrivilegeEscalation"] is False


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_exposes_metrics_for_prometheus(name):
    service = resources()[("Service", name)]
    deployment = resources()[("Deployment", name)]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [{"name": "http", "port": SERVICE_PORTS[name], "targetPort": "http"}]
    annotations = service["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": str(SERVICE_PORTS[name]),
                           "prometheus.io/path": "/metrics"}


def test_no_manifest_describes_a_service_the_topology_does_not_know():
    deployments = {name for kind, name in resources() if kind == "Deployment"}
    assert deployments == set(SERVICES)
