"""Each service's OpenAPI: a bearer scheme on every protected operation, every error as
problem+json with the one shared schema, the statuses a route answers, an example of every
request body that the service accepts, and docs pages whose assets the service serves
itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from services.profile.app import create_app as profile_app
from services.profile.settings import ProfileSettings
from tests.conftest import ADMIN, DatabaseFactory, running, service_settings
from tests.shared.test_route_auth import APPS, _app

PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]


@pytest.mark.parametrize("name", sorted(APPS))
async def test_the_document_declares_auth_and_problem_errors(name: str, tmp_path: Path) -> None:
    app = await _app(name, tmp_path)
    document = app.openapi()
    assert document["components"]["securitySchemes"] == {
        "apiKey": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key from CRM_API_KEYS, sent as `Authorization: Bearer <key>`.",
        }
    }
    schemas = document["components"]["schemas"]
    assert "Problem" in schemas and "HTTPValidationError" not in schemas
    for method, path, operation in _operations(document):
        statuses = set(operation["responses"])
        assert "422" in statuses, (method, path)
        if path.startswith("/v1/") and not path.endswith(".ics"):
            assert operation["security"] == [{"apiKey": []}], (method, path)
            assert {"401", "403"} <= statuses, (method, path)
        if "{" in path:
            assert "404" in statuses, (method, path)
        if "requestBody" in operation:
            assert "413" in statuses, (method, path)
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert response["content"] == PROBLEM, (method, path, status)


async def test_routes_declare_the_statuses_only_they_answer(tmp_path: Path) -> None:
    profile = (await _app("profile", tmp_path)).openapi()["paths"]
    patch = profile["/v1/customers/{customer_id}"]["patch"]["responses"]
    assert {"409", "410", "412", "428"} <= set(patch)
    assert "409" in profile["/v1/customers"]["post"]["responses"]
    assert "409" not in profile["/v1/customers"]["get"]["responses"]
    tiering = (await _app("tiering", tmp_path)).openapi()["paths"]
    assert "409" in tiering["/v1/recompute"]["post"]["responses"]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_load_their_assets_from_the_service(page: str, tmp_path: Path) -> None:
    app = await _app("profile", tmp_path)
    async with running(app) as client:
        html = (await client.get(page)).text
        assert "cdn" not in html.lower() and "googleapis" not in html
        scripts = [
            part.split('"')[0] for part in html.split('src="')[1:] + html.split('href="')[1:]
        ]
        local = [url for url in scripts if url.startswith("/docs-assets/")]
        assert any(url.endswith(".js") for url in local), html
        for url in local:
            asset = await client.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 1000


def _body_examples(document: dict[str, Any], media: dict[str, Any]) -> list[Any]:
    """A request body's examples: the media type's own, else its schema's (followed
    through a `$ref`, also inside an optional body's `anyOf`)."""
    if "example" in media:
        return [media["example"]]
    if "examples" in media:
        return [example["value"] for example in media["examples"].values()]
    schema = media.get("schema", {})
    refs = [schema.get("$ref")] + [option.get("$ref") for option in schema.get("anyOf", [])]
    for ref in filter(None, refs):
        examples = document["components"]["schemas"][ref.rsplit("/", 1)[-1]].get("examples")
        if examples:
            return list(examples)
    return []


@pytest.mark.parametrize("name", sorted(APPS))
async def test_every_request_body_has_an_example_its_schema_accepts(
    name: str, tmp_path: Path
) -> None:
    document = (await _app(name, tmp_path)).openapi()
    bodies = 0
    for method, path, operation in _operations(document):
        for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
            bodies += 1
            examples = _body_examples(document, media)
            assert examples, (method, path, media_type)
            if media_type != "application/json":
                continue
            validator = jsonschema_rs.validator_for(
                {**media["schema"], "components": document["components"]}, validate_formats=True
            )
            for example in examples:
                errors = [error.message for error in validator.iter_errors(example)]
                assert errors == [], (method, path, example)
    assert bodies > 0


@pytest.mark.parametrize("kind", ["customers", "purchases"])
async def test_the_import_examples_import_without_a_rejected_row(
    kind: str, new_database: DatabaseFactory
) -> None:
    settings = service_settings(
        ProfileSettings,
        database_url=await new_database("profile"),
        bootstrap="127.0.0.1:1",
        prefix="none.",
        run_background=False,
    )
    async with running(profile_app(settings)) as client:
        document = (await client.get("/openapi.json")).json()
        for imported in ("customers", kind):  # purchases need their customers first
            body = document["paths"][f"/v1/imports/{imported}"]["post"]["requestBody"]
            csv = body["content"]["text/csv"]["example"]
            report = await client.post(
                f"/v1/imports/{imported}",
                content=csv,
                headers={**ADMIN, "Content-Type": "text/csv"},
            )
            assert report.status_code == 200, report.text
            assert report.json()["rejected"] == 0, report.json()
            assert report.json()["accepted"] + report.json()["skipped"] == csv.count("\n") - 1
