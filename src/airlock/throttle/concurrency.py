"""``ConcurrencyLimit``: at most K requests of one identity in flight at once.

A slot is taken before the body is read and given back by a finalizer when the
response has ended, the client has gone away or the app has failed, so a
streamed reply holds its slot until its last chunk. Slots are counted with the
two-counter ledger (:mod:`airlock.throttle.ledger`), exact under concurrency on
every storage.

Leases: a worker that dies mid-request never gives its slots back. Counters live
in epochs of ``lease`` seconds, and the level counts the current and the
previous epoch, so a slot is held for at most between ``lease`` and
``2 * lease`` seconds even if nobody releases it. Set ``lease`` above your
longest request (a slower request's slot is forgotten early, letting one more in).
"""

from __future__ import annotations

import inspect
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from airlock.errors import ConcurrencyLimited, ConfigurationError
from airlock.throttle.alerts import Alerts
from airlock.throttle.headers import add_ietf_fields, limit_item
from airlock.throttle.ledger import Slot, give_back, give_back_local, reserve, reserve_local
from airlock.throttle.spec import check_name, identity_key, namespace_key
from airlock.throttle.stage import StorageStage
from airlock.throttle.storage import LimitStorage, StorageFailure

if TYPE_CHECKING:
    from airlock.context import Context, Finalizer, Identity

__all__ = ["ConcurrencyLimit"]

LimitResult = int | None
ConcurrencyArg = int | Callable[["Identity | None"], LimitResult | Awaitable[LimitResult]]
# Failed releases kept for a retry, and how many one retry gives back (within one deadline).
_MAX_UNRELEASED = 10_000
_RELEASE_BATCH = 32


