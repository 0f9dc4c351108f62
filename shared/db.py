"""Database: async engine from a URL, portable column types, and the per-service migrations.

SQLite (aiosqlite) is the embedded default, PostgreSQL (asyncpg) production; the URL
alone chooses. Services and repositories only `flush()`; the caller that owns the
unit of work (the request dependency, a consumer, the relay) commits.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import orjson
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import BigInteger, DateTime, MetaData, and_, case, event, or_, select, text
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.types import TypeDecorator

from shared.pg_arrays import among, unnested_columns

log = logging.getLogger("crm.db")

# One naming convention so migrations on SQLite and PostgreSQL name constraints alike.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_metadata() -> MetaData:
    """A MetaData with the project's naming convention (one per service)."""
    return MetaData(naming_convention=NAMING_CONVENTION)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """An async engine tuned for the backend (kafka-notes.md: SQLite wants WAL, one writer)."""
    common: dict[str, Any] = {
        "echo": echo,
        "json_serializer": _json_text,
        "json_deserializer": orjson.loads,
    }
    if is_sqlite(url):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url,
            **common,
            pool_size=1,
            max_overflow=0,
            pool_timeout=60,
            connect_args={"timeout": 30},
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_async_engine(url, **common, pool_size=10, max_overflow=10, pool_pre_ping=True)


def _json_text(value: Any) -> str:
    """JSON columns are encoded by orjson: a re-rank writes a million scores and reasons
    documents, and the standard library's encoder took a quarter of that run."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def side_transaction(session: AsyncSession) -> AsyncIterator[AsyncSession | None]:
    """A second transaction, on another connection of the session's engine, for a bulk
    write that can run beside the session's own on PostgreSQL (a server process each, so
    both cores work); it commits when the block ends without error, before the session
    does, so what it writes must stay invisible to readers until the session's own rows
    commit. None on SQLite (one writer) or a session bound to one connection: the caller
    writes in the session."""
    engine = session.bind
    if not isinstance(engine, AsyncEngine) or engine.dialect.name != "postgresql":
        yield None
        return
    async with (
        engine.connect() as connection,
        connection.begin(),
        AsyncSession(bind=connection, expire_on_commit=False) as side,
    ):
        yield side


async def ping(engine: AsyncEngine) -> None:
    """Raise if the database cannot answer a trivial query."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class ScaledDecimal(TypeDecorator[Decimal]):
    """An exact decimal stored as a scaled integer, so sums in SQL stay exact on SQLite too.

    `ScaledDecimal(2)` keeps money in minor units (cents, fen).
    """

    impl = BigInteger
    cache_ok = True

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.factor = Decimal(10) ** scale

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> int | None:
        if value is None:
            return None
        scaled = (value if isinstance(value, Decimal) else Decimal(value)) * self.factor
        if not scaled.is_finite():
            raise ValueError(f"{value} is not a number")
        whole = int(scaled)
        if whole != scaled:
            raise ValueError(f"{value} has more than {self.scale} decimal places")
        return whole

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return (Decimal(int(value)) / self.factor).quantize(Decimal(1).scaleb(-self.scale))


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def alembic_config(migrations_dir: Path) -> Config:
    """An Alembic config pointing at a service's migrations folder (no ini file needed)."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    return config


def _upgrade(connection: Connection, config: Config, revision: str) -> None:
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


MIGRATION_LOCK = 0x6372_6D5F_6D69_67  # "crm_mig": one migration run at a time per database


async def migrate(url: str, migrations_dir: Path, revision: str = "head") -> None:
    """Bring the database at `url` to `revision` with the service's Alembic scripts, in
    one transaction. On PostgreSQL it first takes a transaction-level advisory lock, so
    two runs at once (two replicas, two Jobs) are safe: the second waits, then finds the
    work done. SQLite allows one writer at a time anyway."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:lock_id)"), {"lock_id": MIGRATION_LOCK}
                )
            await conn.run_sync(_upgrade, alembic_config(migrations_dir), revision)
    finally:
        await engine.dispose()


