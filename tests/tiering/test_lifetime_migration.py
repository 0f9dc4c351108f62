"""Revision 0014 over existing figures: a customer's lifetime revenue, quantity, payments,
purchase count and first and last purchase read from its daily rows are those its
aggregate row held; the downgrade writes them back."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from sqlalchemy import bindparam, column, select, table, text

from services.tiering import repository as repo
from shared.db import UTCDateTime, create_engine, migrate, session_factory
from tests.conftest import DatabaseFactory, migrations_dir
from tests.tiering.test_customer_keys import _downgrade

BEFORE = "0013_standing_figures"
MARCH = dt.datetime(2026, 3, 1, 10, 15, 7, 123456, tzinfo=dt.UTC)
MAY = dt.datetime(2026, 5, 2, 18, 30, tzinfo=dt.UTC)


def _day(moment: dt.datetime) -> int:
    return (moment.date() - dt.date(1970, 1, 1)).days


async def test_lifetime_figures_survive_the_move_to_daily_rows_and_back(
    new_database: DatabaseFactory,
) -> None:
    url = await new_database("tiering", BEFORE)
    buyer, newcomer = uuid.uuid4(), uuid.uuid4()
    sqlite = "sqlite" in url
    engine = create_engine(url)
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        insert_customer = text(
            "INSERT INTO customer_aggregates (customer_id, key, known, erased, revenue, "
            "quantity, collected, purchase_count, first_purchase_at, last_purchase_at, "
            "first_seen_at, updated_at) VALUES (:id, :key, true, false, :revenue, :quantity, "
            ":collected, :count, :first, :last, :seen, :seen)"
        ).bindparams(
            bindparam("first", type_=UTCDateTime()),
            bindparam("last", type_=UTCDateTime()),
            bindparam("seen", type_=UTCDateTime()),
        )
        for customer, key, revenue, quantity, collected, count, first, last in (
            (buyer, 1, 33050, 4000, 30000, 3, MARCH, MAY),
            (newcomer, 2, 0, 0, 0, 0, None, None),
        ):
            await session.execute(
                insert_customer,
                {
                    "id": customer.hex if sqlite else customer,
                    "key": key,
                    "revenue": revenue,
                    "quantity": quantity,
                    "collected": collected,
                    "count": count,
                    "first": first,
                    "last": last,
                    "seen": MARCH,
                },
            )
        # 100.00 in March, a free item in April, 250.50 in May, a refund of 20.00 in June.
        days = [
            (_day(MARCH), 10000, 2000, 1, 30000),
            (_day(MARCH) + 31, 0, 1000, 1, 0),
            (_day(MAY), 25050, 1500, 1, 0),
            (_day(MAY) + 30, -2000, -500, 0, 0),
        ]
        await session.execute(
            text(
                "INSERT INTO daily_activity (customer_key, day, revenue, quantity, purchases, "
                "collected) VALUES (1, :day, :revenue, :quantity, :purchases, :collected)"
            ),
            [
                dict(
                    zip(("day", "revenue", "quantity", "purchases", "collected"), row, strict=True)
                )
                for row in days
            ],
        )
    await engine.dispose()

    await migrate(url, migrations_dir("tiering"))
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            lifetimes = [await repo.aggregates.lifetime(session, key) for key in (1, 2)]
    finally:
        await engine.dispose()
    assert lifetimes == [
        {
            "revenue": Decimal("330.50"),
            "quantity": Decimal("4.000"),
            "collected": Decimal("300.00"),
            "purchase_count": 3,
            "first_purchase_at": MARCH,
            "last_purchase_at": MAY,
        },
        {
            "revenue": Decimal("0.00"),
            "quantity": Decimal("0.000"),
            "collected": Decimal("0.00"),
            "purchase_count": 0,
            "first_purchase_at": None,
            "last_purchase_at": None,
        },
    ]

    await _downgrade(url, BEFORE)
    restored = table(
        "customer_aggregates",
        *(column(name) for name in ("key", "revenue", "quantity", "collected", "purchase_count")),
        column("first_purchase_at", UTCDateTime()),
        column("last_purchase_at", UTCDateTime()),
    )
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(restored).order_by(restored.c.key))).all()
    finally:
        await engine.dispose()
    assert [tuple(row) for row in rows] == [
        (1, 33050, 4000, 30000, 3, MARCH, MAY),
        (2, 0, 0, 0, 0, None, None),
    ]
