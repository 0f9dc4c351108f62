"""The OpenAPI document of every service, completed where FastAPI leaves it short: every
error as `application/problem+json` with one shared schema, the statuses each operation
can answer, and the documentation pages served with packaged assets (no CDN).

Statuses every operation of a kind shares are added here (401 and 403 where a key is
needed, 404 with a path parameter, 413 with a body, 422 with any input); those only some
routes answer (409, 410, 412, 428) are declared on the route with `problems(...)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import Body, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from shared.errors import PROBLEM_JSON
from shared.fields import COMPONENT, openapi_components

ASSETS = Path(fastapi_offline.__file__).parent / "static"
ASSETS_URL = "/docs-assets"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
DESCRIPTIONS = {
    401: "No API key, or one that is not known.",
    403: "The key's roles do not allow this.",
    404: "Not found (or not visible to this key).",
    409: "Conflicts with the current state.",
    410: "The customer was erased.",
    412: "`If-Match` does not match the current version.",
    413: "The body is over this route's limit.",
    415: "The body's content type is not one this route reads.",
    422: "Invalid input: `errors` names each field, where it was and why.",
    428: "`If-Match` is required.",
    429: "Another heavy task (a re-rank, a model fit) is running: try again after "
    "`Retry-After` seconds.",
}
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details, the body of every error.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message", "type"],
                "properties": {
                    "field": {"type": "string"},
                    "in": {"type": "string", "enum": ["body", "query", "path", "header"]},
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
}


def example_body(**examples: Any) -> Any:
    """A request body with named examples, shown in `/docs` and the document
    (`Annotated[Model, example_body(name=value, ...)]`)."""
    return Body(
        openapi_examples={
            name.replace("_", " "): {"summary": name.replace("_", " "), "value": value}
            for name, value in examples.items()
        }
    )


def problem(status: int) -> dict[str, Any]:
    return {"description": DESCRIPTIONS[status], "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}}}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route that can answer these statuses besides the shared ones."""
    return {status: problem(status) for status in statuses}


def _complete(operation: dict[str, Any], path: str) -> None:
    responses = operation.setdefault("responses", {})
    shared = {422}  # every operation: an unknown query parameter, a bad X-Correlation-ID
    if operation.get("security"):
        shared |= {401, 403}
    if "{" in path:
        shared.add(404)
    if operation.get("requestBody"):
        shared.add(413)
    for status in shared:
        responses.setdefault(str(status), {})
    operation["responses"] = responses = dict(sorted(responses.items()))
    for status, response in responses.items():
        if status.isdigit() and int(status) >= 400:
            response["description"] = DESCRIPTIONS.get(int(status), response.get("description"))
            response["content"] = {PROBLEM_JSON: {"schema": PROBLEM_REF}}


def _refer_to_components(node: Any) -> None:
    """Replace each schema marked with `COMPONENT` by a reference to that component."""
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        if isinstance(child, dict) and COMPONENT in child:
            name = child[COMPONENT]
            child.clear()
            child["$ref"] = f"#/components/schemas/{name}"
        else:
            _refer_to_components(child)


def install_openapi(app: FastAPI, base_currency: str) -> None:
    """Replace the app's schema builder and its /docs and /redoc pages."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            for path, methods in document.get("paths", {}).items():
                for operation in methods.values():
                    _complete(operation, path)
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
            schemas["Problem"] = PROBLEM_SCHEMA
            schemas.update(openapi_components(base_currency))
            _refer_to_components(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}/openapi.json",
            title=f"{app.title} - API",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}/openapi.json",
            title=f"{app.title} - API",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )

    @app.get("/asyncapi.yaml", include_in_schema=False)
    async def asyncapi() -> Response:
        """Every topic and its messages (AsyncAPI 3), beside the HTTP API's /docs."""
        from importlib.metadata import version

        from shared.asyncapi import asyncapi_yaml

        return Response(asyncapi_yaml(version("crm-retention")), media_type="application/yaml")
