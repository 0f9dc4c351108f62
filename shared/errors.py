"""Domain errors carry their HTTP status; one set of handlers renders all as problem+json.

Routes never build error responses by hand: they raise one of these.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://crm.example/problems/"

log = logging.getLogger("crm.errors")


class ProblemError(Exception):
    """An error a client caused or may act on (RFC 9457 problem details)."""

    status = 400
    code = "bad-request"
    title = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers


class InvalidInput(ProblemError):
    status = 422
    code = "validation-error"
    title = "Invalid input"


class Unauthorized(ProblemError):
    status = 401
    code = "unauthorized"
    title = "Missing or unknown API key"


class Forbidden(ProblemError):
    status = 403
    code = "forbidden"
    title = "Not allowed for this key"


class NotFound(ProblemError):
    status = 404
    code = "not-found"
    title = "Not found"


class Conflict(ProblemError):
    status = 409
    code = "conflict"
    title = "Conflicting state"


class Gone(ProblemError):
    status = 410
    code = "gone"
    title = "Gone"


class PreconditionFailed(ProblemError):
    status = 412
    code = "precondition-failed"
    title = "Precondition failed"


class UnsupportedMediaType(ProblemError):
    status = 415
    code = "unsupported-media-type"
    title = "Unsupported media type"


class TooBusy(ProblemError):
    """Answered with `Retry-After`: the client may try again then."""

    status = 429
    code = "too-busy"
    title = "Too busy"


class ServiceUnavailable(ProblemError):
    status = 503
    code = "unavailable"
    title = "Service unavailable"


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    code: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A problem+json response."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(part) for part in loc]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        parts = parts[1:] or parts
    return ".".join(parts)


def _malformed_json(err: dict[str, Any]) -> dict[str, Any]:
    """FastAPI reports a body that does not parse at `("body", <offset>)`: name the body
    and say where, in words."""
    loc = err.get("loc", ())
    offset = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
    reason = str((err.get("ctx") or {}).get("error", "not valid JSON"))
    where = f" at character {offset + 1}" if offset is not None else ""
    return {
        "field": "body",
        "in": "body",
        "message": f"The body is not valid JSON: {reason}{where}.",
        "type": "json_invalid",
    }


def validation_errors(raw: list[Any]) -> list[dict[str, Any]]:
    """Pydantic errors as `{field, in, message, type}` items."""
    return [
        _malformed_json(err)
        if err.get("type") == "json_invalid"
        else {
            "field": _field_name(err.get("loc", ())),
            "in": str(err.get("loc", ("body",))[0]) if err.get("loc") else "body",
            "message": err.get("msg", "invalid"),
            "type": err.get("type", "invalid"),
        }
        for err in raw
    ]


# Statuses Starlette raises itself (routing, body limits): their problem code and title.
HTTP_PROBLEMS = {
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
}


# What FastAPI raises (as a 400) when a JSON body cannot even be decoded as text.
UNREADABLE_BODY = "There was an error parsing the body"


def _methods_at(request: Request) -> set[str]:
    """Every method some route serves at this path (Starlette's own 405 names only the
    first route that matched the path, and FastAPI has one route per method)."""
    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return methods


def install_error_handlers(app: FastAPI) -> None:
    """Render every error, expected or not, as problem+json."""

    async def on_problem(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ProblemError)
        headers = dict(exc.headers or {})
        if exc.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return problem_response(
            exc.status,
            exc.title,
            exc.detail,
            code=exc.code,
            errors=exc.errors,
            headers=headers or None,
        )

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = validation_errors(list(exc.errors()))
        malformed = next((e for e in errors if e["type"] == "json_invalid"), None)
        fields = ", ".join(sorted({e["field"] for e in errors})) or "request"
        return problem_response(
            422,
            "Invalid input",
            malformed["message"] if malformed else f"Invalid value for: {fields}",
            code="validation-error",
            errors=errors,
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400 and exc.detail == UNREADABLE_BODY:
            return problem_response(
                422,
                "Invalid input",
                "The body is not valid JSON: it is not UTF-8 text.",
                code="validation-error",
                errors=[_malformed_json({"ctx": {"error": "not UTF-8 text"}})],
            )
        headers = dict(exc.headers) if exc.headers else {}
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(sorted(_methods_at(request)))
        code, title = HTTP_PROBLEMS.get(exc.status_code, (f"http-{exc.status_code}", "HTTP error"))
        return problem_response(
            exc.status_code, title, str(exc.detail), code=code, headers=headers or None
        )

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(
            500,
            "Internal error",
            "The server failed to handle this request.",
            code="internal-error",
        )

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
