"""Who may see which customers, and how much of them: one rule for every service.

- admin: everything;
- account_manager: only the customers assigned to them (by profile, as each service's
  local projection of `customer.*` events says);
- analyst: every customer's figures, never contact details or free text about a person;
- agent: what the service gives agents (complaints: what they received or work on).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, or_

from shared.auth import ADMIN, Principal

ACCOUNT_MANAGER = "account_manager"
ANALYST = "analyst"
AGENT = "agent"


@dataclass(frozen=True)
class CustomerAccess:
    """What one principal may see of customers."""

    principal: Principal

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.principal.roles

    @property
    def manager_scope(self) -> str | None:
        """The account manager whose customers alone this principal sees (None: no such
        limit). A key with both a wider role and account_manager keeps the wider view."""
        roles = self.principal.roles
        if ACCOUNT_MANAGER in roles and not roles & {ADMIN, ANALYST, AGENT}:
            return self.principal.user
        return None

    @property
    def agent_scope(self) -> str | None:
        """The agent whose own work alone this principal sees (None: no such limit)."""
        roles = self.principal.roles
        if AGENT in roles and not roles & {ADMIN, ANALYST, ACCOUNT_MANAGER}:
            return self.principal.user
        return None

    @property
    def sees_personal_details(self) -> bool:
        """Contact details and free text about people: not for analysts alone."""
        return self.principal.roles != {ANALYST} and bool(self.principal.roles)

    def may_see_customer(self, account_manager: str | None) -> bool:
        """True when a customer managed by `account_manager` is within view."""
        scope = self.manager_scope
        return scope is None or scope == account_manager

    def may_see_work(self, people: Iterable[str | None], account_manager: str | None) -> bool:
        """Work about a customer (a complaint, a task) that `people` own or do: an agent
        sees it when one of them; an account manager when one of them or when the
        customer is theirs; everyone else sees it."""
        agent = self.agent_scope
        if agent is not None:
            return agent in people
        manager = self.manager_scope
        if manager is not None:
            return manager in people or account_manager == manager
        return True

    def work_condition(
        self,
        people: Sequence[Any],
        customer_id: Any,
        customers_of: Callable[[str], Select[Any]],
    ) -> ColumnElement[bool] | None:
        """`may_see_work` as a SQL condition for lists (None: no limit); `customers_of`
        selects the ids of an account manager's customers (the service's projection)."""
        agent = self.agent_scope
        if agent is not None:
            return or_(*(column == agent for column in people))
        manager = self.manager_scope
        if manager is not None:
            return or_(
                *(column == manager for column in people),
                customer_id.in_(customers_of(manager)),
            )
        return None


def access_of(principal: Principal) -> CustomerAccess:
    return CustomerAccess(principal)
