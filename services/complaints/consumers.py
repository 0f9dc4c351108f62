"""Complaints's event handlers: `{event type: handler}` (none yet)."""

from shared.consumer import EventHandler

HANDLERS: dict[str, EventHandler] = {}
