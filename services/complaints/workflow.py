"""The complaint workflow as an explicit state machine (judge, decide, communicate, follow
up, confirm), with a pause for waiting on the customer and a reopen after confirmation."""

from __future__ import annotations

from typing import Literal, get_args

Status = Literal[
    "received",
    "judged",
    "decided",
    "communicated",
    "following_up",
    "confirmed",
    "reopened",
    "waiting_on_customer",
]
Severity = Literal["minor", "major", "critical"]
SEVERITIES: tuple[Severity, ...] = ("minor", "major", "critical")
WAITING: Status = "waiting_on_customer"
STATUSES: tuple[Status, ...] = get_args(Status)

# The next steps of each status, in the order of the work.
FORWARD: dict[str, tuple[Status, ...]] = {
    "received": ("judged",),
    "judged": ("decided",),
    "decided": ("communicated",),
    "communicated": ("following_up",),
    "following_up": ("confirmed",),
    "confirmed": ("reopened",),
    "reopened": ("judged", "decided"),
}
# Waiting on the customer is possible at any step before confirmation.
PAUSABLE = frozenset(FORWARD) - {"confirmed"}


def allowed_moves(status: str, paused_from: str | None) -> tuple[Status, ...]:
    """Where a complaint may go from `status`; `paused_from` is the status it was in before
    it started waiting on the customer (it resumes there, or moves on from there)."""
    if status == WAITING:
        assert paused_from is not None
        resume: tuple[Status, ...] = (paused_from,)  # type: ignore[assignment]
        return resume + FORWARD[paused_from]
    moves = FORWARD[status]
    return (*moves, WAITING) if status in PAUSABLE else moves
