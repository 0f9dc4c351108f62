"""The re-rank writes `tier.changed` data without building the model for each change;
it must be exactly what the model itself would give."""

from __future__ import annotations

import datetime as dt
import uuid

import orjson
import pytest

from services.tiering.models import TierPolicy
from services.tiering.service import tier_changed_json
from shared.events import TierChanged
from shared.outbox import event_json


@pytest.mark.parametrize(
    "changed_at",
    [
        dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 24, 12, 0, 1, 123456, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 24, 20, 0, 1, 5, tzinfo=dt.timezone(dt.timedelta(hours=8))),
    ],
)
@pytest.mark.parametrize("previous", [None, "B"])
def test_tier_changed_json_is_the_models_own_dump(
    changed_at: dt.datetime, previous: str | None
) -> None:
    policy = TierPolicy(id=uuid.uuid4(), version=3, name="default", document={})
    figures = {
        "metric": "revenue",
        "value": "1234.50",
        "rank": 7,
        "cumulative_share": 0.4312,
        "rules": {"big buyer": "301.25"},
        "rfm": {"recency": 5, "frequency": 4, "monetary": 5, "code": "545"},
        "churn": {"risk": 0.123, "at_risk": False},
    }
    reasons = ["A: in the top 7% of customers by revenue over the last 365 days"]
    expected = TierChanged(
        previous_tier=previous,
        tier="A",
        policy_id=policy.id,
        policy_version=policy.version,
        scores=figures,
        reasons=reasons,
        changed_at=changed_at,
    ).model_dump(mode="json")
    data = tier_changed_json(previous, "A", policy.id, policy.version, figures, reasons, changed_at)
    assert orjson.loads(event_json(data)) == expected