def _check_limit(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError("ConcurrencyLimit needs a positive integer number of requests")
    return value


class ConcurrencyLimit(StorageStage):
    """Admit stage: refuse with ``429 too_many_concurrent_requests`` beyond K requests in flight.

    :param limit: K, or a callable of the identity (sync or async) returning K or ``None`` (exempt).
    :param storage: a URI or a shared :class:`LimitStorage`.
    :param group: count under this name; by default one count per identity for the whole app.
    :param name: the policy name in the RateLimit headers and the audit section.
    :param lease: seconds after which an unreleased slot (a dead worker) is forgotten (see above).
    :param retry_after: the ``Retry-After`` seconds sent with a refusal.
    :param on_storage_error: ``"closed"`` (503) or ``"open"`` (admit, recorded in ``ctx.failed_open``).
    :param headers: send the RateLimit fields (``qu="concurrent-requests"``).
    :param alerts: an :class:`Alerts` to tell about identities refused again and again.
    """

    def __init__(
        self,
        limit: ConcurrencyArg,
        *,
        storage: str | LimitStorage = "memory://",
        group: str = "concurrency",
        name: str = "concurrency",
        lease: float = 600.0,
        retry_after: int = 1,
        on_storage_error: str = "closed",
        headers: bool = True,
        alerts: Alerts | None = None,
    ) -> None:
        self._fixed: int | None = None
        self._func: Callable[..., Any] | None = None
        if callable(limit):
            self._func = limit
        else:
            self._fixed = _check_limit(limit)
        if isinstance(lease, bool) or not isinstance(lease, (int, float)) or not 1 <= lease <= 86400:
            raise ConfigurationError("ConcurrencyLimit lease must be between 1 and 86400 seconds")
        if isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 1:
            raise ConfigurationError("ConcurrencyLimit retry_after must be a positive integer")
        self.group = namespace_key(check_name(group, "ConcurrencyLimit group"))
        self.name = check_name(name, "ConcurrencyLimit name")
        self.lease = float(lease)
        self.retry_after = str(retry_after)
        super().__init__(storage=storage, on_storage_error=on_storage_error, headers=headers, alerts=alerts)
        self._expiry = math.ceil(2 * self.lease) + 1
        self._key_base = f"{self.storage.key_prefix}/conc/{self.group}/"
        self._policy_fields: dict[int, bytes] = {}
        # Slots whose release never reached the storage (its breaker was open after a blip):
        # given back as soon as it answers again, so a blip does not lock callers out for a
        # whole lease. Bounded: past it the oldest are left to the lease.
        self._unreleased: deque[Slot] = deque(maxlen=_MAX_UNRELEASED)

    def __repr__(self) -> str:
        limit = self._fixed if self._fixed is not None else "dynamic"
        return f"<ConcurrencyLimit {limit} storage={self.storage!r}>"

    async def _limit_for(self, identity: Identity | None) -> int | None:
        if self._fixed is not None:
            return self._fixed
        assert self._func is not None
        result = self._func(identity)
        if inspect.isawaitable(result):
            result = await result
        return None if result is None else _check_limit(result)

    def _slot(self, ctx: Context, limit: int, epoch: int) -> Slot:
        base = self._key_base + identity_key(ctx)
        return Slot(
            used=f"{base}/{epoch}/u",
            freed=f"{base}/{epoch}/f",
            limit=limit,
            expiry=self._expiry,
            carried=((f"{base}/{epoch - 1}/u", f"{base}/{epoch - 1}/f"),),
        )

    def _policy_field(self, limit: int) -> bytes:
        field = self._policy_fields.get(limit)
        if field is None:
            field = f'"{self.name}";q={limit};qu="concurrent-requests"'.encode("latin-1")
            if len(self._policy_fields) < 256:  # dynamic limits: a few plans, not one per user
                self._policy_fields[limit] = field
        return field

    async def __call__(self, ctx: Context) -> None:
        limit = self._fixed if self._fixed is not None else await self._limit_for(ctx.identity)
        if limit is None:
            return
        record: dict[str, Any] = {"limit": limit}
        ctx.audit.setdefault("throttle", {})[self.name] = record
        slot = self._slot(ctx, limit, int(time.time() // self.lease))
        storage = self.storage
        local = storage.local
        if local is not None:
            result = reserve_local(local, (slot,), 1)
        else:
            try:
                result = await storage.run(
                    lambda: reserve(storage.storage, (slot,), 1, concurrent=storage.guarded)
                )
            except StorageFailure:
                self._storage_failed(ctx, record, "throttle")  # raises unless failing open
                return

        if self._unreleased and local is None:
            await self._release_pending()  # the storage has just answered
        in_flight = result.levels[0]
        record["admitted"] = result.admitted
        record["in_flight"] = min(in_flight, limit) if result.admitted else limit
        if self.headers:
            add_ietf_fields(
                ctx,
                self._policy_field(limit),
                [limit_item(self.name, limit - in_flight if result.admitted else 0)],
            )
        if not result.admitted:
            if self.alerts is not None:
                await self.alerts.refused(ctx, storage, self.name, record)
            raise ConcurrencyLimited(
                headers={"Retry-After": self.retry_after},
                extensions={"violated-policies": [self.name]},
            )
        ctx.defer(self._releaser(slot, record))

    def _releaser(self, slot: Slot, record: dict[str, Any]) -> Finalizer:
        storage = self.storage
        local = storage.local
        if local is not None:
            # In-process storage: done at once, no await, so the engine needs no shielded scope.
            def release_local(_: Context) -> None:
                give_back_local(local, (slot,), 1)
                record["released"] = True

            return release_local

        async def release(_: Context) -> None:
            try:
                await storage.run(lambda: give_back(storage.storage, (slot,), 1, concurrent=storage.guarded))
            except StorageFailure as failure:
                record["released"] = False  # the lease frees it at the latest
                if not failure.attempted:
                    # Never sent (the breaker was open): give it back once the storage answers.
                    # One that was sent may have been applied; giving it back twice would
                    # let the caller exceed the cap, so that one is left to the lease.
                    self._unreleased.append(slot)
                return
            record["released"] = True
            if self._unreleased:
                await self._release_pending()

        return release

    async def _release_pending(self) -> None:
        """Give back a batch of the slots whose release failed earlier (one storage round trip)."""
        batch = [self._unreleased.popleft() for _ in range(min(len(self._unreleased), _RELEASE_BATCH))]
        storage = self.storage
        try:
            await storage.run(lambda: give_back(storage.storage, batch, 1, concurrent=storage.guarded))
        except StorageFailure as failure:
            if not failure.attempted:
                self._unreleased.extendleft(reversed(batch))
