"""Keyed pseudonyms for identities and client addresses, and the address policy.

The audit log must let an operator follow one caller across events (abuse,
troubleshooting) without holding who that caller is. A keyed HMAC does both: the
same identity gives the same hash under the same key, and without the key a
hash cannot be reversed by hashing every user id or IPv4 address (a plain
SHA-256 of an IPv4 address is reversed in minutes).

Keys come from the constructor or the environment (``AIRLOCK_AUDIT_KEY``).
Without one, a random key is made per process: hashes still correlate within
that process but not across restarts or workers, and a warning says so.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
from functools import lru_cache
from typing import Literal

from airlock.errors import ConfigurationError

__all__ = [
    "CHAIN_KEY_ENV",
    "CLIENT_POLICIES",
    "IDENTITY_KEY_ENV",
    "MIN_KEY_BYTES",
    "ClientPolicy",
    "KeyedHasher",
    "key_id",
    "load_key",
    "truncate_address",
]

logger = logging.getLogger("airlock.audit")

IDENTITY_KEY_ENV = "AIRLOCK_AUDIT_KEY"
CHAIN_KEY_ENV = "AIRLOCK_AUDIT_CHAIN_KEY"
MIN_KEY_BYTES = 16
_CACHE_SIZE = 4096
# 128 bits: ample to tell callers apart, and half the bytes of a full digest in every event.
_HASH_HEX = 32

ClientPolicy = Literal["truncate", "hash", "none"]
CLIENT_POLICIES: tuple[str, ...] = ("truncate", "hash", "none")


def load_key(value: str | bytes | None, env: str, *, what: str) -> bytes | None:
    """``value``, else the environment variable ``env``, as bytes; ``None`` when neither is set.

    Never echoes the key in an error: it may be pasted into the wrong place.
    """
    if value is None:
        value = os.environ.get(env) or None
    if value is None:
        return None
    raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    if len(raw) < MIN_KEY_BYTES:
        raise ConfigurationError(
            f"{what} must be at least {MIN_KEY_BYTES} bytes (make one with: "
            "python -c 'import secrets; print(secrets.token_hex(32))')"
        )
    return raw


def key_id(key: bytes) -> str:
    """A short public name for ``key`` (8 hex digits), so events say which key hashed them."""
    return hmac.digest(key, b"airlock audit key id", "sha256").hex()[:8]


_IPV4_MASK = 24
_IPV6_MASK = 48


@lru_cache(maxsize=4096)
def truncate_address(address: str) -> str | None:
    """The /24 (IPv4) or /48 (IPv6) network of ``address``; ``None`` if it is not an IP address.

    The same prefixes Google Analytics and Matomo use for "IP anonymisation":
    enough to see a network or a region, not a household.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    mask = _IPV4_MASK if ip.version == 4 else _IPV6_MASK
    return str(ipaddress.ip_network((ip, mask), strict=False))


class KeyedHasher:
    """HMAC-SHA256 pseudonyms under one key, with separate domains for identities and addresses."""

    __slots__ = ("_cache", "_key", "client_policy", "ephemeral", "key_id")

    def __init__(self, key: str | bytes | None = None, *, client: ClientPolicy = "truncate") -> None:
        if client not in CLIENT_POLICIES:
            raise ConfigurationError(f"client must be one of {', '.join(CLIENT_POLICIES)}")
        loaded = load_key(key, IDENTITY_KEY_ENV, what="the audit identity key")
        self.ephemeral = loaded is None
        if loaded is None:
            loaded = os.urandom(32)
            logger.warning(
                "airlock audit: no identity key (set %s); identity hashes are made with a random "
                "per-process key and will not match across restarts or workers",
                IDENTITY_KEY_ENV,
            )
        self._key = loaded
        # Identity -> hash: the same callers come back, and an HMAC costs more than the rest of the event.
        self._cache: dict[str, str] = {}
        self.key_id = key_id(loaded)
        self.client_policy: ClientPolicy = client

    def __repr__(self) -> str:
        return f"<KeyedHasher key_id={self.key_id} ephemeral={self.ephemeral} client={self.client_policy}>"

    def identity(self, identity_id: str) -> str:
        cache = self._cache
        found = cache.get(identity_id)
        if found is None:
            # surrogatepass: an id from a JSON claim may hold a lone surrogate; same bytes otherwise.
            raw = identity_id.encode("utf-8", "surrogatepass")
            digest = hmac.digest(self._key, b"identity\x00" + raw, "sha256")
            found = digest.hex()[:_HASH_HEX]
            if len(cache) >= _CACHE_SIZE:
                cache.clear()  # a crude bound; callers repeat, so it refills with the active ones
            cache[identity_id] = found
        return found

    def client(self, address: str | None) -> str | None:
        """The client address as the policy allows it to be logged."""
        if address is None or self.client_policy == "none":
            return None
        if self.client_policy == "truncate":
            return truncate_address(address)
        return hmac.digest(self._key, b"client\x00" + address.encode("utf-8"), "sha256").hex()[:_HASH_HEX]
