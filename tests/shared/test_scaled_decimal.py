"""ScaledDecimal: money as whole minor units, exactly, or refused."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from shared.db import ScaledDecimal

MONEY = ScaledDecimal(2)
DIALECTS = [postgresql.dialect(), sqlite.dialect()]


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
@pytest.mark.parametrize(
    ("given", "stored"),
    [
        (Decimal("1234.56"), 123456),
        (Decimal("-3.25"), -325),
        (Decimal("0"), 0),
        (Decimal("7"), 700),
        (Decimal("1E+3"), 100000),
        (Decimal("2.500"), 250),  # trailing zeros are not places
        (12, 1200),
        ("0.01", 1),
        (None, None),
    ],
)
def test_a_value_is_stored_as_whole_minor_units(
    given: object, stored: object, dialect: object
) -> None:
    assert MONEY.process_bind_param(given, dialect) == stored  # type: ignore[arg-type]
    if stored is not None:
        back = MONEY.process_result_value(stored, dialect)  # type: ignore[arg-type]
        assert back == Decimal(str(given))


@pytest.mark.parametrize(
    "given", [Decimal("0.001"), Decimal("-1.005"), "NaN", "Infinity", "-Infinity"]
)
def test_a_value_that_is_not_whole_minor_units_is_refused(given: object) -> None:
    with pytest.raises(ValueError):
        MONEY.process_bind_param(given, postgresql.dialect())  # type: ignore[arg-type]
