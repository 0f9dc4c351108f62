"""CSV imports of customers and purchases: streamed, validated row by row, committed in
batches, each new row announced through the outbox like any other write.

A file of any size is read chunk by chunk (never held in memory). Importing the same
file twice creates nothing new: customers are matched by `external_ref`, purchases by
(customer, `external_id`); a purchase row without one gets `csv:<line>:<content hash>`.
Imported purchases keep their own `purchased_at`.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import hashlib
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import Table, literal, select, true
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.profile import repository as repo
from services.profile.models import AuditEntry, ConsentChange, Customer, CustomerChange, Purchase
from services.profile.schemas import CustomerCreate, PurchaseCreate
from services.profile.service import (
    PRODUCER,
    assign_customer_fields,
    customer_changes_payload,
    customer_search_text,
)
from shared.db import bulk_insert, column_in, new_uuids, utcnow
from shared.errors import InvalidInput
from shared.events import CustomerCreated
from shared.outbox import PENDING_FLAG, outbox_row, record_events
from shared.pg_arrays import unnested_columns

CUSTOMERS: Table = Customer.__table__  # type: ignore[assignment]
CHANGES: Table = CustomerChange.__table__  # type: ignore[assignment]
CONSENTS: Table = ConsentChange.__table__  # type: ignore[assignment]
AUDIT: Table = AuditEntry.__table__  # type: ignore[assignment]
PURCHASES: Table = Purchase.__table__  # type: ignore[assignment]

BATCH_ROWS = 2000
# While a batch is stored, parsing hands the loop back this often. Storing is the import's
# critical path (ten round trips a batch); each time its reply waited behind 128 rows of
# parsing (~2 ms), so a batch took 110 ms instead of 80: 18,000 -> 24,000 rows/s.
YIELD_EVERY_ROWS = 8
MAX_REPORTED_ERRORS = 1000
MAX_RECORD_CHARS = 65536
ERASED_REF = "belonged to a customer who was erased: the row is not imported"

CUSTOMER_COLUMNS = frozenset(
    {
        "external_ref",
        "name",
        "kind",
        "industry",
        "region",
        "size",
        "years_in_business",
        "industry_standing",
        "timezone",
        "source",
        "stage",
        "relationship_level",
        "account_manager",
        "birthday",
        "credit_rating",
        "credit_limit",
        "notes",
        "referred_by_ref",
        "consent_sms",
        "consent_email",
        "consent_phone",
        "consent_letter",
    }
)
PURCHASE_COLUMNS = frozenset(
    {
        "customer_id",
        "customer_ref",
        "external_id",
        "amount",
        "currency",
        "quantity",
        "unit",
        "category",
        "sku",
        "purchased_at",
    }
)


class RowError(BaseModel):
    line: int
    field: str
    reason: str


class ImportReport(BaseModel):
    """What happened to every data row of the file."""

    rows: int = 0
    accepted: int = 0
    skipped: int = Field(0, description="Already imported (same external_ref / external_id).")
    rejected: int = 0
    errors: list[RowError] = Field(default_factory=list)
    errors_truncated: bool = False

    def reject(self, line: int, field: str, reason: str) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(RowError(line=line, field=field, reason=reason))
        else:
            self.errors_truncated = True


# Stands for a line longer than a record may be, which is never held whole.
OVERLONG_LINE = "\x00overlong"


async def csv_records(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[int, list[str]]]:
    """(line number, fields) for each CSV record, read incrementally from byte chunks.

    A record may span physical lines inside quotes; the line number is where it starts.
    Undecodable bytes become U+FFFD, so the row is rejected rather than the file.
    """
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
    pending = ""
    record: list[str] = []
    quotes = 0
    line_number = 0
    record_start = 1

    def parse(text: str) -> list[str]:
        return next(csv.reader([text]), [])

    async def lines() -> AsyncIterator[str]:
        nonlocal pending
        overlong = False  # the line being read is over the limit: drop it to its end
        async for chunk in chunks:
            pending += decoder.decode(chunk)
            *complete, pending = pending.split("\n")
            for line in complete:
                yield OVERLONG_LINE if overlong else line
                overlong = False
            if len(pending) > MAX_RECORD_CHARS:
                pending, overlong = "", True
        pending += decoder.decode(b"", final=True)
        if pending or overlong:
            yield OVERLONG_LINE if overlong else pending

    async for line in lines():
        line_number += 1
        if not record:
            record_start = line_number
        if line == OVERLONG_LINE:
            yield record_start, ["\x00oversize"]
            record, quotes = [], 0
            continue
        record.append(line.removesuffix("\r"))
        quotes += line.count('"')
        if quotes % 2 == 1 and sum(map(len, record)) < MAX_RECORD_CHARS:
            continue  # inside a quoted field: the record goes on
        text = "\n".join(record)
        record, quotes = [], 0
        if not text.strip():
            continue
        if len(text) >= MAX_RECORD_CHARS:
            yield record_start, ["\x00oversize"]
            continue
        try:
            yield record_start, parse(text)
        except csv.Error as exc:
            yield record_start, [f"\x00{exc}"]
    if record:
        yield record_start, ["\x00unterminated quoted field"]


def _first_error(exc: ValidationError) -> tuple[str, str]:
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error.get("loc", ())) or "*"
    return field, error.get("msg", "invalid")


class CsvImporter(ABC):
    """Reads a CSV stream and hands batches of valid rows to `store_batch`."""

    columns: ClassVar[frozenset[str]] = frozenset()
    required: ClassVar[frozenset[str]] = frozenset()

    async def run(
        self,
        sessions: async_sessionmaker[AsyncSession],
        chunks: AsyncIterator[bytes],
        *,
        actor: str,
        base_currency: str,
        on_commit: Callable[[], None] | None = None,
    ) -> ImportReport:
        report = ImportReport()
        header: list[str] | None = None
        batch: list[Any] = []
        storing: asyncio.Task[None] | None = None
        rows = 0  # counted here, not on the report: a model's setattr costs per row
        async for line, fields in csv_records(chunks):
            if header is None:
                header = self._check_header(fields)
                continue
            rows += 1
            if storing is not None and rows % YIELD_EVERY_ROWS == 0:
                await asyncio.sleep(0)  # let the batch being stored move on meanwhile
            if fields and fields[0].startswith("\x00"):
                reason = fields[0][1:]
                report.reject(
                    line,
                    "*",
                    "record is over 64 KiB" if reason == "oversize" else f"malformed CSV: {reason}",
                )
                continue
            if len(fields) != len(header):
                report.reject(line, "*", f"expected {len(header)} columns, found {len(fields)}")
                continue
            if "\x00" in "".join(fields):  # PostgreSQL cannot store it in text
                column = next(
                    name for name, cell in zip(header, fields, strict=True) if "\x00" in cell
                )
                report.reject(line, column, "contains a NUL character (U+0000)")
                continue
            item = self.validate(
                line, dict(zip(header, fields, strict=True)), report, base_currency
            )
            if item is not None:
                batch.append(item)
            if len(batch) >= BATCH_ROWS:
                # Store this batch while the next one is read and validated: the database
                # works while Python parses. Batches are still committed one after another.
                if storing is not None:
                    await storing
                storing = asyncio.create_task(
                    self._commit(sessions, batch, report, actor, on_commit)
                )
                batch = []
        if storing is not None:
            await storing
        report.rows = rows
        if header is None:
            raise InvalidInput("The file is empty: it needs a header line.")
        if batch:
            await self._commit(sessions, batch, report, actor, on_commit)
        report.errors.sort(key=lambda error: error.line)
        return report

    def _check_header(self, fields: list[str]) -> list[str]:
        header = [name.strip().lower() for name in fields]
        unknown = [name for name in header if name not in self.columns]
        missing = [name for name in self.required if name not in header]
        if unknown or missing or len(set(header)) != len(header):
            problems = []
            if missing:
                problems.append(f"missing columns: {', '.join(sorted(missing))}")
            if unknown:
                problems.append(f"unknown columns: {', '.join(unknown)}")
            if len(set(header)) != len(header):
                problems.append("a column is named twice")
            raise InvalidInput(
                "The header line is not one this import reads (" + "; ".join(problems) + ").",
                errors=[{"field": "header", "message": p, "type": "csv"} for p in problems],
            )
        return header

    async def _commit(
        self,
        sessions: async_sessionmaker[AsyncSession],
        batch: list[Any],
        report: ImportReport,
        actor: str,
        on_commit: Callable[[], None] | None,
    ) -> None:
        async with sessions() as session:
            async with session.begin():
                await self.store_batch(session, batch, report, actor)
            if session.info.pop(PENDING_FLAG, False) and on_commit is not None:
                on_commit()

    @abstractmethod
    def validate(
        self, line: int, raw: dict[str, str], report: ImportReport, base_currency: str
    ) -> Any:
        """The row checked and typed, or None after recording why it was rejected."""

    @abstractmethod
    async def store_batch(
        self, session: AsyncSession, valid: list[Any], report: ImportReport, actor: str
    ) -> None:
        """Store the new rows of a batch of validated rows, with their events."""


def _present(row: dict[str, str]) -> dict[str, str]:
    """The row without empty cells (an empty cell means 'not given')."""
    return {key: stripped for key, value in row.items() if (stripped := value.strip())}


def derived_external_id(line: int, raw: dict[str, str]) -> str:
    """An id for a purchase row that has none, from its line and content: importing the same
    file again then recognises the row (a changed row, or one on another line, is new)."""
    content = "\x1f".join(f"{name}={value.strip()}" for name, value in sorted(raw.items()))
    return f"csv:{line}:{hashlib.blake2b(content.encode(), digest_size=8).hexdigest()}"


def purchase_event_json(purchase_id: uuid.UUID, data: PurchaseCreate) -> dict[str, Any]:
    """`purchase.recorded` data as PurchaseRecorded.model_dump(mode="json") gives it, once
    written by `event_json` (the id and the time stay objects: orjson writes them in C)."""
    return {
        "purchase_id": purchase_id,
        "amount": str(data.amount),
        "currency": data.currency,
        "quantity": str(data.quantity),
        "unit": data.unit,
        "category": data.category,
        "sku": data.sku,
        "purchased_at": data.purchased_at,
        "external_id": data.external_id,
    }


class CustomerImporter(CsvImporter):
    columns = CUSTOMER_COLUMNS
    required = frozenset({"external_ref", "name", "kind"})

    def validate(
        self, line: int, raw: dict[str, str], report: ImportReport, base_currency: str
    ) -> tuple[int, CustomerCreate, str | None] | None:
        row = _present(raw)
        if "\ufffd" in "".join(row.values()):
            report.reject(line, "*", "not valid UTF-8")
            return None
        if "external_ref" not in row:
            report.reject(line, "external_ref", "required: it makes a re-import safe")
            return None
        consent = {
            channel: row.pop(f"consent_{channel}")
            for channel in ("sms", "email", "phone", "letter")
            if f"consent_{channel}" in row
        }
        credit = {
            key: row.pop(f"credit_{key}") for key in ("rating", "limit") if f"credit_{key}" in row
        }
        referrer = row.pop("referred_by_ref", None)
        try:
            data = CustomerCreate.model_validate(
                {**row, **({"credit": credit} if credit else {}), "consent": consent}
            )
        except ValidationError as exc:
            report.reject(line, *_first_error(exc))
            return None
        return line, data, referrer

    async def store_batch(
        self, session: AsyncSession, valid: list[Any], report: ImportReport, actor: str
    ) -> None:
        refs = {data.external_ref for _, data, _ in valid} | {r for _, _, r in valid if r}
        known = (
            dict(
                (
                    await session.execute(
                        select(Customer.external_ref, Customer.id).where(
                            Customer.external_ref.in_(refs)
                        )
                    )
                ).all()
            )
            if refs
            else {}
        )
        erased = await repo.customers.erased_refs(
            session, [data.external_ref for _, data, _ in valid if data.external_ref]
        )
        now = utcnow()
        customers: list[dict[str, Any]] = []
        changes: list[dict[str, Any]] = []
        consents: list[dict[str, Any]] = []
        audits: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        for line, data, referrer in valid:
            assert data.external_ref is not None
            if data.external_ref in known:
                report.skipped += 1
                continue
            if data.external_ref in erased:
                report.reject(line, "external_ref", ERASED_REF)
                continue
            referred_by = None
            if referrer:
                referred_by = known.get(referrer)
                if referred_by is None:
                    report.reject(line, "referred_by_ref", "names no imported customer")
                    continue
            customer_id = uuid.uuid4()
            known[data.external_ref] = customer_id
            customer = Customer(
                id=customer_id,
                kind=data.kind,
                created_at=now,
                updated_at=now,
                version=1,
                revision=1,
                tier=None,
                erased_at=None,
            )
            assign_customer_fields(customer, data.model_dump(exclude={"consent"}))
            customer.referred_by = referred_by
            customer.consent = {str(k): v for k, v in data.consent.items()}
            customer.search_text = customer_search_text(customer, [])
            customers.append(
                {column.key: getattr(customer, column.key) for column in CUSTOMERS.columns}
            )
            for field in ("stage", "relationship_level"):
                changes.append(
                    {
                        "customer_id": customer_id,
                        "field": field,
                        "from_value": None,
                        "to_value": getattr(customer, field),
                        "changed_by": actor,
                        "changed_at": now,
                    }
                )
            for channel, state in data.consent.items():
                consents.append(
                    {
                        "customer_id": customer_id,
                        "channel": channel,
                        "state": state,
                        "source": "import",
                        "recorded_by": actor,
                        "at": now,
                    }
                )
            audits.append(
                {
                    "customer_id": customer_id,
                    "actor": actor,
                    "action": "imported",
                    "changes": {"line": line},
                    "at": now,
                }
            )
            events.append(
                outbox_row(
                    producer=PRODUCER,
                    event_type="customer.created",
                    customer_id=customer_id,
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
                                "timezone",
                                "external_ref",
                                "relationship_level",
                                "source",
                                "referred_by",
                            ],
                        ),
                        kind=data.kind,
                        consent=dict(customer.consent),
                        revision=1,
                    ),
                    occurred_at=now,
                )
            )
            report.accepted += 1
        for table, rows in (
            (CUSTOMERS, customers),
            (CHANGES, changes),
            (CONSENTS, consents),
            (AUDIT, audits),
        ):
            if rows:
                await session.execute(table.insert(), rows)
        await record_events(session, events)


class PurchaseImporter(CsvImporter):
    columns = PURCHASE_COLUMNS
    required = frozenset({"amount", "currency", "purchased_at"})

    def validate(
        self, line: int, raw: dict[str, str], report: ImportReport, base_currency: str
    ) -> tuple[int, PurchaseCreate, str, str] | None:
        row = _present(raw)
        if "\ufffd" in "".join(row.values()):
            report.reject(line, "*", "not valid UTF-8")
            return None
        customer_id = row.pop("customer_id", None)
        customer_ref = row.pop("customer_ref", None)
        if customer_id is None and customer_ref is None:
            report.reject(line, "customer_id", "name the customer by customer_id or customer_ref")
            return None
        try:
            data = PurchaseCreate.model_validate(row)
        except ValidationError as exc:
            report.reject(line, *_first_error(exc))
            return None
        if data.currency != base_currency:
            report.reject(line, "currency", f"must be the base currency {base_currency}")
            return None
        if customer_id is not None:
            try:
                uuid.UUID(customer_id)
            except ValueError:
                report.reject(line, "customer_id", "not a UUID")
                return None
        if data.external_id is None:
            data.external_id = derived_external_id(line, raw)
        return line, data, customer_id or "", customer_ref or ""

    async def store_batch(
        self, session: AsyncSession, valid: list[Any], report: ImportReport, actor: str
    ) -> None:
        dialect = session.get_bind().dialect
        ids = {uuid.UUID(cid) for _, _, cid, _ in valid if cid}
        refs = {ref for _, _, cid, ref in valid if ref and not cid}
        live: dict[str, uuid.UUID] = {}
        if ids:
            found = await session.execute(
                select(Customer.id).where(
                    column_in(Customer.id, ids, dialect), Customer.erased_at.is_(None)
                )
            )
            live.update({str(cid): cid for cid in found.scalars()})
        by_ref: dict[str, uuid.UUID] = {}
        if refs:
            found_refs = await session.execute(
                select(Customer.external_ref, Customer.id).where(
                    column_in(Customer.external_ref, refs, dialect), Customer.erased_at.is_(None)
                )
            )
            by_ref = {ref: cid for ref, cid in found_refs if ref is not None}
        customers = [live.get(cid) if cid else by_ref.get(ref) for _, _, cid, ref in valid]
        seen = await _stored_pairs(
            session,
            {
                (customer, data.external_id)
                for customer, (_, data, _, _) in zip(customers, valid, strict=True)
                if customer is not None and data.external_id is not None
            },
        )

        now = utcnow()
        purchases: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        fresh_ids = iter(new_uuids(2 * len(valid)))
        accepted = 0
        for customer, (line, data, cid, _) in zip(customers, valid, strict=True):
            if customer is None:
                report.reject(
                    line, "customer_id" if cid else "customer_ref", "names no live customer"
                )
                continue
            if data.external_id is not None:
                if (customer, data.external_id) in seen:
                    report.skipped += 1
                    continue
                seen.add((customer, data.external_id))
            purchase_id = next(fresh_ids)
            purchases.append(
                {
                    "id": purchase_id,
                    "customer_id": customer,
                    "created_at": now,
                    "external_id": data.external_id,
                    "amount": data.amount,
                    "currency": data.currency,
                    "quantity": data.quantity,
                    "unit": data.unit,
                    "category": data.category,
                    "sku": data.sku,
                    "purchased_at": data.purchased_at,
                }
            )
            event = purchase_event_json(purchase_id, data)
            events.append(
                outbox_row(
                    producer=PRODUCER,
                    event_type="purchase.recorded",
                    customer_id=customer,
                    data=event,
                    occurred_at=now,
                    # Already validated as PurchaseCreate: encode, do not validate again.
                    validated_json=event,
                    event_id=next(fresh_ids),
                    created_at=now,
                )
            )
            accepted += 1
        report.accepted += accepted
        if purchases:
            await bulk_insert(session, PURCHASES, purchases)
        await record_events(session, events)


async def _stored_pairs(
    session: AsyncSession, pairs: set[tuple[uuid.UUID, str]]
) -> set[tuple[uuid.UUID, str]]:
    """Which of these (customer, external id) purchases are stored already. On PostgreSQL
    each pair is one probe of the unique index (a lateral subquery with LIMIT 1): as a
    semi-join over the batch, the planner chose to scan the whole table, so every batch
    of an import cost more than the one before (13 ms at 50k rows, 67 ms at 600k)."""
    if not pairs:
        return set()
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql":
        existing = await session.execute(
            select(Purchase.customer_id, Purchase.external_id).where(
                column_in(Purchase.external_id, {ext for _, ext in pairs}, dialect)
            )
        )
        return {(cid, ext) for cid, ext in existing if ext is not None and (cid, ext) in pairs}
    ordered = list(pairs)
    wanted = unnested_columns(
        PURCHASES,
        {"customer_id": [cid for cid, _ in ordered], "external_id": [ext for _, ext in ordered]},
        dialect,
    ).subquery("wanted")
    hit = (
        select(literal(1))
        .where(
            PURCHASES.c.customer_id == wanted.c.customer_id,
            PURCHASES.c.external_id == wanted.c.external_id,
        )
        .limit(1)
        .lateral("hit")
    )
    found = await session.execute(
        select(wanted.c.customer_id, wanted.c.external_id).select_from(wanted.join(hit, true()))
    )
    return {(cid, ext) for cid, ext in found}


IMPORTERS: dict[str, CsvImporter] = {
    "customers": CustomerImporter(),
    "purchases": PurchaseImporter(),
}
