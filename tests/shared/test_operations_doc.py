"""docs/operations.md covers what an operator needs, and every setting and metric it names
exists (a renamed one fails here, not in an operator's night)."""

from __future__ import annotations

import re
from pathlib import Path

from services.complaints.settings import ComplaintsSettings
from services.outreach.settings import OutreachSettings
from services.profile.settings import ProfileSettings
from services.tiering.settings import TieringSettings
from shared.observability import Metrics
from shared.settings import ServiceSettings

DOC = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()


def test_it_covers_growth_upgrades_backups_secrets_and_the_runbooks() -> None:
    headings = re.findall(r"^## (.+)$", DOC, flags=re.MULTILINE)
    assert headings == [
        "From one machine to many",
        "Upgrades",
        "Backups",
        "Secrets rotation",
        "Runbook: the Kafka cluster is unreachable",
        "Runbook: a poison message",
        "Runbook: replaying dead letters",
    ]


SERVICE_SETTINGS: dict[str, type[ServiceSettings]] = {
    "PROFILE_": ProfileSettings,
    "TIERING_": TieringSettings,
    "OUTREACH_": OutreachSettings,
    "COMPLAINTS_": ComplaintsSettings,
}


def test_every_setting_it_names_exists() -> None:
    named = set(re.findall(r"CRM_(?:<SERVICE>_)?([A-Z0-9_]+)", DOC))
    named -= {"API_KEYS"}  # read by every service, checked by the settings tests
    missing = set()
    for name in named:
        prefix = next((p for p in SERVICE_SETTINGS if name.startswith(p)), None)
        owner = SERVICE_SETTINGS[prefix] if prefix else ServiceSettings
        if name.removeprefix(prefix or "").lower() not in owner.model_fields:
            missing.add(name)
    assert not missing, missing


def test_every_metric_it_names_is_exported() -> None:
    exported: set[str] = set()
    for family in Metrics("doc").registry.collect():
        exported.add(family.name)
        if family.type == "counter":
            exported.add(f"{family.name}_total")
    named = set(re.findall(r"`(crm_[a-z_]+)", DOC))
    assert named and named <= exported, named - exported
