"""Bounds at the edge of every service: body size, correlation id, unknown query
parameters, RFC 3339 date-times, malformed JSON and text no database can store, each
answered with problem+json before a route does anything."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.events import EventEnvelope
from tests.conftest import ADMIN, DatabaseFactory, running
from tests.shared.test_route_auth import APPS, _app

PROBLEM = "application/problem+json"


def _concrete(template: str) -> str:
    return re.sub(r"\{tier\}", "A", re.sub(r"\{[a-z_]+\}", str(uuid.uuid4()), template))


@pytest.mark.parametrize("name", sorted(APPS))
async def test_every_route_refuses_a_query_parameter_it_does_not_read(
    name: str, tmp_path: Path
) -> None:
    app = await _app(name, tmp_path)
    paths = [
        path
        for path, methods in app.openapi()["paths"].items()
        if path.startswith("/v1/") and "get" in methods
    ]
    assert paths, "the service has GET routes"
    async with running(app) as client:
        for template in paths:
            response = await client.get(
                _concrete(template), params={"no_such_filter": "x"}, headers=ADMIN
            )
            assert response.status_code == 422, (template, response.text)
            assert response.headers["content-type"] == PROBLEM
            assert response.json()["errors"][0] == {
                "field": "no_such_filter",
                "in": "query",
                "message": "not a parameter of this route",
                "type": "unknown_parameter",
            }


@pytest.mark.parametrize("name", sorted(APPS))
async def test_a_body_over_the_limit_is_413_before_it_is_read(name: str, tmp_path: Path) -> None:
    app = await _app(name, tmp_path)
    [path] = [p for p, m in app.openapi()["paths"].items() if p.startswith("/v1/") and "post" in m][
        :1
    ]
    big = b"{" + b" " * 1_100_000 + b"}"
    async with running(app) as client:
        declared = await client.post(_concrete(path), content=big, headers=ADMIN)
        assert declared.status_code == 413, declared.text
        assert declared.headers["content-type"] == PROBLEM
        assert declared.json()["type"].endswith("/too-large")

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as read
            for start in range(0, len(big), 65536):
                yield big[start : start + 65536]

        streamed = await client.post(
            _concrete(path), content=chunks(), headers={**ADMIN, "content-type": "application/json"}
        )
        assert streamed.status_code == 413, streamed.text
        assert streamed.headers["content-type"] == PROBLEM


async def test_the_correlation_id_is_checked_at_the_edge(tmp_path: Path) -> None:
    app = await _app("profile", tmp_path)
    async with running(app) as client:
        fine = "a" * 64
        ok = await client.get("/v1/customers", headers={**ADMIN, "X-Correlation-ID": fine})
        assert ok.status_code == 200
        assert ok.headers["x-correlation-id"] == fine
        for bad in ("a" * 65, "two words", "tab\there"):
            refused = await client.get("/v1/customers", headers={**ADMIN, "X-Correlation-ID": bad})
            assert refused.status_code == 422, bad
            assert refused.headers["content-type"] == PROBLEM
            assert refused.json()["errors"][0]["field"] == "X-Correlation-ID"
    envelope = {
        "id": str(uuid.uuid4()),
        "type": "customer.updated",
        "occurred_at": "2026-12-02T08:00:00Z",
        "producer": "profile",
        "customer_id": str(uuid.uuid4()),
    }
    assert EventEnvelope.model_validate({**envelope, "correlation_id": fine}).correlation_id == fine
    with pytest.raises(ValidationError):
        EventEnvelope.model_validate({**envelope, "correlation_id": "a" * 65})


async def test_date_times_are_rfc_3339_strings_only(tmp_path: Path) -> None:
    app = await _app("tiering", tmp_path)
    async with running(app) as client:
        for bad in ("-5447385144", "1764662400", "2026-12-02", "2026-12-02T08:00:00"):
            refused = await client.get("/v1/tiers/summary", params={"as_of": bad}, headers=ADMIN)
            assert refused.status_code == 422, bad
            assert "RFC 3339" in refused.json()["errors"][0]["message"]
        accepted = await client.get(
            "/v1/tiers/summary", params={"as_of": "2026-12-02T08:00:00+08:00"}, headers=ADMIN
        )
        assert accepted.status_code == 200, accepted.text
        body_number = await client.post("/v1/recompute", json={"as_of": 1764662400}, headers=ADMIN)
        assert body_number.status_code == 422
        assert "RFC 3339" in body_number.json()["errors"][0]["message"]


async def test_malformed_json_names_the_body_and_the_place(tmp_path: Path) -> None:
    app = await _app("profile", tmp_path)
    async with running(app) as client:
        response = await client.post(
            "/v1/customers",
            content=b'{"name": "A",',
            headers={**ADMIN, "content-type": "application/json"},
        )
    assert response.status_code == 422
    problem = response.json()
    assert problem["detail"].startswith("The body is not valid JSON: ")
    assert "at character 14" in problem["detail"]
    assert problem["errors"][0]["field"] == "body"


async def test_text_no_database_can_store_is_a_422_naming_the_field_and_changes_nothing(
    new_database: DatabaseFactory, tmp_path: Path
) -> None:
    app = await _app("profile", tmp_path, await new_database("profile"))
    async with running(app) as client:
        nul = await client.post(
            "/v1/customers",
            content=b'{"name": "Acme\\u0000", "kind": "company", '
            b'"attributes": {"k": ["ok", "\\u0000"]}}',
            headers={**ADMIN, "Content-Type": "application/json"},
        )
        surrogate = await client.post(
            "/v1/customers",
            content=b'{"name": "\\ud82e", "kind": "company"}',
            headers={**ADMIN, "Content-Type": "application/json"},
        )
        query = await client.get("/v1/customers", params={"text": "a\x00b"}, headers=ADMIN)
        listed = await client.get("/v1/customers", headers=ADMIN)
    assert nul.status_code == 422, nul.text
    assert nul.headers["content-type"] == PROBLEM
    assert [(e["field"], e["in"], e["type"]) for e in nul.json()["errors"]] == [
        ("name", "body", "unstorable_text"),
        ("attributes.k[1]", "body", "unstorable_text"),
    ]
    assert "NUL" in nul.json()["errors"][0]["message"]
    assert surrogate.status_code == 422, surrogate.text
    assert "lone surrogate" in surrogate.json()["errors"][0]["message"]
    assert query.status_code == 422, query.text
    assert query.json()["errors"][0]["in"] == "query"
    assert listed.json()["items"] == []  # nothing was written
