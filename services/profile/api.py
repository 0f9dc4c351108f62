"""Profile routes: thin, they parse, authorize, call the service and shape the answer."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from services.profile.imports import IMPORTERS, ImportReport
from services.profile.models import Contact, Customer, Interaction, Payment, Purchase
from services.profile.schemas import (
    AuditEntryOut,
    ConsentChangeOut,
    ConsentOut,
    ConsentUpdate,
    ContactCreate,
    ContactOut,
    ContactPatch,
    Credit,
    CustomerCreate,
    CustomerDetail,
    CustomerOut,
    CustomerPatch,
    InteractionCreate,
    InteractionOut,
    PaymentCreate,
    PaymentOut,
    PurchaseCreate,
    PurchaseOut,
    ReferralsOut,
    StageChangeOut,
)
from services.profile.service import RECORD_TIME, profile_service
from shared.app import SessionDep, SettingsDep, runtime_of
from shared.auth import Principal, require_roles
from shared.errors import InvalidInput, UnsupportedMediaType
from shared.fields import Timestamp
from shared.idempotency import IdempotencyKey, idempotent
from shared.openapi import problems
from shared.pagination import Cursor, Limit, Page, decode_cursor, page_of

router = APIRouter()

READERS = require_roles("account_manager", "analyst", "agent")
CONTACT_READERS = require_roles("account_manager", "agent")  # contact details are personal
Reader = Annotated[Principal, Depends(READERS)]
ContactReader = Annotated[Principal, Depends(CONTACT_READERS)]
Writer = Annotated[Principal, Depends(require_roles("account_manager"))]
Admin = Annotated[Principal, Depends(require_roles())]
FilterText = Annotated[str | None, Query(max_length=100)]
IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=200,
        description="Required on changes: the ETag of the version read (428 without it, "
        "412 when it is no longer current).",
    ),
]
Out = TypeVar("Out", bound=BaseModel)


def present(customer: Customer) -> CustomerOut:
    """The API view of a customer row."""
    return CustomerOut(
        **{
            field: getattr(customer, field)
            for field in CustomerOut.model_fields
            if field not in ("credit",)
        },
        credit=Credit(
            rating=customer.credit_rating,
            limit=customer.credit_limit,
            solvency_notes=customer.credit_notes,
        ),
    )


async def records_page(
    session: AsyncSession,
    model: type[Any],
    out: type[Out],
    customer_id: uuid.UUID,
    principal: Principal,
    *,
    cursor: str | None,
    limit: int,
    since: Timestamp | None = None,
    until: Timestamp | None = None,
) -> Page[Out]:
    """A page of one kind of customer record, in the order of its time column."""
    rows = await profile_service.list_records(
        session,
        model,
        customer_id,
        principal,
        cursor=cursor,
        limit=limit + 1,
        since=since,
        until=until,
    )
    time_name = RECORD_TIME[model]
    return page_of(
        rows, limit, out.model_validate, lambda row: (getattr(row, time_name).isoformat(), row.id)
    )


def with_etag(response: Response, customer: Customer) -> None:
    response.headers["ETag"] = f'"{customer.version}"'


# ---------------------------------------------------------------- customers
@router.post(
    "/customers",
    responses=problems(409),
    status_code=201,
    response_model=CustomerOut,
    tags=["customers"],
)
async def create_customer(
    body: CustomerCreate,
    session: SessionDep,
    principal: Writer,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> object:
    """Create a customer; emits `customer.created`."""

    async def create() -> CustomerOut:
        customer = await profile_service.create_customer(session, body, principal)
        with_etag(response, customer)
        return present(customer)

    return await idempotent(
        session,
        scope=f"customers:{principal.user}",
        key=idempotency_key,
        request=body,
        response=response,
        create=create,
        location="/v1/customers/{id}",
    )


@router.get("/customers", response_model=Page[CustomerOut], tags=["customers"])
async def list_customers(
    session: SessionDep,
    principal: Reader,
    external_ref: FilterText = None,
    stage: FilterText = None,
    region: FilterText = None,
    industry: FilterText = None,
    account_manager: FilterText = None,
    tier: FilterText = None,
    relationship_level: FilterText = None,
    kind: FilterText = None,
    source: FilterText = None,
    text: FilterText = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[CustomerOut]:
    """List customers, filtered by any of the fields (`external_ref`: the one customer of a
    reference) and by free text over names and contacts."""
    filters = {
        name: value
        for name, value in {
            "external_ref": external_ref,
            "stage": stage,
            "region": region,
            "industry": industry,
            "account_manager": account_manager,
            "tier": tier,
            "relationship_level": relationship_level,
            "kind": kind,
            "source": source,
        }.items()
        if value is not None
    }
    rows = await profile_service.list_customers(
        session, filters=filters, text=text, cursor=cursor, limit=limit + 1, actor=principal
    )
    return page_of(rows, limit, present, lambda c: (c.created_at.isoformat(), c.id))


@router.get(
    "/customers/{customer_id}",
    responses=problems(410),
    response_model=CustomerDetail,
    tags=["customers"],
)
async def get_customer(
    customer_id: uuid.UUID, session: SessionDep, principal: Reader, response: Response
) -> CustomerDetail:
    """One customer with its stage history; its `ETag` goes back in `If-Match` to change it."""
    customer = await profile_service.get_customer(session, customer_id, principal)
    history = await profile_service.stage_history(session, customer)
    with_etag(response, customer)
    return CustomerDetail(
        **present(customer).model_dump(),
        history=[StageChangeOut.model_validate(change) for change in history],
    )


@router.patch(
    "/customers/{customer_id}",
    responses=problems(409, 410, 412, 428),
    response_model=CustomerOut,
    tags=["customers"],
)
async def update_customer(
    customer_id: uuid.UUID,
    body: CustomerPatch,
    session: SessionDep,
    principal: Writer,
    response: Response,
    if_match: IfMatch = None,
) -> CustomerOut:
    """Change some fields (needs `If-Match`); emits `customer.updated` with what changed."""
    customer = await profile_service.update_customer(
        session, customer_id, body, if_match, principal
    )
    with_etag(response, customer)
    return present(customer)


@router.delete(
    "/customers/{customer_id}", responses=problems(410), status_code=204, tags=["customers"]
)
async def erase_customer(customer_id: uuid.UUID, session: SessionDep, principal: Admin) -> None:
    """Erase the customer's personal data, keeping anonymous amounts; emits `customer.erased`."""
    await profile_service.erase_customer(session, customer_id, principal)


