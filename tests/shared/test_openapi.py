"""Each service's OpenAPI: a bearer scheme on every protected operation, every error as
problem+json with the one shared schema, the statuses a route answers, and docs pages
whose assets the service serves itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import running
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
