"""Which of two values of a customer's field is newer, whatever order events arrive in.

Profile stamps each `customer.*` event with the customer's `revision` (one more at every
event of that customer); a projection keeps, per field, the stamp of the event that set
it, and takes a value only from a newer event. Events from before revisions existed carry
none: between two of those the event time decides, and a stamped event is newer than any
unstamped one (the stamps began later).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from shared.events import EventEnvelope


@dataclass(frozen=True)
class Stamp:
    revision: int | None
    at: dt.datetime

    def newer_than(self, stored: Stamp | None) -> bool:
        """Whether a value with this stamp replaces one with `stored`."""
        if stored is None:
            return True
        if self.revision is not None and stored.revision is not None:
            return self.revision > stored.revision
        if self.revision is not None or stored.revision is not None:
            return self.revision is not None
        return self.at >= stored.at

    def as_json(self) -> dict[str, Any]:
        return {"revision": self.revision, "at": self.at.isoformat()}

    @classmethod
    def from_json(cls, stored: Any) -> Stamp | None:
        """A stored stamp: `{"revision", "at"}`, or the bare time kept before revisions."""
        if stored is None:
            return None
        if isinstance(stored, str):
            return cls(None, dt.datetime.fromisoformat(stored))
        return cls(stored.get("revision"), dt.datetime.fromisoformat(stored["at"]))


def stamp_of(event: EventEnvelope) -> Stamp:
    """The event's revision (when profile stamped one) and its time."""
    data = event.data  # a dict, or the type's model where the consumer parsed both at once
    revision = data.get("revision") if isinstance(data, dict) else getattr(data, "revision", None)
    return Stamp(revision if isinstance(revision, int) else None, event.occurred_at)


def take(
    stamps: dict[str, Any], field: str, stamp: Stamp, fallback_at: dt.datetime | None = None
) -> bool:
    """Whether `field` takes the value stamped `stamp`; if so, `stamps` (a projection's
    stamps by field, to be stored again) records it. `fallback_at`: when the field was
    set before stamps were kept."""
    stored = Stamp.from_json(stamps.get(field))
    if stored is None and fallback_at is not None:
        stored = Stamp(None, fallback_at)
    if not stamp.newer_than(stored):
        return False
    stamps[field] = stamp.as_json()
    return True
