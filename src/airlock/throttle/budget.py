"""``TokenBudget``: tokens per identity per window, reserved before the call and settled after it.

The reservation
    Right before the handler runs, the stage reserves ``prompt estimate +
    max_tokens`` in every window of the budget (``"20000/minute;1000000/day"``):

    * the prompt estimate is ``ctx.token_estimate`` (set by the validation
      stage); without one, ``ceil(len(body) / 3)``, more than the usual ~4
      bytes per token of English (JSON punctuation is in the body too), and
      about right for scripts that take three UTF-8 bytes per character;
    * ``max_tokens`` is the larger of the request's ``max_completion_tokens`` and
      ``max_tokens``; when it names neither, ``default_max_tokens`` is reserved
      *and written into the request* (``set_max_tokens``), so the provider
      cannot produce more than was reserved.

    A reservation is admitted only if it fits into every window, all or nothing.
    It is exact under concurrency, including a user's very first requests
    arriving at once: the two-counter ledger (:mod:`airlock.throttle.ledger`)
    hands every concurrent reservation its own running total, so the admitted
    reservations never add up to more than the limit.

The settlement
    A finalizer (``ctx.defer``) runs once the response is over (for a stream:
    after its last chunk) and compares the reservation with the usage the
    handler reported (``ctx.report_usage``):

    * less used than reserved (the usual case: replies are shorter than
      ``max_tokens``): the difference is given back, in the windows it was
      reserved in. ``limits`` has no decrement, so "given back" is an increment
      of the window's *freed* counter; the level is ``used - freed``;
    * more used than reserved (the prompt estimate was low): the difference is
      charged to the current windows, unconditionally;
    * no usage reported with a 4xx answer (the app or the provider refused the
      request): the reservation is given back in full;
    * no usage reported otherwise (the handler failed, a stream was cut, the
      client left): the reservation stays charged. It may have cost tokens; we
      cannot know it did not.

    Requests without a body reserve nothing.

The bound
    Admitted reservations never exceed the limit. Usage beyond a reservation can
    only come from a prompt estimate that was too low (the completion is capped
    by ``max_tokens``), is charged at settlement, and refuses the user's next
    requests until the window frees up. So a user exceeds a budget by at most
    the estimate error of the requests in flight at that moment, one request's
    worth for a user who sends one at a time, never by a whole burst of
    concurrent first requests (the failure mode of budgets that check "spent <
    limit" before the call and count after it).

Windows are aligned to the clock (a ``/day`` budget resets at 00:00 UTC, a
``/minute`` one at every full minute), so both counters of a window expire
together. Round trips: two to reserve (the read of ``freed`` must precede the
increment), one more when refused, one to settle.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any

from airlock.errors import BudgetExhausted, ConfigurationError
from airlock.throttle.alerts import Alerts
from airlock.throttle.headers import retry_after, set_legacy_fields
from airlock.throttle.ledger import (
    Reservation,
    Slot,
    all_of,
    give_back,
    give_back_local,
    reserve,
    reserve_local,
    take_more,
    take_more_local,
)
from airlock.throttle.spec import (
    LimitsArg,
    LimitSet,
    LimitSource,
    check_name,
    identity_key,
    namespace_key,
)
from airlock.throttle.stage import StorageStage
from airlock.throttle.storage import LimitStorage, StorageFailure

if TYPE_CHECKING:
    from airlock.context import Context, Finalizer

__all__ = ["FALLBACK_BYTES_PER_TOKEN", "TokenBudget"]

FALLBACK_BYTES_PER_TOKEN = 3
# Failed settlements kept for a retry, and how many one retry applies (within one deadline).
_MAX_UNSETTLED = 10_000
_SETTLE_BATCH = 32
_MAX_TOKEN_FIELDS = ("max_completion_tokens", "max_tokens")


def _positive_int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return None
    return value


class TokenBudget(StorageStage):
    """Budget stage: refuse with ``429 budget_exhausted`` when a reservation does not fit.

    :param limits: tokens per window, ``"20000/minute;1000000/day"``, or a callable of
        the identity (sync or async) returning such a string (plans), or ``None`` (exempt).
    :param storage: a URI or a shared :class:`LimitStorage`.
    :param group: count under this name; by default one budget per identity for the whole app.
    :param name: the name in the audit section and in ``violated-policies``.
    :param default_max_tokens: reserved for the completion when the request names no limit.
    :param set_max_tokens: the field to write ``default_max_tokens`` into when the request
        names no limit (``None``: leave the body alone; longer replies are charged at settlement).
    :param on_storage_error: ``"closed"`` (503) or ``"open"`` (admit, recorded in
        ``ctx.failed_open``; the reported usage is still charged once the storage is back).
    :param headers: send ``X-RateLimit-Limit-Tokens``/``-Remaining-Tokens``/``-Reset-Tokens``.
    :param alerts: an :class:`Alerts` to tell when a window crosses its share of the budget.
    """

    def __init__(
        self,
        limits: LimitsArg,
        *,
        storage: str | LimitStorage = "memory://",
        group: str = "budget",
        name: str = "tokens",
        default_max_tokens: int = 1024,
        set_max_tokens: str | None = "max_tokens",
        on_storage_error: str = "closed",
        headers: bool = True,
        alerts: Alerts | None = None,
    ) -> None:
        if _positive_int(default_max_tokens) is None:
            raise ConfigurationError("TokenBudget default_max_tokens must be a positive integer")
        if set_max_tokens is not None and set_max_tokens not in _MAX_TOKEN_FIELDS:
            raise ConfigurationError(
                'TokenBudget set_max_tokens must be "max_tokens", "max_completion_tokens" or None'
            )
        self.group = namespace_key(check_name(group, "TokenBudget group"))
        self.name = check_name(name, "TokenBudget name")
        self.default_max_tokens = default_max_tokens
        self.set_max_tokens = set_max_tokens
        super().__init__(storage=storage, on_storage_error=on_storage_error, headers=headers, alerts=alerts)
        self.source = LimitSource(limits, self.name)
        self._key_base = f"{self.storage.key_prefix}/budget/{self.group}/"
        # Settlements that never reached the storage (its breaker was open after a blip):
        # (refund?, slots, tokens), applied as soon as it answers again, so a blip does not keep
        # unused reservations charged until their windows end. Bounded: past it the oldest are
        # left to the windows.
        self._unsettled: deque[tuple[bool, Sequence[Slot], int]] = deque(maxlen=_MAX_UNSETTLED)

    def __repr__(self) -> str:
        return f"<TokenBudget {self.source.describe()!r} storage={self.storage!r}>"

    def _estimate(self, ctx: Context) -> tuple[int, str]:
        estimate = ctx.token_estimate
        if isinstance(estimate, int) and not isinstance(estimate, bool) and estimate >= 0:
            return estimate, "validation"
        return math.ceil(len(ctx.body) / FALLBACK_BYTES_PER_TOKEN), "body_bytes"

    def _max_tokens(self, ctx: Context) -> tuple[int, str]:
        document = ctx.json
        if not isinstance(document, dict):
            return self.default_max_tokens, "default"
        found = 0
        present = False
        for field in _MAX_TOKEN_FIELDS:
            if field in document:
                present = True
                found = max(found, _positive_int(document[field]) or 0)
        if found:
            return found, "request"
        if self.set_max_tokens is not None and not present:
            document[self.set_max_tokens] = self.default_max_tokens
            ctx.mark_modified()
            return self.default_max_tokens, "default_set"
        return self.default_max_tokens, "default"

    def _slots(self, ctx: Context, limit_set: LimitSet, now: float) -> list[Slot]:
        base = self._key_base + identity_key(ctx)
        slots = []
        for window in limit_set.windows:
            index = int(now // window.seconds)
            key = f"{base}/{window.seconds}/{index}"
            slots.append(Slot(f"{key}/u", f"{key}/f", window.amount, window.seconds + 1))
        return slots

    async def __call__(self, ctx: Context) -> None:
        if not ctx.body and ctx.json is None:
            return  # no prompt, nothing to reserve (GET /v1/models and the like)
        limit_set = self.source.fixed or await self.source.resolve(ctx.identity)
        if limit_set is None:
            return
        estimate, estimate_source = self._estimate(ctx)
        max_tokens, max_tokens_source = self._max_tokens(ctx)
        amount = estimate + max_tokens
        record: dict[str, Any] = {
            "limits": limit_set.text,
            "prompt_estimate": estimate,
            "estimate_source": estimate_source,
            "max_tokens": max_tokens,
            "max_tokens_source": max_tokens_source,
            "reserved": 0,
        }
        ctx.audit.setdefault("budget", {})[self.name] = record
        windows = limit_set.windows
        too_large = [w.name for w in windows if amount > w.amount]
        if too_large:
            # Can never fit: no Retry-After, retrying the same request cannot help.
            record["outcome"] = "reservation_too_large"
            raise BudgetExhausted(
                "This request's token reservation is larger than the whole budget window.",
                extensions={"violated-policies": too_large, "reservation": amount},
            )
        now = time.time()
        slots = self._slots(ctx, limit_set, now)
        storage = self.storage
        local = storage.local
        if local is not None:
            result = reserve_local(local, slots, amount)
        else:
            try:
                result = await storage.run(
                    lambda: reserve(storage.storage, slots, amount, concurrent=storage.guarded)
                )
            except StorageFailure:
                self._storage_failed(ctx, record, "budget")  # raises unless failing open
                record["outcome"] = "failed_open"
                ctx.defer(self._settler(limit_set, [], 0, record))
                return

        if self._unsettled and local is None:
            await self._settle_pending()  # the storage has just answered
        # What is left after this reservation or, refused, what was left before it.
        left = 0 if result.admitted else amount
        remaining = [w.amount - level + left for w, level in zip(windows, result.levels, strict=True)]
        tightest = 0 if len(windows) == 1 else min(range(len(windows)), key=remaining.__getitem__)
        record["remaining"] = max(0, remaining[tightest])
        if self.headers:
            window = windows[tightest]
            reset = (int(now // window.seconds) + 1) * window.seconds
            set_legacy_fields(ctx, window.amount, remaining[tightest], reset, suffix="-tokens")
        if not result.admitted:
            record["outcome"] = "exhausted"
            violated = [w for w, level in zip(windows, result.levels, strict=True) if level > w.amount]
            if self.alerts is not None:
                await self.alerts.refused(ctx, storage, self.name, record)
            reset_at = max((int(now // w.seconds) + 1) * w.seconds for w in violated)
            raise BudgetExhausted(
                headers={"Retry-After": retry_after(reset_at, now)},
                extensions={"violated-policies": [w.name for w in violated]},
            )
        record["reserved"] = amount
        record["outcome"] = "reserved"
        self._check_share(ctx, limit_set, result, amount, record)
        ctx.defer(self._settler(limit_set, slots, amount, record))

    def _check_share(
        self, ctx: Context, limit_set: LimitSet, result: Reservation, amount: int, record: dict[str, Any]
    ) -> None:
        alerts = self.alerts
        if alerts is None:
            return
        for window, level in zip(limit_set.windows, result.levels, strict=True):
            if alerts.crossed(level - amount, level, window.amount):
                facts = {"window": window.name, "level": level, "limit": window.amount}
                alerts.fire(ctx, "budget_share", self.name, record, facts)
                return

    def _settler(
        self, limit_set: LimitSet, slots: Sequence[Slot], amount: int, record: dict[str, Any]
    ) -> Finalizer:
        local = self.storage.local

        def settle(ctx: Context) -> Awaitable[None] | None:
            usage = ctx.usage
            if usage is not None:
                used = usage.total_tokens
                record["settled"] = used
            elif amount and ctx.status is not None and 400 <= ctx.status < 500:
                used = 0  # refused by the app or the provider: nothing was generated
                record["settled"] = None
            else:
                record["settled"] = None
                if amount:
                    record["outcome"] = "unreported"
                return None
            difference = used - amount
            refund = difference < 0
            targets = slots if refund else self._slots(ctx, limit_set, time.time())
            if local is not None:
                # In-process storage: settled at once, so the engine needs no shielded scope.
                if refund:
                    give_back_local(local, targets, -difference)
                elif difference > 0:
                    take_more_local(local, targets, difference)
                _settled(record, refund, difference, amount)
                return None
            return self._settle_remote(refund, targets, difference, amount, record)

        return settle

    async def _settle_remote(
        self, refund: bool, targets: Sequence[Slot], difference: int, amount: int, record: dict[str, Any]
    ) -> None:
        if difference:
            storage = self.storage
            apply = give_back if refund else take_more
            try:
                await storage.run(
                    lambda: apply(storage.storage, targets, abs(difference), concurrent=storage.guarded)
                )
            except StorageFailure as failure:
                record["settle_error"] = True
                if not failure.attempted:
                    # Never sent (the breaker was open): applied once the storage answers. One
                    # that was sent may have been applied; it is not repeated.
                    self._unsettled.append((refund, targets, abs(difference)))
                return
        _settled(record, refund, difference, amount)
        if self._unsettled:
            await self._settle_pending()

    async def _settle_pending(self) -> None:
        """Apply a batch of the settlements that failed earlier (one storage round trip)."""
        batch = [self._unsettled.popleft() for _ in range(min(len(self._unsettled), _SETTLE_BATCH))]
        storage = self.storage

        def calls() -> Awaitable[list[None]]:
            return all_of(
                [
                    (give_back if refund else take_more)(
                        storage.storage, slots, amount, concurrent=storage.guarded
                    )
                    for refund, slots, amount in batch
                ],
                storage.guarded,
            )

        try:
            await storage.run(calls)
        except StorageFailure as failure:
            if not failure.attempted:
                self._unsettled.extendleft(reversed(batch))


def _settled(record: dict[str, Any], refund: bool, difference: int, amount: int) -> None:
    if refund:
        record["refunded"] = -difference
    elif difference > 0:
        record["charged_extra"] = difference
    if amount:
        record["outcome"] = "settled"
