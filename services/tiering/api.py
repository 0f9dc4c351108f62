"""Tiering routes."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from services.tiering import repository as repo
from services.tiering.models import Backtest, BacktestCustomer
from services.tiering.ranking.figures import in_units
from services.tiering.schemas import (
    AsOf,
    BacktestCreate,
    BacktestCustomerOut,
    BacktestOut,
    ChurnModelOut,
    PolicyCreate,
    PolicyOut,
    RankingOutcome,
    TierSummary,
    TierView,
)
from services.tiering.service import tiering_service
from shared.access import access_of
from shared.app import HeavyDep, SessionDep, runtime_of
from shared.auth import Principal, require_roles
from shared.errors import InvalidInput
from shared.fields import Timestamp
from shared.openapi import example_body, problems
from shared.pagination import (
    Cursor,
    Limit,
    Page,
    decode_cursor,
    decode_time_key,
    encode_cursor,
    page_of,
)

router = APIRouter()
CSV_CHUNK = 10_000

Reader = Annotated[Principal, Depends(require_roles("account_manager", "analyst", "agent"))]
Analyst = Annotated[Principal, Depends(require_roles("analyst"))]
Admin = Annotated[Principal, Depends(require_roles())]
OptionalAsOf = Annotated[
    AsOf | None, example_body(now={}, as_of_a_moment={"as_of": "2026-11-30T08:00:00Z"})
]


class CustomerTier(BaseModel):
    customer_id: uuid.UUID
    tier: str | None
    at_risk: bool
    churn_risk: float | None
    reasons: list[str]


@router.get(
    "/customers/{customer_id}/tier",
    response_model=TierView,
    responses=problems(410),
    tags=["tiers"],
)
async def get_customer_tier(
    customer_id: uuid.UUID, session: SessionDep, principal: Reader
) -> TierView:
    """The customer's tier, scores, reasons, history and aggregates."""
    return await tiering_service.tier_view(session, customer_id, access_of(principal))