class SchemaTooOld(RuntimeError):
    """The database is at an older migration than this release needs."""


async def check_schema(engine: AsyncEngine, migrations_dir: Path, service: str) -> None:
    """Refuse to run against a schema older than this release's (a clear message naming
    the command that fixes it); a newer one, from a release being rolled out, is fine:
    migrations only add until the previous release is gone (expand, then contract)."""
    script = ScriptDirectory.from_config(alembic_config(migrations_dir))
    heads = set(script.get_heads())
    try:
        async with engine.connect() as conn:
            current = set(
                await conn.run_sync(
                    lambda sync: MigrationContext.configure(sync).get_current_heads()
                )
            )
    except (OSError, SQLAlchemyError) as exc:  # not answering: readiness will say so
        log.warning("%s: the schema could not be checked: %r", service, exc)
        return
    if current & heads:
        return
    known = {rev.revision for rev in script.walk_revisions()}
    if current and not current <= known:
        log.warning("%s: the database is at %s, newer than this release", service, current)
        return
    raise SchemaTooOld(
        f"the {service} database is at {', '.join(sorted(current)) or 'no migration'}; this "
        f"release needs {', '.join(sorted(heads))}: run `crm migrate --service {service}` first"
    )


def _render_plain_type(kind: str, obj: Any, _: Any) -> str | Literal[False]:
    """Write our TypeDecorators into migrations as the plain type they store."""
    if kind == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl!r}"
    return False


def run_migrations_online(target_metadata: MetaData) -> None:
    """Body of every service's migrations/env.py: upgrade on the connection we were given."""
    from alembic import context

    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations with `crm migrate` (shared.db.migrate)")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        render_item=_render_plain_type,
    )
    with context.begin_transaction():
        context.run_migrations()


async def insert_ignoring_duplicates(
    session: AsyncSession, table: Any, values: dict[str, Any]
) -> bool:
    """INSERT a row unless its key exists; True when it was inserted (SQLite and PostgreSQL)."""
    dialect = session.get_bind().dialect.name
    stmt = dialect_insert(dialect, table).values(**values).on_conflict_do_nothing()
    result = await session.execute(stmt)
    return bool(getattr(result, "rowcount", 0) == 1)


async def insert_new_rows(
    session: AsyncSession, table: Any, rows: Sequence[dict[str, Any]], key: str
) -> set[Any]:
    """INSERT the rows whose `key` does not exist yet (one executemany, which SQLAlchemy
    sends as multi-row statements; on PostgreSQL one statement over arrays, as
    `upsert_rows`); the keys of those inserted (SQLite and PostgreSQL)."""
    if not rows:
        return set()
    if session.get_bind().dialect.name != "postgresql":
        return await _insert_new_many(session, table, rows, key)
    columns = {name: [row[name] for row in rows] for name in rows[0]}
    return await _insert_new_unnested(session, table, columns, key)


async def insert_new_columns(
    session: AsyncSession, table: Any, columns: Mapping[str, Sequence[Any]], key: str
) -> set[Any]:
    """`insert_new_rows` for rows given as one sequence of values per column."""
    if not len(next(iter(columns.values()))):
        return set()
    if session.get_bind().dialect.name != "postgresql":
        return await _insert_new_many(session, table, _as_rows(columns), key)
    return await _insert_new_unnested(session, table, columns, key)


async def _insert_new_many(
    session: AsyncSession, table: Any, rows: Sequence[Mapping[str, Any]], key: str
) -> set[Any]:
    stmt = dialect_insert(session.get_bind().dialect.name, table)
    stmt = stmt.on_conflict_do_nothing().returning(table.c[key])
    return set((await session.execute(stmt, list(rows))).scalars().all())


async def _insert_new_unnested(
    session: AsyncSession, table: Any, columns: Mapping[str, Sequence[Any]], key: str
) -> set[Any]:
    bound = session.get_bind().dialect
    selected = unnested_columns(table, columns, bound)
    stmt = dialect_insert(bound.name, table).from_select(list(columns), selected)
    found = await session.execute(stmt.on_conflict_do_nothing().returning(table.c[key]))
    return set(found.scalars().all())


