"""Policies: validated documents, versions, exactly one active, immutable once activated."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN, ANALYST, MANAGER, query

BANDS = {"tiers": [{"name": "gold", "share": 0.5}], "rest": "silver"}


async def create(client: httpx.AsyncClient, name: str = "p", **document: Any) -> httpx.Response:
    return await client.post(
        "/v1/policies",
        json={"name": name, "document": document or {"bands": BANDS}},
        headers=ANALYST,
    )


async def test_new_install_has_the_default_policy_active(tiering: httpx.AsyncClient) -> None:
    policies = (await tiering.get("/v1/policies", headers=ADMIN)).json()["items"]
    assert [(p["name"], p["version"], p["status"]) for p in policies] == [("default", 1, "active")]
    bands = policies[0]["document"]["bands"]
    assert (bands["metric"], bands["window_days"], bands["method"]) == (
        "revenue",
        365,
        "cumulative_share",
    )
    assert [(t["name"], t["share"]) for t in bands["tiers"]] == [("A", 0.5), ("B", 0.2), ("C", 0.1)]


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"bands": {"tiers": [{"name": "A", "share": 0.7}, {"name": "B", "share": 0.5}]}}, "bands"),
        ({"bands": {"tiers": [{"name": "A", "share": 0}]}}, "bands.tiers.0.share"),
        ({"bands": {"tiers": [{"name": "A", "share": 0.5}], "rest": "A"}}, "bands"),
        ({"bands": {"tiers": []}}, "bands.tiers"),
        ({"bands": {"metric": "smiles", "tiers": [{"name": "A", "share": 0.5}]}}, "bands.metric"),
        (
            {"bands": {"window_days": 0, "tiers": [{"name": "A", "share": 0.5}]}},
            "bands.window_days",
        ),
        (
            {
                "bands": BANDS,
                "rules": [
                    {
                        "name": "r",
                        "metric": "revenue",
                        "op": ">",
                        "value": "1",
                        "min_tier": "gold",
                        "max_tier": "silver",
                    }
                ],
            },
            "rules.0",
        ),
        (
            {
                "bands": BANDS,
                "rules": [
                    {
                        "name": "r",
                        "metric": "revenue",
                        "op": ">",
                        "value": "1",
                        "min_tier": "platinum",
                    }
                ],
            },
            "document",
        ),
        (
            {
                "bands": BANDS,
                "rules": [
                    {"name": "r", "metric": "revenue", "op": "~", "value": "1", "min_tier": "gold"}
                ],
            },
            "rules.0.op",
        ),
        ({"bands": BANDS, "colour": "red"}, "colour"),
        ({"bands": BANDS, "churn": {"weight_overdue": 0.9}}, "churn"),
        (
            {"bands": BANDS, "value_matrix": {"collection_threshold": 0.5}},
            "value_matrix.sales_threshold",
        ),
    ],
)
async def test_bad_documents_are_refused_with_the_field(
    tiering: httpx.AsyncClient, tiering_db: str, document: dict[str, Any], field: str
) -> None:
    response = await tiering.post(
        "/v1/policies", json={"name": "bad", "document": document}, headers=ANALYST
    )
    assert response.status_code == 422, response.text
    fields = [error["field"] for error in response.json()["errors"]]
    assert any(f.startswith(f"document.{field}") or f == field for f in fields), fields
    rows = await query(tiering_db, "SELECT count(*) AS n FROM tier_policies")
    assert rows[0].n == 1  # only the default


async def test_versions_activation_and_immutability(
    tiering: httpx.AsyncClient, tiering_db: str
) -> None:
    first = (await create(tiering, "water")).json()
    second = (await create(tiering, "water")).json()
    assert (first["version"], second["version"], first["status"]) == (1, 2, "draft")

    denied = await tiering.post(f"/v1/policies/{first['id']}/activate", headers=ANALYST)
    assert denied.status_code == 403
    assert (
        await tiering.post(
            "/v1/policies", json={"name": "x", "document": {"bands": BANDS}}, headers=MANAGER
        )
    ).status_code == 403

    activated = await tiering.post(f"/v1/policies/{first['id']}/activate", headers=ADMIN)
    assert activated.status_code == 200, activated.text
    assert activated.json()["policy_version"] == 1
    await tiering.post(f"/v1/policies/{second['id']}/activate", headers=ADMIN)
    statuses = {
        (p["name"], p["version"]): p["status"]
        for p in (await tiering.get("/v1/policies", headers=ADMIN)).json()["items"]
    }
    assert statuses == {("default", 1): "retired", ("water", 1): "retired", ("water", 2): "active"}
    again = await tiering.post(f"/v1/policies/{first['id']}/activate", headers=ADMIN)
    assert again.status_code == 409
    # There is no way to edit a policy: a change is a new version.
    edit = await tiering.put(f"/v1/policies/{second['id']}", json={"name": "x"}, headers=ADMIN)
    assert edit.status_code == 405
    rows = await query(tiering_db, "SELECT count(*) AS n FROM tier_policies WHERE status='active'")
    assert rows[0].n == 1
    assert (
        await tiering.get("/v1/policies/00000000-0000-0000-0000-000000000000", headers=ADMIN)
    ).status_code == 404


async def test_policy_list_pages(tiering: httpx.AsyncClient) -> None:
    for _ in range(3):
        await create(tiering, "paged")
    seen: list[tuple[str, int]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await tiering.get("/v1/policies", params=params, headers=ADMIN)).json()
        seen += [(p["name"], p["version"]) for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [("default", 1), ("paged", 1), ("paged", 2), ("paged", 3)]