@router.get("/customers", response_model=Page[CustomerTier], tags=["tiers"])
async def list_customers(
    session: SessionDep,
    principal: Reader,
    tier: Annotated[str | None, Query(min_length=1, max_length=40)] = None,
    at_risk: bool | None = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[CustomerTier]:
    """Customers by tier and/or churn flag (`?tier=A&at_risk=true`); an account manager
    sees their own customers alone."""
    after = None
    if cursor is not None:
        (last,) = decode_cursor(cursor, 1)
        try:
            after = uuid.UUID(last)
        except ValueError as exc:
            raise InvalidInput("The cursor is not one this service issued.") from exc
    rows = await tiering_service.list_customers(
        session,
        tier=tier,
        at_risk=at_risk,
        after=after,
        limit=limit + 1,
        access=access_of(principal),
    )
    items = [
        CustomerTier(
            customer_id=aggregate.customer_id,
            tier=score.tier if score is not None else None,
            at_risk=score is not None and score.at_risk,
            churn_risk=score.churn_risk if score is not None else None,
            reasons=reasons,
        )
        for aggregate, score, reasons in rows[:limit]
    ]
    more = len(rows) > limit
    return Page(items=items, next_cursor=encode_cursor(items[-1].customer_id) if more else None)


@router.get("/tiers/summary", response_model=TierSummary, responses=problems(429), tags=["tiers"])
async def tier_summary(
    session: SessionDep, heavy: HeavyDep, _: Reader, as_of: Timestamp | None = None
) -> TierSummary:
    """Per tier the customers, share of revenue and collection ratio; and the share of
    revenue made by the top 20% of customers (the 80/20 on your own data)."""
    async with heavy.slot("The summary"):
        return await tiering_service.summary(session, as_of)


@router.get("/policies", response_model=Page[PolicyOut], tags=["policies"])
async def list_policies(
    session: SessionDep, _: Reader, cursor: Cursor = None, limit: Limit = 50
) -> Page[PolicyOut]:
    """Every policy version, by name and version."""
    after = None
    if cursor is not None:
        name, version = decode_cursor(cursor, 2)
        if not version.isdigit():
            raise InvalidInput("The cursor is not one this service issued.")
        after = (name, int(version))
    rows = await tiering_service.list_policies(session, after=after, limit=limit + 1)
    items = [PolicyOut.model_validate(row) for row in rows[:limit]]
    more = len(rows) > limit
    return Page(
        items=items,
        next_cursor=encode_cursor(items[-1].name, items[-1].version) if more else None,
    )


@router.post("/policies", status_code=201, response_model=PolicyOut, tags=["policies"])
async def create_policy(
    body: PolicyCreate, session: SessionDep, principal: Analyst, response: Response
) -> PolicyOut:
    """Write a policy (a draft: the next version under its name); activate it to apply it."""
    policy = await tiering_service.create_policy(session, body, principal.user)
    response.headers["Location"] = f"/v1/policies/{policy.id}"
    return PolicyOut.model_validate(policy)


@router.get("/policies/{policy_id}", response_model=PolicyOut, tags=["policies"])
async def get_policy(policy_id: uuid.UUID, session: SessionDep, _: Reader) -> PolicyOut:
    """One policy version."""
    return PolicyOut.model_validate(await tiering_service.get_policy(session, policy_id))


@router.post(
    "/policies/{policy_id}/activate",
    responses=problems(409, 429),
    response_model=RankingOutcome,
    tags=["policies"],
)
async def activate_policy(
    policy_id: uuid.UUID,
    session: SessionDep,
    heavy: HeavyDep,
    _: Admin,
    body: OptionalAsOf = None,
) -> RankingOutcome:
    """Make this version the active policy (the previous one retires) and re-rank everyone."""
    async with heavy.slot("The activation's re-rank"):
        return await tiering_service.activate_policy(
            session, policy_id, body.as_of if body else None
        )


@router.post(
    "/policies/{policy_id}/simulate",
    responses=problems(409, 429),
    response_model=RankingOutcome,
    tags=["policies"],
)
async def simulate_policy(
    policy_id: uuid.UUID,
    session: SessionDep,
    heavy: HeavyDep,
    _: Analyst,
    body: OptionalAsOf = None,
) -> RankingOutcome:
    """What this policy would do (optionally as of a past moment), applying nothing."""
    async with heavy.slot("The simulation"):
        return await tiering_service.simulate(session, policy_id, body.as_of if body else None)


@router.post(
    "/backtests",
    status_code=201,
    response_model=BacktestOut,
    responses=problems(409, 429),
    tags=["backtests"],
)
async def create_backtest(
    body: BacktestCreate,
    session: SessionDep,
    heavy: HeavyDep,
    principal: Analyst,
    response: Response,
) -> BacktestOut:
    """Apply a policy (the active one by default) to everyone as of a past moment, as a
    report of its own: current tiers stay, nothing is announced. Where the horizon after
    that moment has passed, the report says how the churn risk ranked who bought again
    (AUC beside days since the last purchase)."""
    async with heavy.slot("The back-test"):
        backtest = await tiering_service.create_backtest(session, body, principal.user)
    response.headers["Location"] = f"/v1/backtests/{backtest.id}"
    return backtest_out(backtest)


@router.get("/backtests", response_model=Page[BacktestOut], tags=["backtests"])
async def list_backtests(
    session: SessionDep, _: Analyst, cursor: Cursor = None, limit: Limit = 20
) -> Page[BacktestOut]:
    """The kept back-tests (the newest 20), newest first."""
    rows = await repo.backtests.page(session, decode_time_key(cursor), limit + 1)
    return page_of(rows, limit, backtest_out, lambda row: (row.created_at.isoformat(), row.id))


@router.get("/backtests/{backtest_id}", response_model=BacktestOut, tags=["backtests"])
async def get_backtest(backtest_id: uuid.UUID, session: SessionDep, _: Analyst) -> BacktestOut:
    """One back-test's figures."""
    return backtest_out(await tiering_service.get_backtest(session, backtest_id))


@router.get(
    "/backtests/{backtest_id}/customers",
    response_model=Page[BacktestCustomerOut],
    tags=["backtests"],
)
async def backtest_customers(
    backtest_id: uuid.UUID,
    session: SessionDep,
    _: Analyst,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[BacktestCustomerOut]:
    """Every customer's tier and scores in the back-test, best rank first."""
    backtest = await tiering_service.get_backtest(session, backtest_id)
    after = _rank_key(cursor)
    rows = await repo.backtests.customers(session, backtest.id, after, limit + 1)
    convert = backtest_customer_out(backtest)
    return page_of(rows, limit, convert, lambda row: (row.rank, row.customer_key))


@router.get(
    "/backtests/{backtest_id}/customers.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
    tags=["backtests"],
)
async def backtest_customers_csv(
    backtest_id: uuid.UUID, session: SessionDep, _: Analyst, request: Request
) -> StreamingResponse:
    """The same rows as CSV, streamed (a header line, then one line per customer)."""
    backtest = await tiering_service.get_backtest(session, backtest_id)
    convert = backtest_customer_out(backtest)
    fields = list(BacktestCustomerOut.model_fields)
    sessions = runtime_of(request).sessions  # the request's own session ends before the body

    async def lines() -> AsyncIterator[str]:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(fields)
        after = None
        while True:
            async with sessions() as reading:
                rows = await repo.backtests.customers(reading, backtest.id, after, CSV_CHUNK)
            for row in rows:
                item = convert(row).model_dump(mode="json")
                writer.writerow(["" if item[name] is None else item[name] for name in fields])
            yield out.getvalue()
            out.seek(0)
            out.truncate()
            if len(rows) < CSV_CHUNK:
                return
            after = (rows[-1].rank, rows[-1].customer_key)

    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="backtest-{backtest.id}.csv"'},
    )


def backtest_out(backtest: Backtest) -> BacktestOut:
    return BacktestOut(
        id=backtest.id,
        policy_id=backtest.policy_id,
        policy_version=backtest.policy_version,
        as_of=backtest.as_of,
        horizon_days=backtest.horizon_days,
        customers=backtest.customers,
        tiers=backtest.figures["tiers"],
        churn=backtest.figures["churn"],
        created_at=backtest.created_at,
        created_by=backtest.created_by,
    )


def backtest_customer_out(backtest: Backtest) -> Callable[[BacktestCustomer], BacktestCustomerOut]:
    metric = backtest.figures.get("metric", "revenue")

    def convert(row: BacktestCustomer) -> BacktestCustomerOut:
        return BacktestCustomerOut(
            customer_id=row.customer_id,
            rank=row.rank,
            value=in_units(row.value, metric),
            tier=row.tier,
            band_tier=row.band_tier,
            rfm_r=row.rfm_r,
            rfm_f=row.rfm_f,
            rfm_m=row.rfm_m,
            value_segment=row.value_segment,
            thermometer=row.thermometer,
            churn_risk=row.churn_risk,
            at_risk=row.at_risk,
            bought_again=row.bought_again,
        )

    return convert


def _rank_key(cursor: str | None) -> tuple[int, int] | None:
    if cursor is None:
        return None
    rank, key = decode_cursor(cursor, 2)
    if not (rank.isdigit() and key.isdigit()):
        raise InvalidInput("The cursor is not one this service issued.")
    return int(rank), int(key)


@router.get("/churn-model", response_model=ChurnModelOut, tags=["churn"])
async def churn_model(session: SessionDep, _: Reader) -> ChurnModelOut:
    """The churn model's latest fit on this customer base: when, on how many customers,
    its back-tested AUC beside days-since-the-last-purchase alone on the same customers,
    and whether customers' churn risk comes from it (`learned`) or from the rules."""
    return await tiering_service.churn_model(session)


@router.post(
    "/churn-model/fit", response_model=ChurnModelOut, responses=problems(429), tags=["churn"]
)
async def fit_churn_model(session: SessionDep, heavy: HeavyDep, _: Admin) -> ChurnModelOut:
    """Fit the churn model now (it is also fitted daily). Its risk applies from the next
    ranking: `POST /v1/recompute` applies it at once."""
    async with heavy.slot("The fit"):
        await tiering_service.fit_churn_model(session)
    return await tiering_service.churn_model(session)


@router.post(
    "/recompute", responses=problems(409, 429), response_model=RankingOutcome, tags=["policies"]
)
async def recompute(
    session: SessionDep, heavy: HeavyDep, _: Admin, body: OptionalAsOf = None
) -> RankingOutcome:
    """Re-rank everyone under the active policy now (or as of a moment)."""
    async with heavy.slot("The re-rank"):
        return await tiering_service.recompute(session, body.as_of if body else None)
