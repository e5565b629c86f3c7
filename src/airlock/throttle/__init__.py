"""Per-identity request limits, concurrency caps and token budgets on ``limits.aio``.

::

    from airlock import Policy
    from airlock.throttle import ConcurrencyLimit, LimitStorage, RateLimit, TokenBudget

    store = LimitStorage("redis://127.0.0.1:6379/0")
    policy = Policy(
        admit=[RateLimit("10/second;300/minute", storage=store, group="api"),
               ConcurrencyLimit(4, storage=store)],
        budget=TokenBudget("20000/minute;1000000/day", storage=store),
    )

Counts follow ``ctx.identity.id``. Over a limit: ``429`` problem+json
(``rate_limited``, ``too_many_concurrent_requests``, ``budget_exhausted``) with
``Retry-After``, ``RateLimit-Policy``/``RateLimit`` and ``X-RateLimit-*``; a
storage failure is ``503 storage_unavailable`` or, with
``on_storage_error="open"``, an admitted request recorded in ``ctx.failed_open``.
"""

from airlock.throttle.alerts import Alert, AlertHook, Alerts
from airlock.throttle.budget import FALLBACK_BYTES_PER_TOKEN, TokenBudget
from airlock.throttle.concurrency import ConcurrencyLimit
from airlock.throttle.ratelimit import DEFAULT_STRATEGY, RateLimit
from airlock.throttle.storage import LimitStorage, StorageFailure

__all__ = [
    "DEFAULT_STRATEGY",
    "FALLBACK_BYTES_PER_TOKEN",
    "Alert",
    "AlertHook",
    "Alerts",
    "ConcurrencyLimit",
    "LimitStorage",
    "RateLimit",
    "StorageFailure",
    "TokenBudget",
]
