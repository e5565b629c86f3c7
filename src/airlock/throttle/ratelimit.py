"""``RateLimit``: requests per identity, every window of a limit string checked on every request.

Strategies are ``limits``' own (``limits.aio`` only):

``sliding-window-counter`` (default)
    Weighs the previous window's count by how much of it still overlaps the
    sliding window. O(1) storage per window like a fixed window, but no double
    burst at window boundaries (a fixed window lets 2x the limit through across
    the edge, which a cost-control limit should not). Two round trips per
    request (acquire, then read the stats for the headers).
``fixed-window``
    One counter per window, reset at the end of the window. Cheapest: one
    round trip (the increment and the TTL read are sent together), exact counts.
``moving-window``
    Exact sliding log: one stored entry per request per window, so memory grows
    with the limit (a ``5000/day`` limit keeps up to 5000 timestamps per user).
    Two round trips.

All windows of one request are sent concurrently, so round trips do not grow
with the number of windows. On ``memory://`` there are no round trips: the stage
calls the in-process storage synchronously (:mod:`airlock.throttle.memory`), and a
sliding-window hit returns the window it saw, so the headers need no second read.

A request refused by one window still counts in the windows that admitted it
(``limits`` has no refund); that errs on the safe side and only affects clients
that keep sending past a 429.

Counts are kept per identity and per route template by default; give several
stages (on several routes) the same ``group`` to share one count between them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from limits.aio.strategies import STRATEGIES, RateLimiter

from airlock.errors import ConfigurationError, RateLimited
from airlock.throttle.alerts import Alerts
from airlock.throttle.headers import (
    add_ietf_fields,
    delta_seconds,
    limit_item,
    retry_after,
    set_legacy_fields,
)
from airlock.throttle.ledger import all_of
from airlock.throttle.memory import MemoryStorage
from airlock.throttle.spec import (
    LimitsArg,
    LimitSet,
    LimitSource,
    Window,
    check_name,
    identity_key,
    namespace_key,
)
from airlock.throttle.stage import StorageStage
from airlock.throttle.storage import LimitStorage, StorageFailure

if TYPE_CHECKING:
    from airlock.context import Context

__all__ = ["DEFAULT_STRATEGY", "RateLimit"]

DEFAULT_STRATEGY = "sliding-window-counter"


class _Outcome(NamedTuple):
    window: Window
    admitted: bool
    remaining: int
    reset_at: float


def _tightness(outcome: _Outcome) -> tuple[int, float]:
    return outcome.remaining, -outcome.reset_at


class RateLimit(StorageStage):
    """Admit stage: refuse with ``429 rate_limited`` once an identity exceeds a limit.

    :param limits: ``"10/second;300/minute;5000/day"``, or a callable of the
        identity (sync or async) returning such a string, or ``None`` to exempt it.
    :param storage: a URI (``memory://``, ``redis://...``) or a shared :class:`LimitStorage`.
    :param strategy: ``"sliding-window-counter"`` (default), ``"fixed-window"``, ``"moving-window"``.
    :param group: count under this name, shared by every stage and route that uses
        it; by default each route template counts separately.
    :param name: the policy name in the RateLimit headers and the audit section.
    :param on_storage_error: ``"closed"`` (503) or ``"open"`` (admit, recorded in ``ctx.failed_open``).
    :param headers: send the RateLimit fields (set ``False`` not to disclose limits).
    :param alerts: an :class:`Alerts` to tell about identities refused again and again.
    """

    def __init__(
        self,
        limits: LimitsArg,
        *,
        storage: str | LimitStorage = "memory://",
        strategy: str = DEFAULT_STRATEGY,
        group: str | None = None,
        name: str | None = None,
        on_storage_error: str = "closed",
        headers: bool = True,
        alerts: Alerts | None = None,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ConfigurationError(f"strategy must be one of {', '.join(sorted(STRATEGIES))}")
        if group is not None:
            check_name(group, "RateLimit group")
        self.name = check_name(name if name is not None else (group or "rate"), "RateLimit name")
        self.group = group
        self.strategy = strategy
        super().__init__(storage=storage, on_storage_error=on_storage_error, headers=headers, alerts=alerts)
        self.source = LimitSource(limits, self.name)
        try:
            limiter_class = cast("type[Any]", STRATEGIES[strategy])
            self._limiter: RateLimiter = limiter_class(self.storage.storage)
        except NotImplementedError:
            raise ConfigurationError(
                f"{self.storage.scheme}:// storage does not support {strategy}"
            ) from None
        self._fixed = strategy == "fixed-window"
        self._group_key = namespace_key(group) if group is not None else None
        self._key_base = f"{self.storage.key_prefix}/rate/"
        # memory:// answers synchronously (see airlock.throttle.memory); moving-window goes through limits.
        self._local_hit: Callable[[MemoryStorage, Window, str], _Outcome] | None = None
        if self.storage.local is not None:
            if strategy == "fixed-window":
                self._local_hit = _local_fixed
            elif strategy == "sliding-window-counter":
                self._local_hit = _local_sliding

    def __repr__(self) -> str:
        return f"<RateLimit {self.source.describe()!r} strategy={self.strategy} storage={self.storage!r}>"

    async def __call__(self, ctx: Context) -> None:
        limit_set = self.source.fixed or await self.source.resolve(ctx.identity)
        if limit_set is None:
            return
        record: dict[str, Any] = {"limits": limit_set.text, "strategy": self.strategy}
        ctx.audit.setdefault("throttle", {})[self.name] = record
        scope = self._group_key or ("route:" + namespace_key(ctx.route or "*"))
        # One pre-joined identifier: the same key as four, with less of limits' escaping work.
        identifier = f"{self._key_base}{scope}/{identity_key(ctx)}"
        local, local_hit = self.storage.local, self._local_hit
        if local is not None and local_hit is not None:
            outcomes = [local_hit(local, window, identifier) for window in limit_set.windows]
        else:
            try:
                outcomes = await self.storage.run(lambda: self._hit(limit_set, identifier))
            except StorageFailure:
                self._storage_failed(ctx, record, "throttle")  # raises unless failing open
                return

        now = time.time()
        violated = [o for o in outcomes if not o.admitted]
        tightest = outcomes[0] if len(outcomes) == 1 else min(outcomes, key=_tightness)
        record["admitted"] = not violated
        record["remaining"] = tightest.remaining
        record["reset_after"] = delta_seconds(tightest.reset_at, now)
        if self.headers:
            add_ietf_fields(
                ctx,
                limit_set.policy_bytes,
                [limit_item(o.window.name, o.remaining, delta_seconds(o.reset_at, now)) for o in outcomes],
            )
            set_legacy_fields(ctx, tightest.window.amount, tightest.remaining, tightest.reset_at)
        if not violated:
            return
        names = [o.window.name for o in violated]
        record["violated"] = names
        if self.alerts is not None:
            await self.alerts.refused(ctx, self.storage, self.name, record)
        raise RateLimited(
            headers={"Retry-After": retry_after(max(o.reset_at for o in violated), now)},
            extensions={"violated-policies": names},
        )

    async def _hit(self, limit_set: LimitSet, identifier: str) -> list[_Outcome]:
        hit = self._hit_fixed if self._fixed else self._hit_with_stats
        return await all_of([hit(w, identifier) for w in limit_set.windows], self.storage.guarded)

    async def _hit_fixed(self, window: Window, identifier: str) -> _Outcome:
        # What FixedWindowRateLimiter.hit does, keeping the count it throws away: the
        # remaining count comes with the increment and the reset with the TTL read sent
        # alongside, so the headers cost no extra round trip.
        storage = self.storage.storage
        key = window.key_for(identifier)
        started = time.time()
        hit, expires_at = await all_of(
            [storage.incr(key, window.seconds, 1), storage.get_expiry(key)], self.storage.guarded
        )
        count = int(hit)
        # count == 1: our increment opened the window (the TTL may have been read before it).
        reset_at = started + window.seconds if count == 1 else max(float(expires_at), started)
        return _Outcome(window, count <= window.amount, max(0, window.amount - count), reset_at)

    async def _hit_with_stats(self, window: Window, identifier: str) -> _Outcome:
        admitted = await self._limiter.hit(window.item, identifier)
        stats = await self._limiter.get_window_stats(window.item, identifier)
        return _Outcome(window, admitted, max(0, int(stats.remaining)), float(stats.reset_time))


def _local_fixed(storage: MemoryStorage, window: Window, identifier: str) -> _Outcome:
    """Fixed window in memory: the count comes with the increment, the reset is the counter's expiry."""
    key = window.key_for(identifier)
    count = storage.add(key, window.seconds, 1)
    return _Outcome(window, count <= window.amount, max(0, window.amount - count), storage.expires_at(key))


def _local_sliding(storage: MemoryStorage, window: Window, identifier: str) -> _Outcome:
    """Sliding window counter in memory: the headers' stats come from the hit's own window."""
    key = window.key_for(identifier)
    admitted, seen, now = storage.hit_sliding_window(key, window.amount, window.seconds)
    remaining, reset_at = seen.stats(window.amount, window.seconds, now)
    return _Outcome(window, admitted, remaining, reset_at)
