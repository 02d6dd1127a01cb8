"""Litestar dependencies: the authenticated account of a request.

Handlers that need an account declare ``account: CurrentAccount``; the provider reads the
``Authorization`` header and calls ``AccountService.authenticate`` once per request. That
call makes no Redis round trip when the rate-limit layer already resolved the key in its
own script call (``accounts.counted_request``), so auth and rate limiting stay one call.
"""

from __future__ import annotations

from litestar.di import Provide
from litestar.params import SkipValidation
from litestar.types import Scope

from cuefast.models import Account
from cuefast.services.accounts import AccountService

CurrentAccount = SkipValidation[Account]
"""The handler parameter type of the authenticated account (``account: CurrentAccount``)."""


def authorization(scope: Scope) -> str | None:
    """The raw ``Authorization`` header of an ASGI scope."""
    for key, value in scope.get("headers", ()):
        if key == b"authorization":
            return bytes(value).decode("latin-1")
    return None


async def account_of(accounts: AccountService, authorization: str | None) -> Account:
    """The account of a request's ``Authorization`` header: 401 envelope for a missing, invalid
    or rotated key (the ``account`` dependency, and the edge's hot routes: ``fast.py``)."""
    return await accounts.authenticate(authorization)


def account_provider(accounts: AccountService) -> Provide:
    """The ``account`` dependency: 401 envelope for a missing, invalid or rotated key."""

    async def account(scope: Scope) -> Account:
        return await account_of(accounts, authorization(scope))

    return Provide(account)
