"""Reading what the ranking methods need, as numpy columns: every customer's (one
binary COPY per table on PostgreSQL, see shared/columnar.py) or a few customers' whose
rows are at hand. Amounts stay in the stored integer units (fen for money, thousandths
for quantities) so sums and comparisons are exact.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import (
    BigInteger,
    Table,
    case,
    func,
    literal,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.ext.asyncio import AsyncSession

from services.tiering.churn import ChurnModel, current_model
from services.tiering.models import (
    Complaint,
    CustomerAggregate,
    CustomerScore,
    DailyActivity,
    KnownCustomer,
    Touch,
    epoch_day,
)
from services.tiering.schemas import PolicyDocument, Rule
from shared.columnar import (
    Col,
    Columns,
    fetch_columns,
    group_sum,
)
from shared.db import column_in

AGGREGATES: Table = CustomerAggregate.__table__  # type: ignore[assignment]


SCORES: Table = CustomerScore.__table__  # type: ignore[assignment]


DAILY: Table = DailyActivity.__table__  # type: ignore[assignment]


TOUCHES: Table = Touch.__table__  # type: ignore[assignment]


COMPLAINTS: Table = Complaint.__table__  # type: ignore[assignment]


# Stored units per metric: money in fen (x100), quantities in thousandths (x1000).
SCALE = {"revenue": 100, "collected": 100, "quantity": 1000}


LEVELS = ("vendor", "partner", "strategic_alliance")


# Warmth by level code (LEVELS order); OTHER (-2) and NONE (-1) index the last two.
LEVEL_WARMTH = np.array([0.0, 0.5, 1.0, 0.0, 0.0])


SEGMENTS = ("high", "medium", "sub-medium", "low")


NONE = -1  # code of a missing text value


OTHER = -2  # code of a text value the policy does not know


NO_FIGURE = -(2**62)  # a band figure a score row does not hold (any value may be negative)


STANDING = ("ranked_value",)  # the band figures a score row keeps from a ranking


Ints = NDArray[np.int64]


Floats = NDArray[np.float64]


Flags = NDArray[np.bool_]


def in_units(raw: int, metric: str) -> Decimal:
    """A stored integer as the decimal people read (fen -> yuan with two places)."""
    scale = SCALE.get(metric, 1)
    places = Decimal(1).scaleb(-(len(str(scale)) - 1))
    return (Decimal(raw) / scale).quantize(places)


def _code(column: Any, names: list[str]) -> Any:
    """A text column as its position in `names` (NONE when NULL, OTHER when unknown)."""
    return case(
        (column.is_(None), NONE),
        *[(column == name, index) for index, name in enumerate(names)],
        else_=OTHER,
    )


def _rule_columns(rule: Rule) -> tuple[str, ...]:
    return {
        "average_daily_quantity": ("quantity",),
        "collection_ratio": ("revenue", "collected"),
        "purchase_count": ("purchases",),
    }.get(rule.metric, (rule.metric,))


def _daily_columns(policy: PolicyDocument) -> list[str]:
    """The daily figures a policy reads (purchases always: they date the last purchase)."""
    names = {"purchases", policy.bands.metric}
    for rule in policy.rules:
        names.update(_rule_columns(rule))
    if policy.rfm:
        names.add("revenue")
    if policy.value_matrix:
        names.update(("revenue", "collected"))
    if policy.churn:
        names.add("revenue")  # a feature of the learned churn risk
    return sorted(names)


def _longest_window(policy: PolicyDocument) -> int:
    windows = [policy.bands.window_days] + [rule.window_days for rule in policy.rules]
    if policy.rfm:
        windows.append(policy.rfm.window_days)
    if policy.value_matrix:
        windows.append(policy.value_matrix.window_days)
    if policy.churn:
        windows.append(policy.churn.history_days)
    return max(windows)


@dataclass
class Figures:
    """Everything the methods read, one array element per customer known by `as_of`."""

    policy: PolicyDocument
    end: int  # as_of's epoch day
    # key, customer_id, level; when ranking everyone also tier, band_tier, stored scores
    customers: Columns
    tier_names: list[str]  # what the `tier` codes stand for
    daily: Columns  # at: the customer's position; day, and each daily figure
    touches: Columns  # per customer: last_touch, touches, satisfaction_sum/_count
    complaints: Columns  # per customer: open_complaints, recent_complaints
    # Sums and purchase days computed so far, by what was asked: each is computed once,
    # also when two threads score at the same time (`score_everyone`).
    _computed: dict[tuple[Any, ...], Any] = field(default_factory=dict)
    _computing: dict[tuple[Any, ...], threading.Lock] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)
    churn_model: ChurnModel | None = None  # None: the rule-based churn risk
    as_of: dt.datetime | None = None

    @property
    def count(self) -> int:
        return len(self.customers["key"])

    def window_sum(self, name: str, days: int, stop: int | None = None) -> Ints:
        """Per customer, the sum of a daily figure over the last `days` days (to `stop`)."""
        start, stop = self.end - (days - 1), self.end if stop is None else stop
        found: Ints = self._once(("sum", name, start, stop), self._window_sum, name, start, stop)
        return found

    def _window_sum(self, name: str, start: int, stop: int) -> Ints:
        values = self.daily[name]
        if start > self.end - (_longest_window(self.policy) - 1) or stop < self.end:
            # Zeros outside the window: cheaper than taking the rows inside out of both
            # columns (millions of rows when ranking everyone).
            day = self.daily["day"]
            values = np.where((day >= start) & (day <= stop), values, 0)
        return group_sum(self.daily["at"], values, self.count)

    def purchase_days(self, days: int | None = None) -> tuple[Ints, Ints, Ints]:
        """Per customer over the last `days` (or all loaded) days with a purchase: the
        first and last such day (-1 when none) and how many there were."""
        if days is not None and days >= _longest_window(self.policy):
            days = None  # the loaded rows already end there
        found: tuple[Ints, Ints, Ints] = self._once(("days", days), self._purchase_days, days)
        return found

    def _purchase_days(self, days: int | None) -> tuple[Ints, Ints, Ints]:
        bought = self.daily["purchases"] > 0
        if days is not None:
            bought &= self.daily["day"] >= self.end - (days - 1)
        at, day = self.daily["at"][bought], self.daily["day"][bought]
        first = np.full(self.count, np.iinfo(np.int64).max, dtype=np.int64)
        last = np.full(self.count, -1, dtype=np.int64)
        np.minimum.at(first, at, day)
        np.maximum.at(last, at, day)
        first[last < 0] = -1
        counted = np.bincount(at, minlength=self.count).astype(np.int64)
        return first, last, counted

    def _once(self, key: tuple[Any, ...], compute: Callable[..., Any], *args: Any) -> Any:
        """`compute(*args)` the first time `key` is asked for, its result after that; a
        thread asking while another computes it waits for that result."""
        if key in self._computed:
            return self._computed[key]
        with self._guard:
            lock = self._computing.setdefault(key, threading.Lock())
        with lock:
            if key not in self._computed:
                self._computed[key] = compute(*args)
        return self._computed[key]


async def load_figures(
    session: AsyncSession,
    policy: PolicyDocument,
    as_of: dt.datetime,
    these: Sequence[KnownCustomer] | None = None,
) -> Figures:
    """Read what the policy needs about everyone known by `as_of`, or about `these`
    customers (whose rows are at hand: only key, id and relationship level are taken)."""
    end = epoch_day(as_of)
    order = policy.tier_order()
    tier_names = list(order)
    if these is None:
        # Every tier name in use, so each previous tier has a code.
        tier_names += sorted(await _tiers_in_use(session) - set(order))
        customers = await _everyone(session, order, tier_names, as_of)
    else:
        customers = _these_customers(these, as_of)
    keys = customers["key"]
    only = None if these is None else keys
    daily = await _read_daily(
        session, keys, _daily_columns(policy), end - (_longest_window(policy) - 1), end, only
    )
    figures = Figures(policy, end, customers, tier_names, daily, {}, {}, as_of=as_of)
    if policy.thermometer or policy.churn:
        figures.touches = await _touch_figures(session, figures, only)
        figures.complaints = await _complaint_figures(session, figures, as_of, only)
    figures.churn_model = await current_model(session, policy)
    return figures


async def _everyone(
    session: AsyncSession, order: list[str], tier_names: list[str], as_of: dt.datetime
) -> Columns:
    """Every customer known by `as_of` and not erased: key, id, text columns as codes,
    tier and stored scores, the id of its latest assignment (`history_id`, -1 for none),
    and `scored`: whether the customer has a score row yet. The
    two tables are read apart (a join of a million rows costs more than both reads) and
    matched by key."""
    customers = await fetch_columns(
        session,
        select(
            AGGREGATES.c.key,
            AGGREGATES.c.customer_id,
            _code(AGGREGATES.c.relationship_level, list(LEVELS)).label("level"),
        ).where(AGGREGATES.c.first_seen_at <= as_of, AGGREGATES.c.erased.is_(False)),
        [
            Col("key", "int4", 0),
            Col("customer_id", "uuid"),
            Col("level", "int4", NONE),
        ],
    )
    stored = await fetch_columns(
        session,
        select(
            SCORES.c.key,
            _code(SCORES.c.tier, tier_names).label("tier"),
            _code(SCORES.c.band_tier, order).label("band_tier"),
            SCORES.c.rfm_r,
            SCORES.c.rfm_f,
            SCORES.c.rfm_m,
            _code(SCORES.c.value_segment, list(SEGMENTS)).label("value_segment"),
            SCORES.c.thermometer,
            SCORES.c.churn_risk,
            SCORES.c.at_risk,
            SCORES.c.ranked_value,
            SCORES.c.history_id,
            literal(True).label("scored"),
        ),
        [
            Col("key", "int4", 0),
            Col("tier", "int4", NONE),
            Col("band_tier", "int4", NONE),
            Col("rfm_r", "int4", NONE),
            Col("rfm_f", "int4", NONE),
            Col("rfm_m", "int4", NONE),
            Col("value_segment", "int4", NONE),
            Col("thermometer", "float8"),
            Col("churn_risk", "float8"),
            Col("at_risk", "bool", False),
            Col("ranked_value", "int8", NO_FIGURE),
            Col("history_id", "int8", NONE),
            Col("scored", "bool", False),
        ],
    )
    missing: dict[str, Any] = {
        name: NONE
        for name in ("tier", "band_tier", "rfm_r", "rfm_f", "rfm_m", "value_segment", "history_id")
    }
    missing.update(thermometer=np.nan, churn_risk=np.nan, at_risk=False, scored=False)
    missing.update(dict.fromkeys(STANDING, NO_FIGURE))
    return {**customers, **_spread(customers["key"], stored, missing)}


def _these_customers(aggregates: Sequence[KnownCustomer], as_of: dt.datetime) -> Columns:
    """The columns the per-customer methods read, from rows the event handlers already
    hold (no second read), and `row`, each one's position among them; customers not known
    by `as_of`, or erased, are left out."""
    rows = [
        at for at, row in enumerate(aggregates) if row.first_seen_at <= as_of and not row.erased
    ]
    known = [aggregates[at] for at in rows] if len(rows) < len(aggregates) else aggregates
    levels = [row.relationship_level for row in known]
    return {
        "row": np.array(rows, dtype=np.int64),
        "key": np.array([row.key for row in known], dtype=np.int32),
        "customer_id": np.frombuffer(
            b"".join(row.customer_id.bytes for row in known), dtype="V16"
        ).copy(),
        "level": np.array(
            [
                NONE if level is None else LEVELS.index(level) if level in LEVELS else OTHER
                for level in levels
            ],
            dtype=np.int32,
        ),
    }


async def _tiers_in_use(session: AsyncSession) -> set[str]:
    found = (await session.execute(select(SCORES.c.tier).distinct())).scalars()
    return {tier for tier in found if tier is not None}


async def _read_daily(
    session: AsyncSession,
    keys: NDArray[Any],
    names: list[str],
    start: int,
    end: int,
    only: NDArray[Any] | None = None,
) -> Columns:
    """The daily rows from epoch day `start` to `end` of the customers in `keys` (of all
    of them, or, with `only`, of just those keys: the table's primary key leads with it):
    `day`, each of `names`, and `at`, the row's customer position in `keys`."""
    mine = _among(session, DAILY.c.customer_key, only)
    daily = await fetch_columns(
        session,
        select(
            DAILY.c.customer_key,
            DAILY.c.day,
            *[type_coerce(DAILY.c[name], BigInteger).label(name) for name in names],
        ).where(DAILY.c.day >= start, DAILY.c.day <= end, mine),
        # NOT NULL columns: read as they are (a coalesce per value of ~7M rows costs).
        [Col("customer_key", "int4"), Col("day", "int4")] + [Col(name, "int8") for name in names],
    )
    position = _positions(keys, daily["customer_key"])
    daily["at"] = position[daily.pop("customer_key")]
    known = daily["at"] >= 0
    if not known.all():  # (a copy of every column only when some rows are not wanted)
        daily = {name: values[known] for name, values in daily.items()}
    # One integer type throughout: numpy's grouped min/max (ufunc.at) is many times
    # slower when the values' type differs from the result's.
    return {name: values.astype(np.int64, copy=False) for name, values in daily.items()}


def _positions(keys: NDArray[Any], *others: NDArray[Any]) -> Ints:
    """A lookup from customer key to position in `keys` (-1 for keys not among them)."""
    largest = max([int(k.max()) for k in (keys, *others) if k.size] + [0])
    position = np.full(largest + 1, -1, dtype=np.int64)
    position[keys] = np.arange(len(keys))
    return position


def _contact_window(policy: PolicyDocument) -> int:
    """Days of contacts and complaints the thermometer (and churn's silence) look at."""
    return policy.thermometer.window_days if policy.thermometer else 180


def thermometer_start(policy: PolicyDocument, as_of: dt.datetime) -> dt.datetime:
    return as_of - dt.timedelta(days=_contact_window(policy))


def _spread(keys: NDArray[Any], found: Columns, defaults: dict[str, Any]) -> Columns:
    """Per-customer arrays (in the order of `keys`) from rows keyed by customer key;
    customers without a row get the default."""
    position = _positions(keys, found["key"])[found["key"]]
    mine = position >= 0
    spread: Columns = {}
    for name, default in defaults.items():
        values = np.full(len(keys), default, dtype=found[name].dtype)
        values[position[mine]] = found[name][mine]
        spread[name] = values
    return spread


def _scatter(figures: Figures, found: Columns, defaults: dict[str, int]) -> Columns:
    """Per-customer figures from grouped rows keyed by customer key (0 or none when
    the customer has no row)."""
    return {
        name: values.astype(np.int64)
        for name, values in _spread(figures.customers["key"], found, defaults).items()
    }


def _among(session: AsyncSession, column: Any, keys: NDArray[Any] | None) -> Any:
    """`column` among `keys` (true for everyone when `keys` is None)."""
    if keys is None:
        return literal(True)
    return column_in(column, keys.tolist(), session.get_bind().dialect)


async def _touch_figures(
    session: AsyncSession, figures: Figures, only: NDArray[Any] | None
) -> Columns:
    recent = TOUCHES.c.day >= figures.end - (_contact_window(figures.policy) - 1)
    one = _among(session, AGGREGATES.c.key, only)
    found = await fetch_columns(
        session,
        select(
            AGGREGATES.c.key,
            func.max(TOUCHES.c.day).label("last_touch"),
            func.count(case((recent, TOUCHES.c.id))).label("touches"),
            func.sum(case((recent, TOUCHES.c.satisfaction))).label("satisfaction_sum"),
            func.count(case((recent, TOUCHES.c.satisfaction))).label("satisfaction_count"),
        )
        .select_from(TOUCHES.join(AGGREGATES, AGGREGATES.c.customer_id == TOUCHES.c.customer_id))
        .where(TOUCHES.c.day <= figures.end, one)
        .group_by(AGGREGATES.c.key),
        [
            Col("key", "int4", 0),
            Col("last_touch", "int4", NONE),
            Col("touches", "int8", 0),
            Col("satisfaction_sum", "int8", 0),
            Col("satisfaction_count", "int8", 0),
        ],
    )
    return _scatter(
        figures,
        found,
        {"last_touch": NONE, "touches": 0, "satisfaction_sum": 0, "satisfaction_count": 0},
    )


async def _complaint_figures(
    session: AsyncSession, figures: Figures, as_of: dt.datetime, only: NDArray[Any] | None
) -> Columns:
    is_open = or_(COMPLAINTS.c.closed_at.is_(None), COMPLAINTS.c.closed_at > as_of)
    recent = COMPLAINTS.c.opened_at >= thermometer_start(figures.policy, as_of)
    one = _among(session, AGGREGATES.c.key, only)
    found = await fetch_columns(
        session,
        select(
            AGGREGATES.c.key,
            func.count(case((is_open, COMPLAINTS.c.complaint_id))).label("open_complaints"),
            func.count(case((recent, COMPLAINTS.c.complaint_id))).label("recent_complaints"),
        )
        .select_from(
            COMPLAINTS.join(AGGREGATES, AGGREGATES.c.customer_id == COMPLAINTS.c.customer_id)
        )
        .where(COMPLAINTS.c.opened_at <= as_of, one)
        .group_by(AGGREGATES.c.key),
        [
            Col("key", "int4", 0),
            Col("open_complaints", "int8", 0),
            Col("recent_complaints", "int8", 0),
        ],
    )
    return _scatter(figures, found, {"open_complaints": 0, "recent_complaints": 0})
