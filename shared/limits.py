"""Bounds on what one request may carry, checked at the edge before a route reads it.

Query parameters are the route's own: any other is refused. Text no database can store
(NUL, lone surrogates) is refused wherever it comes.

A body is limited per route: small for JSON, large for the streamed imports. A declared
`Content-Length` over the limit is answered with 413 before anything is read; a body
sent without one (chunked) is counted as it arrives and refused once it passes the limit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import InvalidInput, problem_response

TOO_LARGE = 413


def _too_large(limit: int) -> str:
    return f"The request body is over the limit of {limit:,} bytes for this route."


class BodyLimitMiddleware:
    """413 for a body over its route's limit (pure ASGI: nothing is buffered here)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_upload_bytes: int,
        upload_paths: Sequence[str] = (),
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes
        self.upload_paths = tuple(upload_paths)

    def limit_for(self, path: str) -> int:
        return self.max_upload_bytes if path in self.upload_paths else self.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        declared = next(
            (value for name, value in scope.get("headers", []) if name == b"content-length"), None
        )
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            response = problem_response(
                TOO_LARGE, "Request body too large", _too_large(limit), code="too-large"
            )
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised inside the route's read, rendered by the error handlers.
                    raise HTTPException(TOO_LARGE, _too_large(limit))
            return message

        await self.app(scope, counted, send)


def _known_query_names(route: APIRoute) -> set[str]:
    found: set[str] = set()
    pending: list[Dependant] = [route.dependant]
    while pending:
        dependant = pending.pop()
        found.update(param.alias for param in dependant.query_params)
        pending.extend(dependant.dependencies)
    return found


def reject_unknown_query(request: Request) -> None:
    """A query parameter the route does not read is a 422, not silently ignored (a
    misspelt filter would otherwise answer with everything)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.query_params:
        return
    unknown = sorted(set(request.query_params) - _known_query_names(route))
    if unknown:
        raise InvalidInput(
            f"Unknown query parameter: {', '.join(unknown)}.",
            errors=[
                {
                    "field": name,
                    "in": "query",
                    "message": "not a parameter of this route",
                    "type": "unknown_parameter",
                }
                for name in unknown
            ],
        )


def _unstorable(text: str) -> str | None:
    """Why a string cannot be stored as text (PostgreSQL refuses NUL; a lone surrogate is
    not Unicode any database or event can hold), or None."""
    if "\x00" in text:
        return "contains a NUL character (U+0000)"
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            return "contains a lone surrogate (not valid Unicode)"
    return None


def _unstorable_fields(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        problem = _unstorable(value)
        if problem:
            yield path, problem
    elif isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            problem = _unstorable(str(key))
            if problem:
                yield where, f"name {problem}"
            yield from _unstorable_fields(item, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _unstorable_fields(item, f"{path}[{index}]")


async def reject_unstorable_text(request: Request) -> None:
    """Text no database can store (a NUL character, a lone surrogate) is a 422 naming the
    field, in the JSON body, the query or the path, before a route sees it."""
    found = [
        (where, name, problem)
        for where, values in (("query", request.query_params), ("path", request.path_params))
        for name, text in values.items()
        if (problem := _unstorable(str(text)))
    ]
    route = request.scope.get("route")
    reads_json = isinstance(route, APIRoute) and route.body_field is not None  # not imports
    if reads_json and "json" in request.headers.get("content-type", ""):
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None  # malformed JSON: the body's own validation says where
        found.extend(("body", name, problem) for name, problem in _unstorable_fields(body, ""))
    if found:
        raise InvalidInput(
            "Text that cannot be stored: " + "; ".join(f"{name} {p}" for _, name, p in found),
            errors=[
                {"field": name, "in": where, "message": problem, "type": "unstorable_text"}
                for where, name, problem in found
            ],
        )
