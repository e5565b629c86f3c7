"""``[throttle]`` and ``[budget]``: request limits, a concurrency cap and token budgets per caller.

::

    [throttle]
    storage = "redis://127.0.0.1:6379/0"     # default memory:// (this process only)
    requests = "10/second;300/minute"
    concurrency = 4

    [budget]
    tokens = "20000/minute;1000000/day"       # storage: the same as [throttle] unless set

Limits count per caller (client key name, or address). Every stage using the
same storage URI shares one :class:`~airlock.throttle.LimitStorage` (one pool,
one circuit breaker). A route with its own ``[routes.<name>.throttle]`` counts
separately from the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airlock.errors import ConfigurationError
from airlock.gateway.tables import Table

__all__ = ["BUDGET", "THROTTLE", "BudgetSettings", "ThrottleSettings"]

DEFAULT_STORAGE = "memory://"
_SHARED_URI = "throttle.storage_uri"


@dataclass(frozen=True)
class ThrottleSettings:
    storage: str = DEFAULT_STORAGE
    storage_timeout: float = 0.05
    requests: str | None = None
    strategy: str | None = None
    concurrency: int | None = None
    on_storage_error: str = "closed"


@dataclass(frozen=True)
class BudgetSettings:
    tokens: str
    storage: str | None = None
    default_max_tokens: int = 1024
    set_max_tokens: str | None = "max_tokens"
    on_storage_error: str = "closed"


def _on_error(table: Table) -> str:
    value = table.string("on_storage_error", "closed")
    if value not in ("closed", "open"):
        raise ConfigurationError(f"{table.name('on_storage_error')} must be 'closed' or 'open'")
    return str(value)


def storage_for(uri: str, shared: dict[str, Any], timeout: float = 0.05) -> Any:
    """The one :class:`LimitStorage` of this app for ``uri``."""
    from airlock.throttle import LimitStorage

    key = f"storage:{uri}"
    if key not in shared:
        shared[key] = LimitStorage(uri, timeout=timeout)
    return shared[key]


class _ThrottleSection:
    per_route = True
    route_specific = False

    def parse(self, table: Table, *, route: str | None) -> ThrottleSettings:
        settings = ThrottleSettings(
            storage=table.string("storage", DEFAULT_STORAGE),
            storage_timeout=table.number("storage_timeout", 0.05, low=0.001, high=30),
            requests=table.string("requests"),
            strategy=table.string("strategy"),
            concurrency=table.integer("concurrency", 0, low=0, high=100_000) or None,
            on_storage_error=_on_error(table),
        )
        table.done()
        if settings.requests is None and settings.concurrency is None:
            raise ConfigurationError(f'[{table.path}] needs requests = "..." and/or concurrency = N')
        return settings

    def build(
        self, settings: ThrottleSettings, *, route: str | None, shared: dict[str, Any]
    ) -> dict[str, Any]:
        from airlock.throttle import ConcurrencyLimit, RateLimit

        storage = storage_for(settings.storage, shared, settings.storage_timeout)
        shared.setdefault(_SHARED_URI, settings.storage)
        # One count per caller across the gateway's routes; a route's own limits count apart.
        group = f"route-{route}" if route is not None else "gateway"
        admit: list[Any] = []
        if settings.requests is not None:
            options: dict[str, Any] = {"storage": storage, "on_storage_error": settings.on_storage_error}
            if settings.strategy is not None:
                options["strategy"] = settings.strategy
            admit.append(RateLimit(settings.requests, group=group, **options))
        if settings.concurrency is not None:
            admit.append(
                ConcurrencyLimit(
                    settings.concurrency,
                    storage=storage,
                    group=f"{group}-concurrency",
                    on_storage_error=settings.on_storage_error,
                )
            )
        return {"admit": tuple(admit)}


class _BudgetSection:
    per_route = True
    route_specific = False

    def parse(self, table: Table, *, route: str | None) -> BudgetSettings:
        tokens = table.string("tokens")
        if tokens is None:
            raise ConfigurationError(f'{table.name("tokens")} is required, e.g. "20000/minute;1000000/day"')
        set_max = table.string("set_max_tokens", "max_tokens")
        if set_max not in ("max_tokens", "max_completion_tokens", "none"):
            raise ConfigurationError(
                f"{table.name('set_max_tokens')} must be 'max_tokens', 'max_completion_tokens' or 'none'"
            )
        settings = BudgetSettings(
            tokens=tokens,
            storage=table.string("storage"),
            default_max_tokens=table.integer("default_max_tokens", 1024, low=1, high=10**7),
            set_max_tokens=None if set_max == "none" else set_max,
            on_storage_error=_on_error(table),
        )
        table.done()
        return settings

    def build(self, settings: BudgetSettings, *, route: str | None, shared: dict[str, Any]) -> dict[str, Any]:
        from airlock.throttle import TokenBudget

        uri = settings.storage or shared.get(_SHARED_URI) or DEFAULT_STORAGE
        group = f"budget-{route}" if route is not None else "budget"
        budget = TokenBudget(
            settings.tokens,
            storage=storage_for(uri, shared),
            group=group,
            default_max_tokens=settings.default_max_tokens,
            set_max_tokens=settings.set_max_tokens,
            on_storage_error=settings.on_storage_error,
        )
        return {"budget": budget}


THROTTLE = _ThrottleSection()
BUDGET = _BudgetSection()
