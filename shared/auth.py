"""API keys with roles: 401 without a valid key, 403 without the role.

Keys come from the `CRM_API_KEYS` setting. Lookup compares the key's SHA-256 digest with
every known digest in constant time, so timing tells nothing about which keys exist.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.errors import Forbidden, Unauthorized
from shared.settings import ApiKeyGrant

ADMIN = "admin"
# Declares the scheme in each service's OpenAPI (the Authorize button of /docs); the
# check itself is `authenticate`, so a missing key is our problem+json 401.
BEARER = HTTPBearer(
    scheme_name="apiKey",
    description="An API key from CRM_API_KEYS, sent as `Authorization: Bearer <key>`.",
    auto_error=False,
)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the user a key stands for, and its roles."""

    user: str
    roles: frozenset[str]

    def has_any(self, roles: frozenset[str]) -> bool:
        return ADMIN in self.roles or bool(self.roles & roles)


class KeyRing:
    """The known API keys, held as digests."""

    def __init__(self, grants: dict[str, ApiKeyGrant]) -> None:
        self._entries = [
            (hashlib.sha256(key.encode()).digest(), Principal(grant.user, frozenset(grant.roles)))
            for key, grant in grants.items()
        ]

    def identify(self, key: str) -> Principal | None:
        digest = hashlib.sha256(key.encode()).digest()
        found: Principal | None = None
        for known, principal in self._entries:
            if hmac.compare_digest(known, digest):
                found = principal
        return found


def authenticate(request: Request) -> Principal:
    """The caller of this request, or 401."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("Send an API key as 'Authorization: Bearer <key>'.")
    keyring: KeyRing = request.app.state.keyring
    principal = keyring.identify(key.strip())
    if principal is None:
        raise Unauthorized("The API key is not known.")
    return principal


def require_roles(*roles: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency admitting keys with any of `roles` (admin is always admitted)."""
    wanted = frozenset(roles)

    async def dependency(
        request: Request,
        _: HTTPAuthorizationCredentials | None = Security(BEARER),
    ) -> Principal:
        principal = authenticate(request)
        if not principal.has_any(wanted):
            raise Forbidden(f"This needs one of the roles: {', '.join(sorted(wanted | {ADMIN}))}.")
        request.state.principal = principal
        return principal

    return dependency
