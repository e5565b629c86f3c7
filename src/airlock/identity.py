"""Who is asking: an API key, an authenticated user, or a client address.

Every identifier is an async callable ``(scope) -> Identity`` that raises
:class:`~airlock.errors.Unauthorized` to refuse. Limits and budgets are counted
against ``Identity.id``, so they follow the key or the user, not the connection.
"""

from __future__ import annotations

import inspect
import ipaddress
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.types import Scope

from airlock.context import Identity
from airlock.errors import AmbiguousCredentials, ConfigurationError, Unauthorized
from airlock.keys import KeyStore

__all__ = ["ApiKeyAuth", "ClientAddress", "FromCallable", "from_user"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _header_values(scope: Scope, name: bytes) -> list[bytes]:
    return [value for key, value in scope.get("headers", ()) if key == name]


class ApiKeyAuth:
    """Identify by client API key: ``Authorization: Bearer <key>`` or a header of your choice.

    ``keys`` is a :class:`~airlock.keys.KeyStore` (hashes only). The identity is
    ``key:<name>``, so limits follow the key's name and survive rotation when the
    new key gets the same name.
    """

    def __init__(self, keys: KeyStore, *, header: str = "authorization", realm: str = "airlock") -> None:
        if not isinstance(keys, KeyStore):
            raise ConfigurationError("ApiKeyAuth needs a KeyStore")
        if not header or header != header.strip() or not header.isascii():
            raise ConfigurationError("ApiKeyAuth header must be an ASCII header name")
        if '"' in realm or "\\" in realm:
            raise ConfigurationError("ApiKeyAuth realm must not contain quotes or backslashes")
        self.keys = keys
        self.header = header.lower().encode("latin-1")
        self._bearer = self.header == b"authorization"
        self._challenge = f'Bearer realm="{realm}"' if self._bearer else f'ApiKey realm="{realm}"'
        self._invalid_challenge = self._challenge + (', error="invalid_token"' if self._bearer else "")

    def __repr__(self) -> str:
        return f"<ApiKeyAuth header={self.header.decode()!r} keys={len(self.keys)}>"

    def _missing(self) -> Unauthorized:
        return Unauthorized("A valid API key is required.", headers={"WWW-Authenticate": self._challenge})

    def _invalid(self) -> Unauthorized:
        return Unauthorized(
            "The API key is not valid.", headers={"WWW-Authenticate": self._invalid_challenge}
        )

    async def __call__(self, scope: Scope) -> Identity:
        values = _header_values(scope, self.header)
        if not values:
            raise self._missing()
        if len(values) > 1:
            raise AmbiguousCredentials()
        try:
            raw = values[0].decode("ascii").strip()
        except UnicodeDecodeError:
            raise self._invalid() from None
        if self._bearer:
            scheme, _, raw = raw.partition(" ")
            if scheme.lower() != "bearer":
                raise self._missing()
            raw = raw.strip()
        await self.keys.refresh()
        name = self.keys.lookup(raw)
        if name is None:
            raise self._invalid()
        return Identity(kind="key", id=f"key:{name}", name=name)


class ClientAddress:
    """Identify by client IP address.

    ``X-Forwarded-For`` is honoured only when the connecting peer is one of
    ``trusted_proxies``; the header is then read from the right, skipping trusted
    hops, and the first untrusted address is the client. A client can prepend any
    value it likes, so taking the left-most value would let it choose its identity.
    """

    def __init__(
        self,
        *,
        trusted_proxies: Iterable[str] = (),
        header: str = "x-forwarded-for",
    ) -> None:
        networks: list[IPNetwork] = []
        for item in trusted_proxies:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ConfigurationError(
                    f"trusted_proxies: {item!r} is not an IP address or network"
                ) from None
        self.trusted_proxies: tuple[IPNetwork, ...] = tuple(networks)
        self.header = header.lower().encode("latin-1")

    def __repr__(self) -> str:
        return f"<ClientAddress trusted_proxies={[str(n) for n in self.trusted_proxies]!r}>"

    def _trusted(self, address: IPAddress) -> bool:
        return any(address in network for network in self.trusted_proxies)

    def client_ip(self, scope: Scope) -> str:
        client = scope.get("client")
        peer = client[0] if client else None
        if peer is None:
            return "unknown"
        if not self.trusted_proxies:
            return str(peer)
        try:
            peer_ip = ipaddress.ip_address(peer)
        except ValueError:
            return str(peer)
        if not self._trusted(peer_ip):
            return str(peer_ip)
        hops: list[str] = []
        for value in _header_values(scope, self.header):
            hops.extend(part.strip() for part in value.decode("latin-1").split(","))
        current: IPAddress = peer_ip
        for hop in reversed(hops):
            try:
                hop_ip = ipaddress.ip_address(hop)
            except ValueError:
                # Garbage in the chain: stop at the last hop we could still vouch for.
                break
            current = hop_ip
            if not self._trusted(hop_ip):
                break
        return str(current)

    async def __call__(self, scope: Scope) -> Identity:
        address = self.client_ip(scope)
        return Identity(kind="address", id=f"addr:{address}")


IdentityResult = Identity | str | None


class FromCallable:
    """Identify with your own function of the ASGI scope (sync or async).

    Return an :class:`Identity`, a user id string (becomes ``user:<id>``) or
    ``None`` to refuse with 401. Use it for a verified JWT claim, a session, or
    ``scope["user"]`` from Starlette's ``AuthenticationMiddleware``.
    """

    def __init__(self, func: Callable[[Scope], IdentityResult | Awaitable[IdentityResult]]) -> None:
        if not callable(func):
            raise ConfigurationError("FromCallable needs a callable")
        self.func = func

    def __repr__(self) -> str:
        return f"<FromCallable {getattr(self.func, '__qualname__', type(self.func).__name__)}>"

    async def __call__(self, scope: Scope) -> Identity:
        result: Any = self.func(scope)
        if inspect.isawaitable(result):
            result = await result
        if result is None:
            raise Unauthorized("Authentication is required.")
        if isinstance(result, Identity):
            return result
        if isinstance(result, str) and result:
            return Identity(kind="user", id=f"user:{result}")
        raise Unauthorized("Authentication is required.")


def _authenticated_user(scope: Scope) -> str | None:
    user = scope.get("user")
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    ident = getattr(user, "identity", None) or getattr(user, "display_name", None)
    return str(ident) if ident else None


def from_user() -> FromCallable:
    """Identify by ``scope["user"]`` as set by Starlette's ``AuthenticationMiddleware``.

    Install ``AuthenticationMiddleware`` *outside* airlock so the user is known
    when airlock runs. Unauthenticated requests get 401.
    """
    return FromCallable(_authenticated_user)