@router.get(
    "/customers/{customer_id}/audit",
    responses=problems(410),
    response_model=Page[AuditEntryOut],
    tags=["customers"],
)
async def get_audit_trail(
    customer_id: uuid.UUID,
    session: SessionDep,
    principal: Reader,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[AuditEntryOut]:
    """Every change to the customer: who, what, when (newest first)."""
    before = None
    if cursor is not None:
        (position,) = decode_cursor(cursor, 1)
        if not position.isdigit():
            raise InvalidInput("The cursor is not one this service issued.")
        before = int(position)
    rows = await profile_service.audit_trail(
        session, customer_id, principal, before=before, limit=limit + 1
    )
    return page_of(rows, limit, AuditEntryOut.model_validate, lambda entry: (entry["id"],))


@router.get(
    "/customers/{customer_id}/referrals",
    responses=problems(410),
    response_model=ReferralsOut,
    tags=["customers"],
)
async def get_referrals(
    customer_id: uuid.UUID, session: SessionDep, principal: Reader
) -> ReferralsOut:
    """Whom the customer referred, directly and further down, and what those bought."""
    return ReferralsOut.model_validate(
        await profile_service.referrals(session, customer_id, principal)
    )


# ---------------------------------------------------------------- contacts and consent
@router.post(
    "/customers/{customer_id}/contacts",
    responses=problems(409, 410),
    status_code=201,
    response_model=ContactOut,
    tags=["contacts"],
)
async def add_contact(
    customer_id: uuid.UUID,
    body: ContactCreate,
    session: SessionDep,
    principal: Writer,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> object:
    """Add a contact person (who decides, who uses, their birthdays)."""

    async def create() -> ContactOut:
        contact = await profile_service.add_contact(session, customer_id, body, principal)
        return ContactOut.model_validate(contact)

    return await idempotent(
        session,
        scope=f"contacts:{principal.user}:{customer_id}",
        key=idempotency_key,
        request=body,
        response=response,
        create=create,
        location=f"/v1/customers/{customer_id}/contacts/{{id}}",
    )


@router.patch(
    "/customers/{customer_id}/contacts/{contact_id}",
    responses=problems(410),
    response_model=ContactOut,
    tags=["contacts"],
)
async def update_contact(
    customer_id: uuid.UUID,
    contact_id: uuid.UUID,
    body: ContactPatch,
    session: SessionDep,
    principal: Writer,
) -> ContactOut:
    """Change some of a contact's fields."""
    contact = await profile_service.update_contact(
        session, customer_id, contact_id, body, principal
    )
    return ContactOut.model_validate(contact)


@router.delete(
    "/customers/{customer_id}/contacts/{contact_id}",
    responses=problems(410),
    status_code=204,
    tags=["contacts"],
)
async def remove_contact(
    customer_id: uuid.UUID, contact_id: uuid.UUID, session: SessionDep, principal: Writer
) -> None:
    """Remove a contact (interactions with it are kept, without the link)."""
    await profile_service.remove_contact(session, customer_id, contact_id, principal)


@router.get(
    "/customers/{customer_id}/contacts",
    responses=problems(410),
    response_model=Page[ContactOut],
    tags=["contacts"],
)
async def list_contacts(
    customer_id: uuid.UUID,
    session: SessionDep,
    principal: ContactReader,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[ContactOut]:
    """The customer's contacts (not for analysts: contact details are personal)."""
    return await records_page(
        session, Contact, ContactOut, customer_id, principal, cursor=cursor, limit=limit
    )


@router.put(
    "/customers/{customer_id}/consent",
    responses=problems(410),
    response_model=ConsentOut,
    tags=["contacts"],
)
async def set_consent(
    customer_id: uuid.UUID, body: ConsentUpdate, session: SessionDep, principal: Writer
) -> ConsentOut:
    """Grant or withdraw consent per channel; channels left out are unchanged."""
    customer = await profile_service.set_consent(session, customer_id, body, principal)
    history = await profile_service.consent_history(session, customer)
    return ConsentOut(
        customer_id=customer.id,
        consent=customer.consent,
        history=[ConsentChangeOut.model_validate(change) for change in history],
    )


@router.get(
    "/customers/{customer_id}/consent",
    responses=problems(410),
    response_model=ConsentOut,
    tags=["contacts"],
)
async def get_consent(customer_id: uuid.UUID, session: SessionDep, principal: Reader) -> ConsentOut:
    """Current consent per channel and every decision behind it."""
    customer = await profile_service.get_customer(session, customer_id, principal)
    history = await profile_service.consent_history(session, customer)
    return ConsentOut(
        customer_id=customer.id,
        consent=customer.consent,
        history=[ConsentChangeOut.model_validate(change) for change in history],
    )


# ---------------------------------------------------------------- purchases, payments, interactions
@router.post(
    "/customers/{customer_id}/purchases",
    responses=problems(409, 410),
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
            session, customer_id, body, settings.base_currency, principal
        )
        return PurchaseOut.model_validate(purchase)

    return await idempotent(
        session,
        scope=f"purchases:{principal.user}:{customer_id}",
        key=idempotency_key,
        request=body,
        response=response,
        create=create,
        location=f"/v1/customers/{customer_id}/purchases/{{id}}",
    )


@router.get(
    "/customers/{customer_id}/purchases",
    responses=problems(410),
    response_model=Page[PurchaseOut],
    tags=["purchases"],
)
async def list_purchases(
    customer_id: uuid.UUID,
    session: SessionDep,
    principal: Reader,
    since: Annotated[Timestamp | None, Query(alias="from")] = None,
    until: Annotated[Timestamp | None, Query(alias="to")] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[PurchaseOut]:
    """A customer's purchases, oldest first, optionally in [from, to)."""
    return await records_page(
        session,
        Purchase,
        PurchaseOut,
        customer_id,
        principal,
        cursor=cursor,
        limit=limit,
        since=since,
        until=until,
    )


@router.post(
    "/customers/{customer_id}/payments",
    responses=problems(409, 410),
    status_code=201,
    response_model=PaymentOut,
    tags=["purchases"],
)
async def record_payment(
    customer_id: uuid.UUID,
    body: PaymentCreate,
    session: SessionDep,
    settings: SettingsDep,
    principal: Writer,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> object:
    """Record money collected; emits `payment.recorded`."""

    async def create() -> PaymentOut:
        payment = await profile_service.record_payment(
            session, customer_id, body, settings.base_currency, principal
        )
        return PaymentOut.model_validate(payment)

    return await idempotent(
        session,
        scope=f"payments:{principal.user}:{customer_id}",
        key=idempotency_key,
        request=body,
        response=response,
        create=create,
        location=f"/v1/customers/{customer_id}/payments/{{id}}",
    )


@router.get(
    "/customers/{customer_id}/payments",
    responses=problems(410),
    response_model=Page[PaymentOut],
    tags=["purchases"],
)
async def list_payments(
    customer_id: uuid.UUID,
    session: SessionDep,
    principal: Reader,
    since: Annotated[Timestamp | None, Query(alias="from")] = None,
    until: Annotated[Timestamp | None, Query(alias="to")] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[PaymentOut]:
    """Money collected from the customer, oldest first."""
    return await records_page(
        session,
        Payment,
        PaymentOut,
        customer_id,
        principal,
        cursor=cursor,
        limit=limit,
        since=since,
        until=until,
    )


@router.post(
    "/customers/{customer_id}/interactions",
    responses=problems(409, 410),
    status_code=201,
    response_model=InteractionOut,
    tags=["interactions"],
)
async def log_interaction(
    customer_id: uuid.UUID,
    body: InteractionCreate,
    session: SessionDep,
    principal: Writer,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> object:
    """Log a visit, call, meeting, event, gift or survey; emits `interaction.logged`."""

    async def create() -> InteractionOut:
        interaction = await profile_service.log_interaction(session, customer_id, body, principal)
        return InteractionOut.model_validate(interaction)

    return await idempotent(
        session,
        scope=f"interactions:{principal.user}:{customer_id}",
        key=idempotency_key,
        request=body,
        response=response,
        create=create,
        location=f"/v1/customers/{customer_id}/interactions/{{id}}",
    )


@router.get(
    "/customers/{customer_id}/interactions",
    responses=problems(410),
    response_model=Page[InteractionOut],
    tags=["interactions"],
)
async def list_interactions(
    customer_id: uuid.UUID,
    session: SessionDep,
    principal: Reader,
    since: Annotated[Timestamp | None, Query(alias="from")] = None,
    until: Annotated[Timestamp | None, Query(alias="to")] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[InteractionOut]:
    """Interactions with the customer, oldest first."""
    return await records_page(
        session,
        Interaction,
        InteractionOut,
        customer_id,
        principal,
        cursor=cursor,
        limit=limit,
        since=since,
        until=until,
    )


# ---------------------------------------------------------------- imports
CSV_MEDIA_TYPES = frozenset({"text/csv", "application/csv", "text/plain"})
CUSTOMERS_CSV = (
    "external_ref,name,kind,industry,region,timezone,account_manager,birthday,consent_email\n"
    "ACME-1,Acme Trading Co.,company,wholesale,East China,Asia/Shanghai,mia,,granted\n"
    "P-7,Zhang Min,person,,,Asia/Shanghai,noah,1985-06-01,withdrawn\n"
)
PURCHASES_CSV = (
    "customer_ref,external_id,amount,currency,quantity,category,sku,purchased_at\n"
    "ACME-1,ORDER-41,1299.50,CNY,2,tea,TEA-OOLONG-500,2026-11-30T10:15:00+08:00\n"
    "ACME-1,ORDER-42,-120.00,CNY,1,tea,TEA-OOLONG-500,2026-12-01T09:00:00+08:00\n"
)


def csv_body(example: str) -> dict[str, Any]:
    """The OpenAPI request body of an import: the CSV raw, or as a form's `file` field."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string", "format": "binary"}, "example": example},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {"file": {"type": "string", "format": "binary"}},
                    },
                    "encoding": {"file": {"contentType": "text/csv"}},
                    "example": {"file": example},
                },
            },
        }
    }


@asynccontextmanager
async def uploaded_csv(request: Request) -> AsyncIterator[AsyncIterator[bytes]]:
    """The CSV bytes of an import: the raw body (`text/csv`), or the `file` field of a
    form upload (`multipart/form-data`, as browsers and `curl -F file=@x.csv` send it,
    spooled to disk by Starlette, never held in memory)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type in CSV_MEDIA_TYPES:
        yield request.stream()
        return
    if media_type != "multipart/form-data":
        raise UnsupportedMediaType(
            f"Send the CSV as text/csv or as the 'file' field of multipart/form-data, "
            f"not {media_type or 'a body without a content type'}."
        )
    try:
        form = await request.form(max_files=1, max_fields=10)
    except HTTPException as exc:  # Starlette's answer to a form it cannot parse
        raise InvalidInput(f"The form upload is malformed: {exc.detail}.") from exc
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInput(
                "The form has no file field named 'file'.",
                errors=[{"field": "file", "in": "body", "message": "missing", "type": "missing"}],
            )

        async def chunks() -> AsyncIterator[bytes]:
            while chunk := await upload.read(1 << 20):
                yield chunk

        yield chunks()
    finally:
        await form.close()


async def _import(kind: str, request: Request, principal: Principal) -> ImportReport:
    runtime = runtime_of(request)
    async with uploaded_csv(request) as chunks:
        return await IMPORTERS[kind].run(
            runtime.sessions,
            chunks,
            actor=principal.user,
            base_currency=runtime.settings.base_currency,
            on_commit=runtime.relay.wake,
        )


@router.post(
    "/imports/customers",
    response_model=ImportReport,
    tags=["imports"],
    openapi_extra=csv_body(CUSTOMERS_CSV),
    responses=problems(415),
)
async def import_customers(request: Request, principal: Admin) -> ImportReport:
    """Import customers from CSV (streamed; re-importing the same file creates nothing new).

    Columns: external_ref, name, kind (required) and any of industry, region, size,
    years_in_business, industry_standing, timezone, source, stage, relationship_level,
    account_manager, birthday, credit_rating, credit_limit, notes, referred_by_ref,
    consent_sms, consent_email, consent_phone, consent_letter.
    """
    return await _import("customers", request, principal)


@router.post(
    "/imports/purchases",
    response_model=ImportReport,
    tags=["imports"],
    openapi_extra=csv_body(PURCHASES_CSV),
    responses=problems(415),
)
async def import_purchases(request: Request, principal: Admin) -> ImportReport:
    """Import purchases from CSV (streamed; rows keep their own purchased_at).

    Columns: amount, currency, purchased_at (required), customer_id or customer_ref, and
    any of external_id, quantity, unit, category, sku. A row with an external_id already
    imported for its customer is skipped.
    """
    return await _import("purchases", request, principal)


# ---------------------------------------------------------------- one record each
def _record_route(
    path: str, model: type[Any], out: type[BaseModel], readers: Any, tag: str
) -> None:
    """`GET /v1/customers/{customer_id}/<path>/{record_id}`: one record, where the POST's
    Location points; the same access as the list beside it."""

    async def get_record(
        customer_id: uuid.UUID,
        record_id: uuid.UUID,
        session: SessionDep,
        principal: Principal = readers,
    ) -> Any:
        record = await profile_service.get_record(session, model, customer_id, record_id, principal)
        return out.model_validate(record)

    get_record.__doc__ = f"One of the customer's {path}."
    router.get(
        f"/customers/{{customer_id}}/{path}/{{record_id}}",
        responses=problems(410),
        response_model=out,
        tags=[tag],
        name=f"get_{path}_record",
    )(get_record)


for _path, _model, _out, _readers, _tag in (
    ("contacts", Contact, ContactOut, Depends(CONTACT_READERS), "contacts"),
    ("purchases", Purchase, PurchaseOut, Depends(READERS), "purchases"),
    ("payments", Payment, PaymentOut, Depends(READERS), "purchases"),
    ("interactions", Interaction, InteractionOut, Depends(READERS), "interactions"),
):
    _record_route(_path, _model, _out, _readers, _tag)
