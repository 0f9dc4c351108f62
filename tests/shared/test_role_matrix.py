"""Role x route on every service: the table below says, for every operation, which roles
may call it; the test reads the operations from each service's OpenAPI, so a new route
missing from the table fails here, and calls each one with a key of each role.

A role the table admits must not get 401/403 (it may get 404 or 422: the ids here are
made up); any other role must get 403. Which rows of a list a role sees (own customers,
no contact details) is tested per service.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from tests.conftest import ADMIN, AGENT, ANALYST, MANAGER, running
from tests.shared.test_route_auth import APPS, _app

KEYS = {"admin": ADMIN, "account_manager": MANAGER, "analyst": ANALYST, "agent": AGENT}
ALL = frozenset(KEYS)
ADMIN_ONLY = frozenset({"admin"})
WRITERS = frozenset({"admin", "account_manager"})
WORKERS = frozenset({"admin", "account_manager", "agent"})  # people who act on customers
ANALYSTS = frozenset({"admin", "analyst"})
OPEN = None  # no key: the credential is elsewhere (a feed's secret address)

MATRIX: dict[str, dict[str, frozenset[str] | None]] = {
    "profile": {
        "POST /v1/customers": WRITERS,
        "GET /v1/customers": ALL,
        "GET /v1/customers/{customer_id}": ALL,
        "PATCH /v1/customers/{customer_id}": WRITERS,
        "DELETE /v1/customers/{customer_id}": ADMIN_ONLY,
        "GET /v1/customers/{customer_id}/audit": ALL,
        "GET /v1/customers/{customer_id}/referrals": ALL,
        "POST /v1/customers/{customer_id}/contacts": WRITERS,
        "GET /v1/customers/{customer_id}/contacts": WORKERS,  # contact details: no analysts
        "GET /v1/customers/{customer_id}/contacts/{record_id}": WORKERS,
        "PATCH /v1/customers/{customer_id}/contacts/{contact_id}": WRITERS,
        "DELETE /v1/customers/{customer_id}/contacts/{contact_id}": WRITERS,
        "PUT /v1/customers/{customer_id}/consent": WRITERS,
        "GET /v1/customers/{customer_id}/consent": ALL,
        "POST /v1/customers/{customer_id}/purchases": WRITERS,
        "GET /v1/customers/{customer_id}/purchases": ALL,
        "GET /v1/customers/{customer_id}/purchases/{record_id}": ALL,
        "POST /v1/customers/{customer_id}/payments": WRITERS,
        "GET /v1/customers/{customer_id}/payments": ALL,
        "GET /v1/customers/{customer_id}/payments/{record_id}": ALL,
        "POST /v1/customers/{customer_id}/interactions": WRITERS,
        "GET /v1/customers/{customer_id}/interactions": ALL,
        "GET /v1/customers/{customer_id}/interactions/{record_id}": ALL,
        "POST /v1/imports/customers": ADMIN_ONLY,
        "POST /v1/imports/purchases": ADMIN_ONLY,
    },
    "tiering": {
        "GET /v1/customers/{customer_id}/tier": ALL,
        "GET /v1/customers": ALL,
        "GET /v1/tiers/summary": ALL,
        "GET /v1/policies": ALL,
        "POST /v1/policies": ANALYSTS,
        "GET /v1/policies/{policy_id}": ALL,
        "POST /v1/policies/{policy_id}/activate": ADMIN_ONLY,
        "POST /v1/policies/{policy_id}/simulate": ANALYSTS,
        "POST /v1/recompute": ADMIN_ONLY,
        "POST /v1/backtests": ANALYSTS,
        "GET /v1/backtests": ANALYSTS,
        "GET /v1/backtests/{backtest_id}": ANALYSTS,
        "GET /v1/backtests/{backtest_id}/customers": ANALYSTS,
        "GET /v1/backtests/{backtest_id}/customers.csv": ANALYSTS,
        "GET /v1/churn-model": ALL,  # figures about the model, none about a customer
        "POST /v1/churn-model/fit": ADMIN_ONLY,
    },
    "outreach": {
        "GET /v1/plans": ALL,
        "GET /v1/plans/{tier}": ALL,
        "PUT /v1/plans/{tier}": ADMIN_ONLY,
        "GET /v1/calendar": ALL,
        "POST /v1/calendar": ANALYSTS,  # marketing plans the company's dates
        "POST /v1/planning": ADMIN_ONLY,
        "GET /v1/customers/{customer_id}/upcoming": ALL,
        "GET /v1/tasks": ALL,
        "GET /v1/tasks/{task_id}": ALL,
        "POST /v1/tasks/{task_id}/complete": WORKERS,
        "POST /v1/tasks/{task_id}/reschedule": WORKERS,
        "POST /v1/tasks/{task_id}/reassign": WORKERS,
        "POST /v1/feeds": WORKERS,
        "DELETE /v1/feeds": WORKERS,
        "GET /v1/feeds/{token}.ics": OPEN,
    },
    "complaints": {
        "POST /v1/complaints": WORKERS,
        "GET /v1/complaints": ALL,
        "GET /v1/complaints/stats": ANALYSTS,
        "GET /v1/complaints/{complaint_id}": ALL,
        "POST /v1/complaints/{complaint_id}/transitions": WORKERS,
        "POST /v1/complaints/{complaint_id}/hand-over": WORKERS,
        "POST /v1/complaints/{complaint_id}/assignment": WORKERS,
        "GET /v1/sla-policies": ALL,
        "PUT /v1/sla-policies": ADMIN_ONLY,
    },
}


def _concrete(template: str) -> str:
    path = re.sub(r"\{tier\}", "A", template)
    path = re.sub(r"\{token\}", "t" * 32, path)
    return re.sub(r"\{[a-z_]+\}", str(uuid.uuid4()), path)


@pytest.mark.parametrize("name", sorted(APPS))
async def test_every_route_admits_exactly_the_roles_of_the_matrix(
    name: str, tmp_path: Path
) -> None:
    app = await _app(name, tmp_path)
    operations = {
        f"{method.upper()} {path}"
        for path, methods in app.openapi()["paths"].items()
        if path.startswith("/v1/")
        for method in methods
    }
    assert operations == set(MATRIX[name]), (
        f"routes without a row: {sorted(operations - set(MATRIX[name]))}; "
        f"rows without a route: {sorted(set(MATRIX[name]) - operations)}"
    )
    async with running(app) as client:
        for operation, admitted in MATRIX[name].items():
            method, template = operation.split(" ", 1)
            if admitted is OPEN:  # the key plays no part: an unknown secret is 401 for all
                statuses = {
                    (await client.request(method, _concrete(template), headers=h)).status_code
                    for h in [{}, *KEYS.values()]
                }
                assert statuses == {401}, (operation, statuses)
                continue
            for role, headers in KEYS.items():
                response = await client.request(
                    method, _concrete(template), headers=headers, json={}
                )
                if role in admitted:
                    assert response.status_code not in (401, 403), (operation, role, response.text)
                else:
                    assert response.status_code == 403, (operation, role, response.status_code)