async def get_or_add_locked(
    session: AsyncSession,
    model: type[Any],
    keys: Sequence[Any],
    defaults: Mapping[str, Any] | None = None,
) -> dict[Any, Any]:
    """The ORM rows of `model` with these primary keys, by key: made where missing (one
    statement, with `defaults`), then read afresh and locked for update in key order (one
    statement a thousand). A poll of events then touches each row once, and transactions
    that lock rows in one order never deadlock on them."""
    table = model.__table__
    (key,) = table.primary_key.columns
    await insert_new_rows(
        session, table, [{key.name: value, **(defaults or {})} for value in keys], key.name
    )
    dialect = session.get_bind().dialect
    ordered = sorted(keys)
    found: dict[Any, Any] = {}
    for start in range(0, len(ordered), 1000):
        query = (
            select(model)
            .where(column_in(key, ordered[start : start + 1000], dialect))
            .order_by(key)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        found.update((getattr(row, key.name), row) for row in await session.scalars(query))
    return found


def expire_held(session: AsyncSession, model: type[Any], keys: Iterable[Any]) -> None:
    """After a Core write of these rows: the ORM copies the session holds are stale, so
    they are read again on next use."""
    if not session.identity_map:
        return
    # The session holds a few objects, a batch writes thousands of rows: walk the former.
    wanted = set(keys)
    for identity in list(session.identity_map.keys()):
        held_model, primary_key = identity[0], identity[1]
        if (
            held_model is model
            and (primary_key if len(primary_key) > 1 else primary_key[0]) in wanted
        ):
            held = session.identity_map.get(identity)
            if held is not None:
                session.expire(held)


def dialect_insert(dialect: str, table: Any) -> Any:
    """The INSERT of `dialect` (sqlite or postgresql), which has ON CONFLICT clauses."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def upsert_from_select(dialect: str, table: Any, query: Any, key: Sequence[str]) -> Any:
    """INSERT ... SELECT that replaces the rows whose `key` exists (both databases; on
    SQLite the SELECT needs a WHERE clause, which `query` must have)."""
    names = [column.name for column in query.selected_columns]
    stmt = dialect_insert(dialect, table).from_select(names, query)
    return stmt.on_conflict_do_update(
        index_elements=list(key),
        set_={name: stmt.excluded[name] for name in names if name not in key},
    )


async def upsert_rows(
    session: AsyncSession,
    table: Any,
    rows: Sequence[Mapping[str, Any]],
    key: Sequence[str],
    changes: Callable[[Any], Mapping[str, Any]],
) -> None:
    """INSERT rows (mappings with the same keys), and where `key` exists already
    UPDATE SET `changes(excluded)` instead (both databases).

    On PostgreSQL the rows travel as one array per column, unnested by the server
    (`shared.pg_arrays`): one statement whose text is the same for any number of rows,
    where an executemany renders and binds every row in Python. Values go through the
    columns' own bind processing either way."""
    if not rows:
        return
    bound = session.get_bind().dialect
    if bound.name != "postgresql":
        await _upsert_many(session, table, rows, key, changes)
        return
    columns = {name: [row[name] for row in rows] for name in rows[0]}
    await _upsert_unnested(session, table, columns, key, changes)


async def upsert_columns(
    session: AsyncSession,
    table: Any,
    columns: Mapping[str, Sequence[Any]],
    key: Sequence[str],
    changes: Callable[[Any], Mapping[str, Any]],
) -> None:
    """`upsert_rows` for rows given as one sequence of values per column (all of one
    length): a caller that computes columns need not make a mapping per row."""
    if not len(next(iter(columns.values()))):
        return
    bound = session.get_bind().dialect
    if bound.name != "postgresql":
        await _upsert_many(session, table, _as_rows(columns), key, changes)
        return
    await _upsert_unnested(session, table, columns, key, changes)


def earlier(new: Any, old: Any) -> Any:
    """In an upsert's changes: the earlier of two values (NULL is no value)."""
    return case((and_(new.is_not(None), or_(old.is_(None), new < old)), new), else_=old)


def later(new: Any, old: Any) -> Any:
    """In an upsert's changes: the later of two values (NULL is no value)."""
    return case((and_(new.is_not(None), or_(old.is_(None), new > old)), new), else_=old)


def _as_rows(columns: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


async def _upsert_many(
    session: AsyncSession,
    table: Any,
    rows: Sequence[Mapping[str, Any]],
    key: Sequence[str],
    changes: Callable[[Any], Mapping[str, Any]],
) -> None:
    stmt = dialect_insert(session.get_bind().dialect.name, table)
    await session.execute(
        stmt.on_conflict_do_update(index_elements=list(key), set_=changes(stmt.excluded)),
        list(rows),
    )


async def _upsert_unnested(
    session: AsyncSession,
    table: Any,
    columns: Mapping[str, Sequence[Any]],
    key: Sequence[str],
    changes: Callable[[Any], Mapping[str, Any]],
) -> None:
    bound = session.get_bind().dialect
    selected = unnested_columns(table, columns, bound)
    stmt = dialect_insert(bound.name, table).from_select(list(columns), selected)
    await session.execute(
        stmt.on_conflict_do_update(index_elements=list(key), set_=changes(stmt.excluded))
    )


async def bulk_insert(session: AsyncSession, table: Any, rows: list[dict[str, Any]]) -> None:
    """Insert many rows (dicts with the same keys) in the session's transaction."""
    if rows:
        await bulk_insert_columns(
            session, table, {name: [row[name] for row in rows] for name in rows[0]}
        )


async def bulk_insert_columns(
    session: AsyncSession, table: Any, columns: Mapping[str, Sequence[Any]]
) -> None:
    """Insert rows given as one list per column, in the session's transaction: COPY on
    PostgreSQL, executemany elsewhere.

    Values go through the columns' own bind processing, so custom types (exact decimals,
    UTC timestamps) are stored exactly as an ORM insert would store them.
    """
    if not columns or not len(next(iter(columns.values()))):
        return
    connection = await session.connection()
    dialect = connection.dialect
    if dialect.name != "postgresql":
        names = list(columns)
        await session.execute(
            table.insert(),
            [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)],
        )
        return
    ordered = [column for column in table.columns if column.key in columns]
    values: list[Sequence[Any]] = []
    for column in ordered:
        process = column.type._cached_bind_processor(dialect)
        given = columns[column.key]
        if process is None:
            values.append(given)
        elif given[0] is given[-1] and given.count(given[0]) == len(given):
            values.append([process(given[0])] * len(given))  # one value for the batch
        else:
            values.append([process(value) for value in given])
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    await driver.copy_records_to_table(
        table.name,
        columns=[column.name for column in ordered],
        records=list(zip(*values, strict=True)),
    )


def column_in(column: Any, values: Any, dialect: Dialect) -> Any:
    """`column IN values`; on PostgreSQL one array parameter however many values."""
    if dialect.name == "postgresql":
        return among(column, list(values), dialect)
    return column.in_(list(values))


def new_uuids(count: int) -> list[uuid.UUID]:
    """`count` time-ordered (version 7, RFC 9562) UUIDs, ascending, from one read of the
    OS's random source.

    Bulk writers use them: `uuid.uuid4()` reads the random source once per id, which costs
    more than the rest of a row's work on some machines, and random keys scatter a large
    batch over every page of a primary-key index, where ordered keys fill the last pages.
    """
    millis = time.time_ns() // 1_000_000
    random_bits = int.from_bytes(os.urandom(10), "big")
    rand_a = random_bits >> 68  # 12 bits
    start = random_bits & ((1 << 62) - 1)  # 62 bits; consecutive ids count up from here
    high = (millis << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62)
    span = 1 << 62
    if start + count >= span:
        start = 0
    return [uuid.UUID(int=high | (start + n)) for n in range(count)]
