"""The deployment files ask for steps that exist: compose runs `crm topics apply` and a
`crm migrate` per service as one-shots the services wait for (ports on 127.0.0.1 unless
configured), the image runs any `crm` command, and the Kubernetes manifests name real
commands. (Parsed offline: no Docker or cluster here.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from shared.cli import app

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
    for name in SERVICES:
        documents = list(yaml.safe_load_all((ROOT / "deploy" / "k8s" / f"{name}.yaml").read_text()))
        pod = next(d for d in documents if d and d["kind"] == "Deployment")["spec"]["template"]
        for container in pod["spec"]["initContainers"] + pod["spec"]["containers"]:
            assert container["command"][0] == "crm"
            commands.append(container["command"][1:])
    runner = CliRunner()
    for command in commands:
        assert isinstance(command, list)
        words = [word for word in command if not word.startswith("-")][:2]
        if words[0] not in ("topics",):
            words = words[:1]
        result = runner.invoke(app, [*words, "--help"])
        assert result.exit_code == 0, (command, result.output)
    dockerfile = (ROOT / "Dockerfile").read_text().splitlines()
    # The image runs the command it is given; it migrates nothing by itself.
    assert [line for line in dockerfile if line.startswith("ENTRYPOINT")] == ['ENTRYPOINT ["crm"]']
