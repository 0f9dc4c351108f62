"""The AsyncAPI document describes every topic from the event catalog, stays in step with
docs/asyncapi.yaml, and its message schemas accept the envelopes services send (and
refuse others)."""

from __future__ import annotations

import json
import uuid
from importlib.metadata import version
from pathlib import Path
from typing import Any

import jsonschema_rs
import yaml

from shared.asyncapi import asyncapi_document, asyncapi_yaml
from shared.events import CATALOG
from tests.conftest import DatabaseFactory
from tests.shared.test_consumer import purchase_envelope

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"
SPECIFICATION = Path(__file__).resolve().parents[1] / "schemas" / "asyncapi-3.0.0.json"


def test_docs_asyncapi_is_the_catalog_and_every_reference_resolves() -> None:
    assert DOCUMENT.read_text() == asyncapi_yaml(version("crm-retention")), (
        "docs/asyncapi.yaml is stale: run `crm topics asyncapi > docs/asyncapi.yaml`"
    )
    document = yaml.safe_load(DOCUMENT.read_text())
    assert document["asyncapi"] == "3.0.0"
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == set(CATALOG)

    def resolve(ref: str) -> Any:
        node = document
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        return node

    for operation in document["operations"].values():
        channel = resolve(operation["channel"]["$ref"])
        for message in channel["messages"].values():
            assert resolve(message["$ref"])["payload"]["type"] == "object"


def validator(event_type: str) -> Any:
    message = asyncapi_document("test")["components"]["messages"][event_type.replace(".", "_")]
    return jsonschema_rs.validator_for(message["payload"], validate_formats=True)


def test_the_schemas_accept_what_is_sent_and_refuse_the_rest() -> None:
    purchase = purchase_envelope(uuid.uuid4())
    assert validator("purchase.recorded").is_valid(purchase)
    created = {**purchase, "type": "customer.created",
               "data": {"name": "Acme", "kind": "company", "revision": 1}}  # fmt: skip
    assert validator("customer.created").is_valid(json.loads(json.dumps(created)))
    assert not validator("customer.created").is_valid(purchase)  # the wrong type
    broken = {**purchase, "data": {**purchase["data"], "amount": "ten"}}
    assert not validator("purchase.recorded").is_valid(broken)


def test_docs_asyncapi_follows_the_asyncapi_3_specification() -> None:
    validator = jsonschema_rs.validator_for(json.loads(SPECIFICATION.read_text()))
    document = yaml.safe_load(DOCUMENT.read_text())
    errors = [f"{list(e.instance_path)}: {e.message}" for e in validator.iter_errors(document)]
    assert errors == []
    broken = {**document, "channels": {"purchase_recorded": {"address": 5}}}
    assert not validator.is_valid(broken)  # the schema is really being applied


async def test_each_service_serves_its_asyncapi_beside_the_docs(
    new_database: DatabaseFactory,
) -> None:
    from services.complaints.app import create_app
    from services.complaints.settings import ComplaintsSettings
    from tests.conftest import running, service_settings

    settings = service_settings(
        ComplaintsSettings,
        database_url=await new_database("complaints"),
        bootstrap="127.0.0.1:1",
        prefix="none.",
        run_background=False,
    )
    async with running(create_app(settings)) as client:
        served = await client.get("/asyncapi.yaml")
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("application/yaml")
    assert served.text == DOCUMENT.read_text()
