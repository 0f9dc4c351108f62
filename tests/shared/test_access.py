"""The one rule of who sees which customers and which work about them."""

from __future__ import annotations

from shared.access import access_of
from shared.auth import Principal


def who(*roles: str, user: str = "mia") -> Principal:
    return Principal(user, frozenset(roles))


def test_account_managers_see_their_customers_and_their_own_work() -> None:
    mia = access_of(who("account_manager"))
    assert mia.manager_scope == "mia" and mia.agent_scope is None
    assert mia.may_see_customer("mia") and not mia.may_see_customer("max")
    assert mia.may_see_work(("ann",), "mia")  # her customer, someone else's work
    assert mia.may_see_work(("mia",), "max")  # another's customer, her own work
    assert not mia.may_see_work(("ann", None), "max")


def test_agents_see_their_own_work_only() -> None:
    ann = access_of(who("agent", user="ann"))
    assert ann.may_see_work(("bob", "ann"), "mia")
    assert not ann.may_see_work(("bob",), "ann")


def test_wider_roles_see_everything_and_analysts_no_personal_details() -> None:
    for roles in (("admin",), ("analyst",), ("account_manager", "analyst")):
        access = access_of(who(*roles))
        assert access.manager_scope is None and access.agent_scope is None
        assert access.may_see_work(("x",), "y")
    assert not access_of(who("analyst")).sees_personal_details
    assert access_of(who("admin")).sees_personal_details
    assert access_of(who("agent")).sees_personal_details
