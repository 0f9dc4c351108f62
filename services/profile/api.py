"""Profile routes: thin, they parse, authorize, call the service and shape the answer."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from services.profile.schemas import CustomerCreate, CustomerOut, PurchaseCreate, PurchaseOut
from services.profile.service import profile_service
from shared.app import SessionDep, SettingsDep
from shared.auth import Principal, require_roles
from shared.idempotency import IdempotencyKey, idempotent
from shared.pagination import Cursor, Limit, Page, encode_cursor

router = APIRouter(tags=["customers"])

Reader = Annotated[Principal, Depends(require_roles("account_manager", "analyst", "agent"))]
Writer = Annotated[Principal, Depends(require_roles("account_manager"))]
FilterText = Annotated[str | None, Query(max_length=100)]


@router.post("/customers", status_code=201, response_model=CustomerOut)
async def create_customer(
    body: CustomerCreate,
    session: SessionDep,
    principal: Writer,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> object:
    """Create a customer; emits `customer.created`."""

    async def create() -> CustomerOut:
        customer = await profile_service.create_customer(session, body)
        return CustomerOut.model_validate(customer)

    return await idempotent(
        session,
        scope=f"customers:{principal.user}",
        key=idempotency_key,
        request=body,
        response=response,
        create=create,
    )


@router.get("/customers", response_model=Page[CustomerOut])
async def list_customers(
    session: SessionDep,
    _: Reader,
    stage: FilterText = None,
    region: FilterText = None,
    industry: FilterText = None,
    account_manager: FilterText = None,
    tier: FilterText = None,
    text: FilterText = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[CustomerOut]:
    """List customers, filtered by any of the fields and by free text."""
    filters = {
        name: value
        for name, value in {
            "stage": stage,
            "region": region,
            "industry": industry,
            "account_manager": account_manager,
            "tier": tier,
        }.items()
        if value is not None
    }
    rows = await profile_service.list_customers(
        session, filters=filters, text=text, cursor=cursor, limit=limit + 1
    )
    items = [CustomerOut.model_validate(row) for row in rows[:limit]]
    more = len(rows) > limit
    return Page(
        items=items,
        next_cursor=encode_cursor(items[-1].created_at.isoformat(), items[-1].id) if more else None,
    )


@router.get("/customers/{customer_id}", response_model=CustomerOut)
async def get_customer(
    customer_id: uuid.UUID, session: SessionDep, _: Reader, response: Response
) -> CustomerOut:
    """One customer; its `ETag` is the version to send back in `If-Match`."""
    customer = await profile_service.get_customer(session, customer_id)
    response.headers["ETag"] = f'"{customer.version}"'
    return CustomerOut.model_validate(customer)


@router.post(
    "/customers/{customer_id}/purchases",
    status_code=201,
    response_model=PurchaseOut,
    tags=["purchases"],
)
async def record_purchase(
    customer_id: uuid.UUID,
    body: PurchaseCreate,
    session: SessionDep,
    settings: SettingsDep,
    principal: Writer,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> object:
    """Record a purchase; emits `purchase.recorded`."""

    async def create() -> PurchaseOut:
        purchase = await profile_service.record_purchase(
            session, customer_id, body, settings.base_currency
        )
        return PurchaseOut.model_validate(purchase)

    return await idempotent(
        session,
        scope=f"purchases:{principal.user}:{customer_id}",
        key=idempotency_key,
        request=body,
        response=response,
        create=create,
    )


@router.get(
    "/customers/{customer_id}/purchases", response_model=Page[PurchaseOut], tags=["purchases"]
)
async def list_purchases(
    customer_id: uuid.UUID,
    session: SessionDep,
    _: Reader,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[PurchaseOut]:
    """A customer's purchases, oldest first."""
    rows = await profile_service.list_purchases(
        session, customer_id, cursor=cursor, limit=limit + 1
    )
    items = [PurchaseOut.model_validate(row) for row in rows[:limit]]
    more = len(rows) > limit
    return Page(
        items=items,
        next_cursor=encode_cursor(items[-1].purchased_at.isoformat(), items[-1].id)
        if more
        else None,
    )
