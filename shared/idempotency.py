"""`Idempotency-Key` for writes that create things: the same key and body return the
first result and do nothing else (no second row, no second event).

The key is recorded in the same transaction as the write, so a key is never stored
for a write that rolled back, nor a write committed without its key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Header, Response
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import utcnow
from shared.errors import Conflict, InvalidInput
from shared.outbox import idempotency_keys

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="Repeat a create safely: the same key and body return the first result.",
    ),
]
REPLAY_HEADER = "Idempotent-Replayed"


async def idempotent(
    session: AsyncSession,
    *,
    scope: str,
    key: str | None,
    request: BaseModel,
    response: Response,
    create: Callable[[], Awaitable[BaseModel]],
    location: str | None = None,
) -> Any:
    """Run `create` once per (scope, key); a repeat gets the stored JSON result. With a
    `location` template (`/v1/customers/{id}`, filled from the result), both answers
    carry the created resource's `Location`."""

    def answer(result: Any) -> Any:
        if location is not None:
            response.headers["Location"] = location.format(**result)
        return result

    if key is None:
        return answer((await create()).model_dump(mode="json"))
    request_hash = hashlib.sha256(request.model_dump_json().encode()).hexdigest()
    stored = (
        await session.execute(
            select(idempotency_keys.c.request_hash, idempotency_keys.c.response).where(
                idempotency_keys.c.scope == scope, idempotency_keys.c.key == key
            )
        )
    ).first()
    if stored is not None:
        if stored.request_hash != request_hash:
            raise InvalidInput("This Idempotency-Key was already used with a different request.")
        response.headers[REPLAY_HEADER] = "true"
        return answer(json.loads(stored.response))
    try:
        await session.execute(
            idempotency_keys.insert().values(
                scope=scope, key=key, request_hash=request_hash, created_at=utcnow()
            )
        )
    except IntegrityError as exc:
        raise Conflict(
            "A request with this Idempotency-Key is in progress; retry to get its result."
        ) from exc
    result = (await create()).model_dump(mode="json")
    await session.execute(
        idempotency_keys.update()
        .where(idempotency_keys.c.scope == scope, idempotency_keys.c.key == key)
        .values(response=json.dumps(result))
    )
    return answer(result)
