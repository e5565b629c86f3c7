"""What one route enforces: a frozen, validated description, checked at start-up.

A ``Policy`` holds plain settings (sizes, timeouts) and the stage objects that
later stages plug in (``admit``, ``validate``, ``sanitize``, ``anonymize``,
``budget``, ``audit``). A route's own settings are merged over the app's policy
with :meth:`Policy.merged`, so a route changes only what it names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from starlette.types import Scope

from airlock.errors import ConfigurationError

if TYPE_CHECKING:
    from airlock.context import Context, Identity

__all__ = ["DEFAULT_MAX_BODY_BYTES", "AuditSink", "Identifier", "Policy", "Stage"]

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


@runtime_checkable
class Stage(Protocol):
    """One check of the engine. Raise a :class:`~airlock.errors.Rejection` to refuse."""

    async def __call__(self, ctx: Context) -> None: ...


@runtime_checkable
class Identifier(Protocol):
    """Finds who is asking. Raise :class:`~airlock.errors.Unauthorized` to refuse."""

    async def __call__(self, scope: Scope) -> Identity: ...


@runtime_checkable
class AuditSink(Protocol):
    """Receives the finished context of every request, exactly once. Must not block."""

    def record(self, ctx: Context) -> None: ...


StageSlot = tuple[Stage, ...]

# Fields holding stages, in the order the engine runs them.
STAGE_FIELDS = ("admit", "validate", "sanitize", "anonymize", "budget")


def _as_stages(name: str, value: Any) -> StageSlot:
    if value is None:
        return ()
    items = tuple(value) if isinstance(value, Sequence) else (value,)
    for item in items:
        if not callable(item):
            raise ConfigurationError(f"Policy.{name} takes stage objects; got {type(item).__name__}")
    return items


def _default_identity() -> Identifier:
    from airlock.identity import ClientAddress

    return ClientAddress()


@dataclass(frozen=True)
class Policy:
    """The checks one route enforces.

    :param enabled: ``False`` lets requests through untouched (no checks, no audit).
    :param max_body_bytes: the body cap; larger bodies get ``413`` as soon as the cap is crossed.
    :param body_timeout: seconds the whole body may take to arrive; slower gets ``408``.
    :param json: parse the body as JSON (``415``/``400`` otherwise). ``False`` only caps the size.
    :param max_json_depth: nesting refused at parse time with ``400 json_too_deep``.
    :param identity: who is asking; defaults to the client address (no proxies trusted).
    :param admit: request-rate and concurrency stages, run before the body is read.
    :param validate: schema and structure stages.
    :param sanitize: text clean-up stages.
    :param anonymize: personal-data and secret stages.
    :param budget: token-budget stages, run last, right before the handler.
    :param audit: where the finished request is recorded.
    :param request_id_header: incoming header trusted as the request id when well-formed.
    :param linger_seconds: after refusing a request whose body was not read to its end, how
        long to keep discarding what still arrives before closing (so the client can read
        the refusal instead of a connection reset).
    :param linger_bytes: at most this many such bytes are discarded.
    """

    enabled: bool = True
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    body_timeout: float = 10.0
    json: bool = True
    max_json_depth: int = 64
    identity: Identifier | None = field(default_factory=_default_identity)
    admit: Any = ()
    validate: Any = ()
    sanitize: Any = ()
    anonymize: Any = ()
    budget: Any = ()
    audit: AuditSink | None = None
    request_id_header: str = "x-request-id"
    linger_seconds: float = 2.0
    linger_bytes: int = DEFAULT_MAX_BODY_BYTES

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ConfigurationError("Policy.enabled must be a bool")
        if isinstance(self.max_body_bytes, bool) or not isinstance(self.max_body_bytes, int):
            raise ConfigurationError("Policy.max_body_bytes must be an integer number of bytes")
        if self.max_body_bytes < 0:
            raise ConfigurationError("Policy.max_body_bytes must be >= 0")
        if isinstance(self.body_timeout, bool) or not isinstance(self.body_timeout, (int, float)):
            raise ConfigurationError("Policy.body_timeout must be a number of seconds")
        if not self.body_timeout > 0:
            raise ConfigurationError("Policy.body_timeout must be > 0")
        if not isinstance(self.json, bool):
            raise ConfigurationError("Policy.json must be a bool")
        if isinstance(self.max_json_depth, bool) or not isinstance(self.max_json_depth, int):
            raise ConfigurationError("Policy.max_json_depth must be an integer")
        if not 1 <= self.max_json_depth <= 10_000:
            raise ConfigurationError("Policy.max_json_depth must be between 1 and 10000")
        if self.identity is not None and not callable(self.identity):
            raise ConfigurationError("Policy.identity must be an identifier (async callable) or None")
        if self.audit is not None and not callable(getattr(self.audit, "record", None)):
            raise ConfigurationError("Policy.audit must have a record(ctx) method")
        if isinstance(self.linger_seconds, bool) or not isinstance(self.linger_seconds, (int, float)):
            raise ConfigurationError("Policy.linger_seconds must be a number of seconds")
        if self.linger_seconds < 0:
            raise ConfigurationError("Policy.linger_seconds must be >= 0")
        if (
            isinstance(self.linger_bytes, bool)
            or not isinstance(self.linger_bytes, int)
            or self.linger_bytes < 0
        ):
            raise ConfigurationError("Policy.linger_bytes must be an integer number of bytes >= 0")
        header = self.request_id_header
        if not isinstance(header, str) or not header or header != header.strip():
            raise ConfigurationError("Policy.request_id_header must be a header name")
        object.__setattr__(self, "request_id_header", header.lower())
        for name in STAGE_FIELDS:
            object.__setattr__(self, name, _as_stages(name, getattr(self, name)))

    def merged(self, overrides: Mapping[str, Any] | None) -> Policy:
        """This policy with ``overrides`` applied; unknown names raise ``ConfigurationError``."""
        if not overrides:
            return self
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigurationError(f"unknown policy option(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **dict(overrides))

    def components(self) -> list[Any]:
        """Every stage object of this policy, for start-up and shutdown hooks."""
        items: list[Any] = []
        if self.identity is not None:
            items.append(self.identity)
        for name in STAGE_FIELDS:
            items.extend(getattr(self, name))
        if self.audit is not None:
            items.append(self.audit)
        return items


def check_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Validate route overrides once, where they are declared, not per request."""
    result = dict(overrides)
    Policy().merged(result)
    return result
