"""docker-compose.yml and the Dockerfile: valid compose, one container per service, one image.

No Docker engine is needed: the file is checked against the compose specification's JSON
schema (check-jsonschema's vendored copy) and against the project's own service list.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from shared.settings import SERVICE_PORTS
from shared.topology import SERVICES

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")
INFRASTRUCTURE = {"rabbitmq", "postgres"}


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def check_compose_schema(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, timeout=60)


def app_services() -> dict[str, dict]:
    return {name: spec for name, spec in compose()["services"].items() if name not in INFRASTRUCTURE}


def test_compose_file_follows_the_compose_specification():
    result = check_compose_schema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_does_refuse_an_invalid_compose_file(tmp_path):
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  ledger:\n    image: m1\n    restart: sometimes-maybe\n    no_such_key: 1\n")
    assert check_compose_schema(broken).returncode != 0


def test_every_service_of_the_topology_has_a_container_and_nothing_else_does():
    assert set(app_services()) == set(SERVICES)
    assert INFRASTRUCTURE <= set(compose()["services"])


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_container_runs_its_own_package(name):
    command = app_services()[name]["command"]
    assert command == ["python", "-m", f"services.{name}"]


def test_every_python_m_command_names_a_package_with_a_main_module():
    for name, spec in compose()["services"].items():
        command = spec.get("command") or []
        if command[:2] == ["python", "-m"]:
            package = command[2]
            assert re.fullmatch(r"services\.[a-z]+", package), (name, package)
            assert (REPO / package.replace(".", "/") / "__main__.py").is_file(), f"{name}: {package} has no __main__.py"


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_container_is_built_from_the_one_dockerfile(name):
    spec = app_services()[name]
    assert spec["build"] == {"context": ".", "dockerfile": "Dockerfile"}
    assert (REPO / spec["build"]["context"] / spec["build"]["dockerfile"]).resolve() == DOCKERFILE
    assert len({s["image"] for s in app_services().values()}) == 1


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_container_reaches_the_broker_and_database_and_listens_outside(name):
    env = app_services()[name]["environment"]
    assert env["M1_RABBITMQ_URL"] == "amqp://guest:guest@rabbitmq:5672/"
    assert env["M1_DATABASE_URL"] == "postgresql://postgres@postgres:5432/m1"
    assert env["M1_HTTP_HOST"] == "0.0.0.0"


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_container_waits_for_healthy_broker_and_database(name):
    depends = app_services()[name]["depends_on"]
    assert depends == {"rabbitmq": {"condition": "service_healthy"}, "postgres": {"condition": "service_healthy"}}


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_container_is_health_checked_on_its_own_port_without_curl(name):
    test = app_services()[name]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    assert f"http://127.0.0.1:{SERVICE_PORTS[name]}/health" in test[3]
    assert "urllib" in test[3]


def test_broker_and_database_have_health_checks():
    services = compose()["services"]
    assert services["rabbitmq"]["image"].startswith("rabbitmq:3.13")
    assert services["rabbitmq"]["healthcheck"]["test"] == ["CMD", "rabbitmq-diagnostics", "-q", "ping"]
    assert services["postgres"]["image"] == "postgres:16"
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    # trust auth, matching the password-less M1_DATABASE_URL of the services
    assert services["postgres"]["environment"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"


def test_the_dockerfile_installs_the_project_and_runs_as_a_non_root_user():
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.MULTILINE)
    assert "pip install" in text
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    # no service is baked in: the container's command chooses one
    cmd = re.findall(r"^CMD\s+(.+)$", text, re.MULTILINE)[-1]
    assert "services." not in cmd.replace("services.<name>", "")


def test_the_docker_context_leaves_out_local_state():
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests"} <= set(ignored)
