"""A lease in the database: which replica does a job that only one may do at a time
(the outbox relay, so events of a customer are published in order by one process).

A lease is a row with its holder and an expiry on the database's clock, so replicas'
clocks do not matter and a holder that dies or stalls loses it once it expires, whatever
happened to its connections. The holder renews it before each piece of work and starts
none once less than a third of the lease is left (Kubernetes' leader election works the
same way: renew deadline shorter than the lease). `epoch` grows at each change of holder.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from typing import Any

from sqlalchemy import BigInteger, Column, String, Table, case, func, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import UTCDateTime, insert_ignoring_duplicates, new_metadata, utcnow

lease_metadata = new_metadata()

leases = Table(
    "leases",
    lease_metadata,
    Column("name", String(100), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)


def replica_name() -> str:
    """This process, as a lease holder: host, process id and a random part (a restarted
    process with the same pid is another holder)."""
    return f"{socket.gethostname()[:120]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """One named lease as seen by one holder."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        name: str,
        duration_s: float,
        holder: str | None = None,
    ) -> None:
        self.sessions = sessions
        self.name = name
        self.duration = dt.timedelta(seconds=duration_s)
        self.holder = holder or replica_name()
        self.epoch: int | None = None
        self._valid_until: dt.datetime | None = None

    async def hold(self) -> bool:
        """Take the lease if it is free or expired, or renew it if ours; True when ours.

        Measured from before the statement is sent, so our view ends before the
        database's expiry does."""
        asked_at = utcnow()
        async with self.sessions() as session, session.begin():
            now = _database_now(session)
            taken = await session.execute(
                update(leases)
                .where(leases.c.name == self.name)
                .where((leases.c.holder == self.holder) | (leases.c.expires_at <= now))
                .values(
                    holder=self.holder,
                    expires_at=now + self.duration,
                    # unchanged while ours; one more at each change of holder
                    epoch=case(
                        (leases.c.holder == self.holder, leases.c.epoch), else_=leases.c.epoch + 1
                    ),
                )
                .returning(leases.c.epoch)
            )
            epoch = taken.scalar()
            if epoch is None and await insert_ignoring_duplicates(
                session,
                leases,
                {
                    "name": self.name,
                    "holder": self.holder,
                    "epoch": 1,
                    "expires_at": now + self.duration,
                },
            ):
                epoch = 1
        if epoch is None:
            self.epoch, self._valid_until = None, None
            return False
        self.epoch = int(epoch)
        self._valid_until = asked_at + self.duration * 2 / 3
        return True

    def valid(self) -> bool:
        """True while the lease is ours with at least a third of it left: time to start
        one more piece of work."""
        return self._valid_until is not None and utcnow() < self._valid_until

    async def release(self) -> None:
        """Give the lease up now (a successor need not wait for it to expire)."""
        self._valid_until = None
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(leases)
                .where(leases.c.name == self.name, leases.c.holder == self.holder)
                .values(expires_at=_database_now(session))
            )


def _database_now(session: AsyncSession) -> Any:
    """Now on the database's clock where it has one every replica shares (PostgreSQL);
    SQLite is a file on this machine, whose clock is ours."""
    if session.get_bind().dialect.name == "postgresql":
        return func.now()
    return utcnow()
