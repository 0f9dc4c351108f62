"""Heavy work (re-rank, simulation, summary, back-test, fit) runs a slot at a time per
replica: a request for more while a slot is taken answers 429 with Retry-After and
changes nothing; the work itself runs its numpy half in a worker thread."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from services.tiering.app import create_app
from services.tiering.ranking import store
from tests.conftest import ADMIN, running
from tests.tiering.conftest import Feed, tiering_settings
from tests.tiering.test_ranking import RECENT

PAST = {"as_of": "2026-01-01T00:00:00Z"}


async def heavy_requests(client: httpx.AsyncClient) -> list[httpx.Response]:
    policy = (await client.get("/v1/policies", headers=ADMIN)).json()["items"][0]["id"]
    return [
        await client.post("/v1/recompute", headers=ADMIN),
        await client.post(f"/v1/policies/{policy}/simulate", headers=ADMIN),
        await client.post(f"/v1/policies/{policy}/activate", headers=ADMIN),
        await client.get("/v1/tiers/summary", headers=ADMIN),
        await client.post("/v1/backtests", json=PAST, headers=ADMIN),
        await client.post("/v1/churn-model/fit", headers=ADMIN),
    ]


async def test_heavy_work_beyond_the_slots_is_refused_with_retry_after(
    tiering_db: str, feed: Feed
) -> None:
    customer = feed.customer()
    feed.purchase(customer, "100", RECENT)
    await feed.apply()
    app = create_app(tiering_settings(tiering_db))
    async with running(app) as client:
        heavy = app.state.runtime.heavy
        async with heavy.slot("a re-rank started elsewhere"):
            refused = await heavy_requests(client)
            backtests = (await client.get("/v1/backtests", headers=ADMIN)).json()["items"]
        for response in refused:
            assert response.status_code == 429, (response.request.url, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert int(response.headers["Retry-After"]) >= 1
            assert response.json()["type"].endswith("too-busy")
        assert backtests == []  # nothing was applied
        # A light read is never held back.
        view = await client.get(f"/v1/customers/{customer}/tier", headers=ADMIN)
        assert view.status_code == 200
        # With the slot free again, the same requests run.
        done = await heavy_requests(client)
        assert [r.status_code for r in done] == [200, 200, 200, 200, 201, 200]


async def test_the_ranking_arrays_are_computed_off_the_event_loop(
    tiering: httpx.AsyncClient, feed: Feed, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed.purchase(feed.customer(), "100", RECENT)
    await feed.apply()
    threads: list[int] = []
    original = store.score_everyone

    def recording(figures: Any) -> Any:
        threads.append(threading.get_ident())
        return original(figures)

    monkeypatch.setattr(store, "score_everyone", recording)
    loop_thread = threading.get_ident()
    response = await tiering.post("/v1/recompute", headers=ADMIN)
    assert response.status_code == 200
    assert threads and all(ident != loop_thread for ident in threads)
