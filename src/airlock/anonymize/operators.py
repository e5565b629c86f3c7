"""What replaces a detected value: ``redact``, ``mask``, ``hash`` or ``pseudonymize``.

``hash`` and ``pseudonymize`` are keyed (HMAC-SHA256), so the same value gives
the same output in every worker and process that shares the key, with no
shared state, and nobody without the key can test a guess against the output.
The key comes from ``Anonymizer(key=...)`` or the ``AIRLOCK_ANONYMIZE_KEY``
environment variable; without either, a random key is made per process (see
:func:`resolve_key`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from airlock.anonymize.vault import Vault, placeholder_key
from airlock.errors import ConfigurationError

__all__ = [
    "KEY_ENV",
    "Hash",
    "Mask",
    "Operator",
    "OperatorContext",
    "Pseudonymize",
    "Redact",
    "operator_from",
    "resolve_key",
]

KEY_ENV = "AIRLOCK_ANONYMIZE_KEY"
_MIN_KEY_BYTES = 16
logger = logging.getLogger("airlock.anonymize")


def resolve_key(key: str | bytes | None, *, warn: bool = True) -> tuple[bytes, bool]:
    """The HMAC key and whether it is stable (configured) rather than random per process.

    Order: the ``key`` argument, then ``$AIRLOCK_ANONYMIZE_KEY``. Without either a
    random 32-byte key is made: pseudonyms still restore correctly within each
    request, but the same value gets different placeholders and hashes in
    different workers and after a restart.
    """
    if key is None:
        env = os.environ.get(KEY_ENV)
        if env:
            key = env
    if key is None:
        if not warn:
            return secrets.token_bytes(32), False
        logger.warning(
            "airlock.anonymize: no key configured (%s); using a random per-process key, so hashes "
            "and pseudonyms differ between workers and restarts",
            KEY_ENV,
        )
        return secrets.token_bytes(32), False
    raw = key.encode("utf-8") if isinstance(key, str) else key
    if not isinstance(raw, bytes) or len(raw) < _MIN_KEY_BYTES:
        raise ConfigurationError(f"the anonymize key must be at least {_MIN_KEY_BYTES} bytes")
    return raw, True


@dataclass(slots=True)
class OperatorContext:
    """What an operator may use for one call: the key, the request's vault, a scope."""

    key: bytes
    vault: Vault
    scope: str = ""

    def digest(self, *parts: str) -> str:
        message = "\x00".join((self.scope, *parts)).encode("utf-8", "surrogatepass")
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()


@runtime_checkable
class Operator(Protocol):
    """Turns one found value into its replacement.

    ``value`` is the original text, ``normal`` its canonical, case-folded form
    (use it for anything that should not depend on how the value was written).
    """

    name: str
    reversible: bool

    def __call__(self, entity: str, value: str, normal: str, ctx: OperatorContext) -> str: ...


class Redact:
    """``[EMAIL]``: the entity type only."""

    name = "redact"
    reversible = False

    def __repr__(self) -> str:
        return "Redact()"

    def __call__(self, entity: str, value: str, normal: str, ctx: OperatorContext) -> str:
        return f"[{entity}]"


class Mask:
    """``****-****-****-1111``: letters and digits masked except the last ``keep``; separators stay."""

    name = "mask"
    reversible = False

    def __init__(self, keep: int = 4, char: str = "*") -> None:
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise ConfigurationError("Mask(keep=...) must be an integer >= 0")
        if not isinstance(char, str) or len(char) != 1:
            raise ConfigurationError("Mask(char=...) must be one character")
        self.keep = keep
        self.char = char

    def __repr__(self) -> str:
        return f"Mask(keep={self.keep})"

    def __call__(self, entity: str, value: str, normal: str, ctx: OperatorContext) -> str:
        significant = sum(c.isalnum() for c in value)
        masked_count = max(0, significant - self.keep)
        out: list[str] = []
        for char in value:
            if char.isalnum():
                if masked_count > 0:
                    out.append(self.char)
                    masked_count -= 1
                else:
                    out.append(char)
            elif char.isspace() or char in "-.@/:()+_":
                out.append(char)
            # Zero-width and other format characters are dropped, not kept as tells.
        return "".join(out)


class Hash:
    """``[EMAIL:9f86d081884c7d65]``: a keyed HMAC of the value, stable for one key."""

    name = "hash"
    reversible = False

    def __init__(self, length: int = 16) -> None:
        if isinstance(length, bool) or not isinstance(length, int) or not 8 <= length <= 64:
            raise ConfigurationError("Hash(length=...) must be between 8 and 64 hex digits")
        self.length = length

    def __repr__(self) -> str:
        return f"Hash(length={self.length})"

    def __call__(self, entity: str, value: str, normal: str, ctx: OperatorContext) -> str:
        # Unscoped: a hash is for joining records across requests and users.
        digest = hmac.new(ctx.key, f"{entity}\x00{normal}".encode("utf-8", "surrogatepass"), hashlib.sha256)
        return f"[{entity}:{digest.hexdigest()[: self.length]}]"


class Pseudonymize:
    """``[EMAIL_1a2b3c4d]``: a placeholder the model can reason about, restored in the reply.

    The placeholder is a keyed hash of the entity and the value's canonical form
    (and the scope, e.g. the caller's identity), so the same value gets the same
    placeholder in every turn of a conversation and in every worker, while two
    callers cannot correlate values through placeholders. The request's vault
    maps it back.
    """

    name = "pseudonymize"
    reversible = True

    def __init__(self, length: int = 8) -> None:
        if isinstance(length, bool) or not isinstance(length, int) or not 8 <= length <= 16:
            raise ConfigurationError("Pseudonymize(length=...) must be between 8 and 16 hex digits")
        self.length = length

    def __repr__(self) -> str:
        return f"Pseudonymize(length={self.length})"

    def __call__(self, entity: str, value: str, normal: str, ctx: OperatorContext) -> str:
        vault = ctx.vault
        digest = ctx.digest(entity, normal)
        placeholder = placeholder_key(entity, digest[: self.length])
        if vault.put(placeholder, value):
            return placeholder
        # Same placeholder, different spelling of the value (or a collision): the
        # exact original decides, so restoring gives back exactly what was sent.
        exact = ctx.digest(entity, normal, value)
        for size in (self.length, 16, 24, 32):
            placeholder = placeholder_key(entity, exact[:size])
            if vault.put(placeholder, value):
                return placeholder
        raise RuntimeError("pseudonym collision")  # pragma: no cover - 128-bit HMAC collision


_BY_NAME: dict[str, type[Redact] | type[Mask] | type[Hash] | type[Pseudonymize]] = {
    "redact": Redact,
    "mask": Mask,
    "hash": Hash,
    "pseudonymize": Pseudonymize,
    "pseudonymise": Pseudonymize,
}


def operator_from(spec: object) -> Operator:
    """An operator from a name (``"redact"``, ``"mask"``, ``"hash"``, ``"pseudonymize"``) or an object."""
    if isinstance(spec, str):
        cls = _BY_NAME.get(spec.lower())
        if cls is None:
            raise ConfigurationError(f"unknown operator {spec!r}; use redact, mask, hash or pseudonymize")
        return cls()
    if isinstance(spec, Operator):
        return spec
    raise ConfigurationError("an operator is a name or an object with name, reversible and __call__")
