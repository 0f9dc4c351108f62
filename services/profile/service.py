"""Profile rules. Each change adds its audit entry and its outbox event; never commits."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.profile import repository as repo
from services.profile.models import (
    AuditEntry,
    ConsentChange,
    Contact,
    Customer,
    CustomerChange,
    Interaction,
    Payment,
    Purchase,
)
from services.profile.repository import Row
from services.profile.schemas import (
    REQUIRED_ON_PATCH,
    ConsentUpdate,
    ContactCreate,
    ContactPatch,
    CustomerCreate,
    CustomerPatch,
    InteractionCreate,
    PaymentCreate,
    PurchaseCreate,
)
from shared.access import CustomerAccess, access_of
from shared.auth import Principal
from shared.db import utcnow
from shared.errors import (
    Conflict,
    Forbidden,
    Gone,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    ProblemError,
)
from shared.events import (
    CustomerCreated,
    InteractionLogged,
    PaymentRecorded,
    PurchaseRecorded,
)
from shared.outbox import record_event
from shared.pagination import decode_time_key

PRODUCER = "profile"
# The column each kind of customer record is listed (and paged) by.
RECORD_TIME: dict[type[Any], str] = {
    Contact: "created_at",
    Purchase: "purchased_at",
    Payment: "received_at",
    Interaction: "at",
}
TRACKED_STAGES = ("stage", "relationship_level")
# Customer fields that are personal data: cleared on erasure.
PERSONAL_FIELDS = ("name", "birthday", "notes", "credit_notes", "external_ref")


class PreconditionRequired(ProblemError):
    status = 428
    code = "precondition-required"
    title = "Precondition required"


def field_error(field: str, message: str) -> InvalidInput:
    return InvalidInput(
        f"{field}: {message}", errors=[{"field": field, "message": message, "type": "value"}]
    )


def scoped_to_own(principal: Principal) -> bool:
    """Account managers see and change only the customers assigned to them (the shared
    rule of `shared.access`)."""
    return access_of(principal).manager_scope is not None


# Audit actions about contact people: their details are not for analysts.
CONTACT_ACTIONS = frozenset({"contact_added", "contact_updated", "contact_removed"})
REDACTED = "[redacted]"


def redacted_for(access: CustomerAccess, entry: AuditEntry) -> dict[str, Any]:
    """An audit entry as `access` may read it: a contact change keeps only which contact
    changed and which fields, for a key that may not see personal details."""
    changes = dict(entry.changes or {})
    if entry.action in CONTACT_ACTIONS and not access.sees_personal_details:
        changes = {
            key: value if key == "contact_id" else REDACTED for key, value in changes.items()
        }
    return {
        "id": entry.id,
        "actor": entry.actor,
        "action": entry.action,
        "changes": changes,
        "at": entry.at,
    }


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime | uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, list):
        return [_json_value(item) for item in value]
    if isinstance(value, dict):
        return {key: _json_value(item) for key, item in value.items()}
    return value


def next_revision(customer: Customer) -> int:
    """The revision of the customer's next `customer.*` event (kept on the row, which the
    writer holds locked: two events of one customer never share one)."""
    customer.revision = (customer.revision or 0) + 1
    return customer.revision


# What `customer.updated` says of each key contact (contract: docs/contract.md).
CONTACT_EVENT_FIELDS = (
    "id",
    "name",
    "role",
    "phone",
    "email",
    "birthday",
    "birthday_calendar",
    "decision_maker",
)


def customer_changes_payload(customer: Customer, fields: Sequence[str]) -> dict[str, Any]:
    """The public values of `fields` (as in customer.updated)."""
    payload: dict[str, Any] = {}
    for field in fields:
        if field == "credit":
            payload["credit"] = {
                "rating": customer.credit_rating,
                "limit": _json_value(customer.credit_limit),
                "solvency_notes": customer.credit_notes,
            }
        else:
            payload[field] = _json_value(getattr(customer, field))
    return payload


def assign_customer_fields(customer: Customer, values: dict[str, Any]) -> None:
    """Set customer columns from API field values (credit is three columns)."""
    for field, value in values.items():
        if field == "credit":
            credit = value or {}
            customer.credit_rating = credit.get("rating")
            customer.credit_limit = credit.get("limit")
            customer.credit_notes = credit.get("solvency_notes")
        elif field in ("suppliers", "key_dates"):
            setattr(customer, field, _json_value(value or []))
        elif field == "attributes":
            customer.attributes = _json_value(value or {})
        else:
            setattr(customer, field, value)


def customer_search_text(customer: Customer, contact_names: list[str]) -> str:
    """Lowercased names for the free-text filter."""
    parts = [customer.name or "", customer.external_ref or "", *contact_names]
    return " | ".join(part for part in parts if part).lower()


class ProfileService:
    """Customers, their contacts and consent, and what they buy, pay and say."""

    # ------------------------------------------------------------ customers
    async def create_customer(
        self, session: AsyncSession, data: CustomerCreate, actor: Principal
    ) -> Customer:
        """Create a customer and announce it (`customer.created`)."""
        if scoped_to_own(actor):
            if data.account_manager not in (None, actor.user):
                raise Forbidden("Account managers create customers for themselves only.")
            data = data.model_copy(update={"account_manager": actor.user})
        if data.external_ref:
            await self._check_new_ref(session, data.external_ref)
        if data.referred_by and await self._live(session, data.referred_by) is None:
            raise field_error("referred_by", "names no known customer")
        now = utcnow()
        customer = Customer(id=uuid.uuid4(), created_at=now, updated_at=now, version=1)
        assign_customer_fields(customer, data.model_dump(exclude={"consent"}))
        customer.consent = {str(channel): state for channel, state in data.consent.items()}
        customer.search_text = customer_search_text(customer, [])
        await repo.customers.add(session, customer)
        for channel, state in data.consent.items():
            session.add(
                ConsentChange(
                    customer_id=customer.id,
                    channel=channel,
                    state=state,
                    source="customer created",
                    recorded_by=actor.user,
                    at=now,
                )
            )
        for field in TRACKED_STAGES:
            session.add(
                CustomerChange(
                    customer_id=customer.id,
                    field=field,
                    from_value=None,
                    to_value=getattr(customer, field),
                    changed_by=actor.user,
                    changed_at=now,
                )
            )
        self._audit(session, customer.id, actor, "created", {})
        await record_event(
            session,
            producer=PRODUCER,
            event_type="customer.created",
            customer_id=customer.id,
            data=CustomerCreated(
                **customer_changes_payload(
                    customer,
                    [
                        "name",
                        "industry",
                        "region",
                        "stage",
                        "account_manager",
                        "birthday",
                        "birthday_calendar",
                        "key_dates",
                        "timezone",
                        "external_ref",
                        "relationship_level",
                        "source",
                        "referred_by",
                    ],
                ),
                kind=data.kind,
                consent=dict(customer.consent),
                revision=next_revision(customer),
            ),
            occurred_at=now,
        )
        return customer

    async def get_customer(
        self, session: AsyncSession, customer_id: uuid.UUID, actor: Principal
    ) -> Customer:
        """A live customer the caller may see; 404 otherwise, 410 once erased."""
        customer = await repo.customers.get(session, customer_id)
        return self._visible(customer, customer_id, actor)

    async def update_customer(
        self,
        session: AsyncSession,
        customer_id: uuid.UUID,
        patch: CustomerPatch,
        if_match: str | None,
        actor: Principal,
    ) -> Customer:
        """Apply the fields present in the patch; `customer.updated` carries what changed."""
        customer = self._visible(
            await repo.customers.get_for_update(session, customer_id), customer_id, actor
        )
        self._check_version(customer, if_match)
        given = patch.model_dump(include=patch.model_fields_set)
        cleared = [field for field in REQUIRED_ON_PATCH if field in given and given[field] is None]
        if cleared:
            raise field_error(cleared[0], "may not be null")
        if (
            "account_manager" in given
            and scoped_to_own(actor)
            and given["account_manager"] != actor.user
        ):
            raise Forbidden("Only an admin hands a customer to another account manager.")
        if given.get("external_ref") and given["external_ref"] != customer.external_ref:
            await self._check_new_ref(session, given["external_ref"])
        if given.get("referred_by") is not None:
            await self._check_referrer(session, customer.id, given["referred_by"])
        before = {field: customer_changes_payload(customer, [field])[field] for field in given}
        assign_customer_fields(customer, given)
        after = {field: customer_changes_payload(customer, [field])[field] for field in given}
        changed = [field for field in given if before[field] != after[field]]
        if not changed:
            return customer
        now = utcnow()
        for field in TRACKED_STAGES:
            if field in changed:
                session.add(
                    CustomerChange(
                        customer_id=customer.id,
                        field=field,
                        from_value=before[field],
                        to_value=after[field],
                        changed_by=actor.user,
                        changed_at=now,
                    )
                )
        customer.search_text = customer_search_text(
            customer, await repo.records.contact_names(session, customer.id)
        )
        customer.version += 1
        customer.updated_at = now
        await session.flush()
        self._audit(
            session,
            customer.id,
            actor,
            "updated",
            {field: [before[field], after[field]] for field in changed},
        )
        await record_event(
            session,
            producer=PRODUCER,
            event_type="customer.updated",
            customer_id=customer.id,
            data={
                **{field: after[field] for field in changed},
                "revision": next_revision(customer),
            },
            occurred_at=now,
        )
        return customer

    async def erase_customer(
        self, session: AsyncSession, customer_id: uuid.UUID, actor: Principal
    ) -> None:
        """Remove personal data, keep anonymous amounts; `customer.erased`."""
        customer = self._visible(
            await repo.customers.get_for_update(session, customer_id), customer_id, actor
        )
        now = utcnow()
        if customer.external_ref:
            customer.erased_ref_digest = repo.erased_ref_digest(customer.external_ref)
        for field in PERSONAL_FIELDS:
            setattr(customer, field, None)
        customer.suppliers = []
        customer.key_dates = []
        customer.attributes = {}
        customer.search_text = ""
        customer.erased_at = now
        customer.updated_at = now
        customer.version += 1
        await repo.records.erase_personal_records(session, customer.id)
        await repo.history.scrub_audit(session, customer.id)
        self._audit(session, customer.id, actor, "erased", {})
        await record_event(
            session,
            producer=PRODUCER,
            event_type="customer.erased",
            customer_id=customer.id,
            data={"revision": next_revision(customer)},
            occurred_at=now,
        )

    @staticmethod
    async def _check_new_ref(session: AsyncSession, ref: str) -> None:
        """409 for a reference another customer has, or an erased customer had."""
        if await repo.customers.get_by_external_ref(session, ref):
            raise Conflict(f"A customer with external_ref {ref!r} exists.")
        if await repo.customers.erased_refs(session, [ref]):
            raise Conflict(
                f"external_ref {ref!r} belonged to a customer who was erased: it is not "
                "used again, so the person is not brought back."
            )

    async def list_customers(
        self,
        session: AsyncSession,
        *,
        filters: dict[str, str],
        text: str | None,
        cursor: str | None,
        limit: int,
        actor: Principal,
    ) -> Sequence[Customer]:
        """Live customers the caller may see, matching every filter, oldest first."""
        if scoped_to_own(actor):
            if filters.get("account_manager", actor.user) != actor.user:
                return []
            filters = {**filters, "account_manager": actor.user}
        return await repo.customers.search(
            session,
            filters=filters,
            text=text,
            after=decode_time_key(cursor),
            limit=limit,
            contact_fields=access_of(actor).sees_personal_details,
        )

    async def stage_history(
        self, session: AsyncSession, customer: Customer
    ) -> Sequence[CustomerChange]:
        return await repo.history.stage_changes(session, customer.id)

    async def audit_trail(
        self,
        session: AsyncSession,
        customer_id: uuid.UUID,
        actor: Principal,
        *,
        before: int | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        """Who changed what, newest first (contact details redacted for analysts)."""
        await self.get_customer(session, customer_id, actor)
        access = access_of(actor)
        entries = await repo.history.audit(session, customer_id, before=before, limit=limit)
        return [redacted_for(access, entry) for entry in entries]

    # ------------------------------------------------------------ contacts and consent
    async def add_contact(
        self, session: AsyncSession, customer_id: uuid.UUID, data: ContactCreate, actor: Principal
    ) -> Contact:
        """Add a contact person."""
        customer = await self._writable(session, customer_id, actor)
        contact = Contact(
            id=uuid.uuid4(), customer_id=customer.id, created_at=utcnow(), **data.model_dump()
        )
        await repo.records.add(session, contact)
        customer.search_text = customer_search_text(
            customer, await repo.records.contact_names(session, customer.id)
        )
        self._audit(
            session,
            customer.id,
            actor,
            "contact_added",
            {"contact_id": str(contact.id), "name": contact.name},
        )
        await self._announce_contacts(session, customer)
        return contact

    async def update_contact(
        self,
        session: AsyncSession,
        customer_id: uuid.UUID,
        contact_id: uuid.UUID,
        patch: ContactPatch,
        actor: Principal,
    ) -> Contact:
        """Change some of a contact's fields."""
        customer = await self._writable(session, customer_id, actor)
        contact = await self._record_of(session, Contact, customer, contact_id)
        given = patch.model_dump(include=patch.model_fields_set)
        for field in ("name", "decision_maker", "birthday_calendar"):
            if field in given and given[field] is None:
                raise field_error(field, "may not be null")
        changes = {
            field: [_json_value(getattr(contact, field)), _json_value(value)]
            for field, value in given.items()
            if getattr(contact, field) != value
        }
        for field, value in given.items():
            setattr(contact, field, value)
        if changes:
            await session.flush()
            customer.search_text = customer_search_text(
                customer, await repo.records.contact_names(session, customer.id)
            )
            self._audit(
                session,
                customer.id,
                actor,
                "contact_updated",
                {"contact_id": str(contact.id), **changes},
            )
            await self._announce_contacts(session, customer)
        return contact

    async def remove_contact(
        self,
        session: AsyncSession,
        customer_id: uuid.UUID,
        contact_id: uuid.UUID,
        actor: Principal,
    ) -> None:
        """Remove a contact; interactions with it stay, without the link."""
        customer = await self._writable(session, customer_id, actor)
        contact = await self._record_of(session, Contact, customer, contact_id)
        await repo.records.remove_contact(session, contact)
        customer.search_text = customer_search_text(
            customer, await repo.records.contact_names(session, customer.id)
        )
        self._audit(session, customer.id, actor, "contact_removed", {"contact_id": str(contact.id)})
        await self._announce_contacts(session, customer)

    async def _announce_contacts(self, session: AsyncSession, customer: Customer) -> None:
        """`customer.updated` with the whole list of key contacts (birthdays and addresses
        for outreach), after any change to one of them."""
        contacts = await repo.records.contacts(session, customer.id)
        await record_event(
            session,
            producer=PRODUCER,
            event_type="customer.updated",
            customer_id=customer.id,
            data={
                "contacts": [
                    {field: _json_value(getattr(contact, field)) for field in CONTACT_EVENT_FIELDS}
                    for contact in contacts
                ],
                "revision": next_revision(customer),
            },
            occurred_at=utcnow(),
        )

    async def _record_of(
        self, session: AsyncSession, model: type[Row], customer: Customer, record_id: uuid.UUID
    ) -> Row:
        """A record of this customer's (404 for another customer's or none)."""
        record = await repo.records.get(session, model, record_id)
        if record is None or record.customer_id != customer.id:
            raise NotFound(f"Customer {customer.id} has no {model.__name__.lower()} {record_id}.")
        return record

    async def set_consent(
        self, session: AsyncSession, customer_id: uuid.UUID, data: ConsentUpdate, actor: Principal
    ) -> Customer:
        """Record consent decisions; unchanged channels are left alone."""
        customer = await self._writable(session, customer_id, actor, lock=True)
        decisions = data.model_dump(exclude={"source"}, exclude_none=True)
        if not decisions:
            raise field_error("sms", "name at least one channel (sms, email, phone, letter)")
        now = utcnow()
        current = dict(customer.consent)
        changed = {
            channel: state for channel, state in decisions.items() if current.get(channel) != state
        }
        for channel, state in changed.items():
            session.add(
                ConsentChange(
                    customer_id=customer.id,
                    channel=channel,
                    state=state,
                    source=data.source,
                    recorded_by=actor.user,
                    at=now,
                )
            )
        if changed:
            customer.consent = {**current, **changed}
            customer.version += 1
            customer.updated_at = now
            self._audit(
                session,
                customer.id,
                actor,
                "consent_changed",
                {**{c: [current.get(c), s] for c, s in changed.items()}, "source": data.source},
            )
            await record_event(
                session,
                producer=PRODUCER,
                event_type="customer.updated",
                customer_id=customer.id,
                data={"consent": dict(customer.consent), "revision": next_revision(customer)},
                occurred_at=now,
            )
        await session.flush()
        return customer

    async def consent_history(
        self, session: AsyncSession, customer: Customer
    ) -> Sequence[ConsentChange]:
        return await repo.history.consent_changes(session, customer.id)

    # ------------------------------------------------------------ purchases, payments, interactions
    async def record_purchase(
        self,
        session: AsyncSession,
        customer_id: uuid.UUID,
        data: PurchaseCreate,
        base_currency: str,
        actor: Principal,
    ) -> Purchase:
        """Record a purchase and announce it (`purchase.recorded`)."""
        customer = await self._writable(session, customer_id, actor)
        self._check_currency(data.currency, base_currency)
        await self._refuse_known_external_id(session, Purchase, customer.id, data.external_id)
        purchase = Purchase(
            id=uuid.uuid4(), customer_id=customer.id, created_at=utcnow(), **data.model_dump()
        )
        await repo.records.add(session, purchase)
        self._audit(
            session,
            customer.id,
            actor,
            "purchase_recorded",
            {"purchase_id": purchase.id, "amount": purchase.amount},
        )
        await record_event(
            session,
            producer=PRODUCER,
            event_type="purchase.recorded",
            customer_id=customer.id,
            data=PurchaseRecorded(purchase_id=purchase.id, **data.model_dump()),
        )
        return purchase

    async def record_payment(
        self,
        session: AsyncSession,
        customer_id: uuid.UUID,
        data: PaymentCreate,
        base_currency: str,
        actor: Principal,
    ) -> Payment:
        """Record money collected and announce it (`payment.recorded`)."""
        customer = await self._writable(session, customer_id, actor)
        self._check_currency(data.currency, base_currency)
        if data.purchase_id is not None:
            purchase = await repo.records.get(session, Purchase, data.purchase_id)
            if purchase is None or purchase.customer_id != customer.id:
                raise field_error("purchase_id", "names no purchase of this customer")
        await self._refuse_known_external_id(session, Payment, customer.id, data.external_id)
        payment = Payment(
            id=uuid.uuid4(), customer_id=customer.id, created_at=utcnow(), **data.model_dump()
        )
        await repo.records.add(session, payment)
        self._audit(
            session,
            customer.id,
            actor,
            "payment_recorded",
            {"payment_id": payment.id, "amount": payment.amount},
        )
        await record_event(
            session,
            producer=PRODUCER,
            event_type="payment.recorded",
            customer_id=customer.id,
            data=PaymentRecorded(payment_id=payment.id, **data.model_dump()),
        )
        return payment

    async def log_interaction(
        self,
        session: AsyncSession,
        customer_id: uuid.UUID,
        data: InteractionCreate,
        actor: Principal,
    ) -> Interaction:
        """Log a visit, call, meeting, event, gift or survey (`interaction.logged`)."""
        customer = await self._writable(session, customer_id, actor)
        if data.contact_id is not None:
            contact = await repo.records.get(session, Contact, data.contact_id)
            if contact is None or contact.customer_id != customer.id:
                raise field_error("contact_id", "names no contact of this customer")
        interaction = Interaction(
            id=uuid.uuid4(),
            customer_id=customer.id,
            created_at=utcnow(),
            **data.model_dump(exclude={"by"}),
            by=data.by or actor.user,
        )
        await repo.records.add(session, interaction)
        self._audit(
            session,
            customer.id,
            actor,
            "interaction_logged",
            {"interaction_id": interaction.id, "kind": interaction.kind},
        )
        await record_event(
            session,
            producer=PRODUCER,
            event_type="interaction.logged",
            customer_id=customer.id,
            data=InteractionLogged(
                interaction_id=interaction.id,
                kind=data.kind,
                at=interaction.at,
                by=interaction.by,
                satisfaction=interaction.satisfaction,
            ),
        )
        return interaction

    async def list_records(
        self,
        session: AsyncSession,
        model: Any,
        customer_id: uuid.UUID,
        actor: Principal,
        *,
        cursor: str | None,
        limit: int,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> Sequence[Any]:
        """A customer's contacts, purchases, payments or interactions in time order."""
        await self.get_customer(session, customer_id, actor)
        if since is not None and until is not None and since >= until:
            raise field_error("from", "must be before 'to'")
        return await repo.records.page(
            session,
            model,
            getattr(model, RECORD_TIME[model]),
            customer_id,
            after=decode_time_key(cursor),
            since=since,
            until=until,
            limit=limit,
        )

    async def get_record(
        self,
        session: AsyncSession,
        model: Any,
        customer_id: uuid.UUID,
        record_id: uuid.UUID,
        actor: Principal,
    ) -> Any:
        """One contact, purchase, payment or interaction of a customer the caller may see."""
        customer = await self.get_customer(session, customer_id, actor)
        return await self._record_of(session, model, customer, record_id)

    # ------------------------------------------------------------ referrals
    async def referrals(
        self, session: AsyncSession, customer_id: uuid.UUID, actor: Principal
    ) -> dict[str, Any]:
        """Whom the customer brought in, directly and further down, and what they bought.
        The counts and revenue are the whole network's (what the customer is worth as a
        referrer); the people listed are only those the caller may see."""
        await self.get_customer(session, customer_id, actor)
        rows = await repo.customers.referral_tree(session, customer_id)
        access = access_of(actor)
        shown = [row for row in rows if access.may_see_customer(row[6])]
        return {
            "customer_id": customer_id,
            "direct": len([row for row in rows if row[3] == 1]),
            "total": len(rows),
            "revenue": sum((row[4] for row in rows), Decimal("0.00")),
            "hidden": len(rows) - len(shown),
            "referrals": [
                {
                    "customer_id": cid,
                    "name": name,
                    "referred_by": parent,
                    "depth": depth,
                    "revenue": revenue,
                    "purchase_count": count,
                }
                for cid, name, parent, depth, revenue, count, _ in shown
            ],
        }

    # ------------------------------------------------------------ events from tiering
    async def apply_tier_changes(
        self, session: AsyncSession, changes: Sequence[tuple[uuid.UUID, str, dt.datetime]]
    ) -> None:
        """Keep the read-only `tier` field in step with tiering: (customer, tier, when it
        changed), the latest change wins, whatever order changes arrive in (a replay from
        a DLQ, say); of two given at the same moment, the one that arrived last."""
        await session.flush()  # the statement below must not be undone by a pending change
        latest: dict[uuid.UUID, tuple[str, dt.datetime]] = {}
        for customer_id, tier, at in changes:
            held = latest.get(customer_id)
            if held is None or at >= held[1]:
                latest[customer_id] = (tier, at)
        await repo.customers.set_tiers(
            session, [(customer_id, tier, at) for customer_id, (tier, at) in latest.items()]
        )

    # ------------------------------------------------------------ helpers
    def _visible(
        self, customer: Customer | None, customer_id: uuid.UUID, actor: Principal
    ) -> Customer:
        if customer is None:
            raise NotFound(f"No customer {customer_id}.")
        if scoped_to_own(actor) and customer.account_manager != actor.user:
            # Not 403: a key should not learn which customers exist beyond its own.
            raise NotFound(f"No customer {customer_id}.")
        if customer.erased_at is not None:
            raise Gone(f"Customer {customer_id} was erased.")
        return customer

    async def _writable(
        self, session: AsyncSession, customer_id: uuid.UUID, actor: Principal, *, lock: bool = False
    ) -> Customer:
        load = repo.customers.get_for_update if lock else repo.customers.get
        return self._visible(await load(session, customer_id), customer_id, actor)

    async def _live(self, session: AsyncSession, customer_id: uuid.UUID) -> Customer | None:
        customer = await repo.customers.get(session, customer_id)
        return customer if customer is not None and customer.erased_at is None else None

    async def _check_referrer(
        self, session: AsyncSession, customer_id: uuid.UUID, referrer: uuid.UUID
    ) -> None:
        if referrer == customer_id:
            raise field_error("referred_by", "a customer cannot refer itself")
        if await self._live(session, referrer) is None:
            raise field_error("referred_by", "names no known customer")
        if customer_id in await repo.customers.ancestors(session, referrer):
            raise field_error("referred_by", "would make a referral loop")

    @staticmethod
    async def _refuse_known_external_id(
        session: AsyncSession,
        model: type[Purchase] | type[Payment],
        customer_id: uuid.UUID,
        external_id: str | None,
    ) -> None:
        if external_id and await repo.records.find_external(
            session, model, customer_id, external_id
        ):
            raise Conflict(f"{model.__name__} {external_id!r} is already recorded.")

    @staticmethod
    def _check_version(customer: Customer, if_match: str | None) -> None:
        if if_match is None:
            raise PreconditionRequired(
                "Send If-Match with the ETag from GET, so changes made meanwhile are not lost."
            )
        tags = {tag.strip().removeprefix("W/").strip('"') for tag in if_match.split(",")}
        if "*" not in tags and str(customer.version) not in tags:
            raise PreconditionFailed(
                f'The customer changed since (current ETag "{customer.version}"); GET it again.'
            )

    @staticmethod
    def _check_currency(currency: str, base_currency: str) -> None:
        if currency != base_currency:
            raise InvalidInput(
                f"Amounts must be in the base currency {base_currency}.",
                errors=[
                    {"field": "currency", "message": f"must be {base_currency}", "type": "currency"}
                ],
            )

    @staticmethod
    def _audit(
        session: AsyncSession,
        customer_id: uuid.UUID,
        actor: Principal,
        action: str,
        changes: dict[str, Any],
    ) -> None:
        session.add(
            AuditEntry(
                customer_id=customer_id,
                actor=actor.user,
                action=action,
                changes=_json_value(changes),
                at=utcnow(),
            )
        )


profile_service = ProfileService()
