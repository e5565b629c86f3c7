"""Limit strings: parsed once with ``limits``, named for the RateLimit headers, resolved per identity.

``"10/second;300/minute;5000/day"`` is ``limits``' own notation (separators ``;``,
``,`` or ``|``; ``10 per 30 seconds`` works too). Every window of a string is
checked on every request. A stage takes either such a string or a callable of
the :class:`~airlock.Identity` (sync or async) returning one, for plans and
tiers; returned strings are parsed once and cached, and ``None`` exempts the
identity.
"""

from __future__ import annotations

import hashlib
import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

from limits import RateLimitItem
from limits.util import parse_many

from airlock.errors import ConfigurationError

if TYPE_CHECKING:
    from airlock.context import Context, Identity

__all__ = [
    "LimitSet",
    "LimitSource",
    "LimitsArg",
    "Window",
    "check_name",
    "check_on_error",
    "identity_key",
    "namespace_key",
    "parse_limits",
]

LimitsResult = str | None
LimitsArg = str | Callable[["Identity | None"], LimitsResult | Awaitable[LimitsResult]]
OnError = Literal["closed", "open"]

# Policy names end up inside a structured-field String and in storage keys: keep them plain.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.:/-]")


@dataclass(frozen=True, slots=True)
class Window:
    """One window of a limit string: ``amount`` units per ``seconds``."""

    item: RateLimitItem
    amount: int
    seconds: int
    name: str
    # What limits' item.key_for(identifier) puts around the identifier, joined once here.
    key_head: str = field(init=False, repr=False, compare=False)
    key_tail: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        item = self.item
        object.__setattr__(self, "key_head", f"{item.namespace}/")
        object.__setattr__(self, "key_tail", f"/{item.amount}/{item.multiples}/{item.GRANULARITY.name}")

    def key_for(self, identifier: str) -> str:
        """The storage key of this window for ``identifier``, equal to ``item.key_for(identifier)``."""
        return self.key_head + identifier + self.key_tail


@dataclass(frozen=True, slots=True)
class LimitSet:
    """A parsed limit string with its precomputed ``RateLimit-Policy`` field value."""

    text: str
    windows: tuple[Window, ...]
    policy_field: str
    policy_bytes: bytes


def check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise ConfigurationError(f"{what} must be 1-64 letters, digits, '_', '.' or '-'")
    return value


def check_on_error(value: str) -> OnError:
    if value not in ("closed", "open"):
        raise ConfigurationError('on_storage_error must be "closed" or "open"')
    return "closed" if value == "closed" else "open"


def _window_name(base: str, item: RateLimitItem) -> str:
    unit = item.GRANULARITY.name
    return f"{base}-{unit}" if item.multiples == 1 else f"{base}-{item.multiples}-{unit}s"


@lru_cache(maxsize=1024)
def parse_limits(text: str, base: str, unit: str | None = None) -> LimitSet:
    """Parse ``text`` (``limits`` notation); ``ConfigurationError`` when it is not valid."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigurationError("a limit string such as '10/second;300/minute' is required")
    try:
        items = parse_many(text.strip())
    except ValueError:
        raise ConfigurationError(f"not a valid limit string: {text!r}") from None
    windows: list[Window] = []
    seen: set[int] = set()
    for item in items:
        seconds = item.get_expiry()
        if seconds in seen:
            raise ConfigurationError(f"limit string {text!r} names the same window twice")
        seen.add(seconds)
        windows.append(Window(item, item.amount, seconds, _window_name(base, item)))
    quota_unit = f';qu="{unit}"' if unit else ""
    policy = ", ".join(f'"{w.name}";q={w.amount};w={w.seconds}{quota_unit}' for w in windows)
    return LimitSet(text.strip(), tuple(windows), policy, policy.encode("latin-1"))


class LimitSource:
    """A fixed limit string, or a function of the identity that returns one (or ``None``: exempt)."""

    __slots__ = ("_base", "_fixed", "_func", "_unit")

    def __init__(self, limits: LimitsArg, base: str, unit: str | None = None) -> None:
        self._base = base
        self._unit = unit
        self._fixed: LimitSet | None = None
        self._func: Callable[..., LimitsResult | Awaitable[LimitsResult]] | None = None
        if isinstance(limits, str):
            self._fixed = parse_limits(limits, base, unit)
        elif callable(limits):
            self._func = limits
        else:
            raise ConfigurationError("limits must be a limit string or a callable of the identity")

    @property
    def fixed(self) -> LimitSet | None:
        return self._fixed

    def describe(self) -> str:
        if self._fixed is not None:
            return self._fixed.text
        return "dynamic"

    async def resolve(self, identity: Identity | None) -> LimitSet | None:
        if self._fixed is not None:
            return self._fixed
        assert self._func is not None
        result = self._func(identity)
        if inspect.isawaitable(result):
            result = await result
        if result is None or result == "":
            return None
        if not isinstance(result, str):
            raise ConfigurationError("a dynamic limits callable must return a limit string or None")
        return parse_limits(result, self._base, self._unit)


def identity_key(ctx: Context) -> str:
    """The identity as it appears in storage keys: a short hash, never the raw id.

    Hashing keeps addresses and user ids out of Redis/memcached dumps and satisfies
    memcached's key rules (no spaces, at most 250 bytes) whatever the id holds.
    """
    return _hashed_id(ctx.identity.id if ctx.identity is not None else "anonymous")


# The same callers come back request after request: hash each id once (per 4096 recent ones).
@lru_cache(maxsize=4096)
def _hashed_id(raw: str) -> str:
    return hashlib.blake2b(raw.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


@lru_cache(maxsize=1024)
def namespace_key(value: str) -> str:
    """A route template or group name made safe for every storage's keys (and Redis hash tags)."""
    return _UNSAFE_KEY_CHARS.sub("_", value)[:96] or "_"
