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
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airlock.errors import BudgetExhausted, ConfigurationError, StorageUnavailable
from airlock.throttle.alerts import Alerts
from airlock.throttle.headers import retry_after, set_legacy_fields
from airlock.throttle.ledger import Reservation, Slot, give_back, reserve, take_more
from airlock.throttle.spec import (
    LimitsArg,
    LimitSet,
    LimitSource,
    check_name,
    check_on_error,
    identity_key,
    namespace_key,
)
from airlock.throttle.storage import LimitStorage, StorageFailure, as_storage

if TYPE_CHECKING:
    from airlock.context import Context

__all__ = ["FALLBACK_BYTES_PER_TOKEN", "TokenBudget"]

FALLBACK_BYTES_PER_TOKEN = 3
_MAX_TOKEN_FIELDS = ("max_completion_tokens", "max_tokens")


def _positive_int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return None
    return value


class TokenBudget:
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
        self.on_storage_error = check_on_error(on_storage_error)
        self.headers = bool(headers)
        if alerts is not None and not isinstance(alerts, Alerts):
            raise ConfigurationError("alerts must be an airlock.throttle.Alerts")
        self.alerts = alerts
        self.storage = as_storage(storage)
        self.source = LimitSource(limits, self.name)

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
        named = [_positive_int(document.get(f)) for f in _MAX_TOKEN_FIELDS]
        found = [n for n in named if n is not None]
        if found:
            return max(found), "request"
        if self.set_max_tokens is not None and not any(f in document for f in _MAX_TOKEN_FIELDS):
            document[self.set_max_tokens] = self.default_max_tokens
            ctx.mark_modified()
            return self.default_max_tokens, "default_set"
        return self.default_max_tokens, "default"

    def _slots(self, ctx: Context, limit_set: LimitSet, now: float) -> list[Slot]:
        base = f"{self.storage.key_prefix}/budget/{self.group}/{identity_key(ctx)}"
        slots = []
        for window in limit_set.windows:
            index = int(now // window.seconds)
            key = f"{base}/{window.seconds}/{index}"
            slots.append(Slot(f"{key}/u", f"{key}/f", window.amount, window.seconds + 1))
        return slots

    async def __call__(self, ctx: Context) -> None:
        if not ctx.body and ctx.json is None:
            return  # no prompt, nothing to reserve (GET /v1/models and the like)
        limit_set = await self.source.resolve(ctx.identity)
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
        try:
            result = await storage.run(
                lambda: reserve(storage.storage, slots, amount, concurrent=storage.guarded)
            )
        except StorageFailure:
            record["storage_error"] = True
            if self.on_storage_error == "open":
                ctx.failed_open.append(f"budget:{self.name}")
                record["failed_open"] = True
                record["outcome"] = "failed_open"
                ctx.defer(self._settler(limit_set, [], 0, record))
                return
            raise StorageUnavailable(headers={"Retry-After": "1"}) from None

        remaining = [w.amount - level for w, level in zip(windows, result.levels, strict=True)]
        if not result.admitted:
            # What was left before this reservation, which did not fit.
            remaining = [r + amount for r in remaining]
        tightest = min(range(len(windows)), key=lambda i: remaining[i])
        resets = [(int(now // w.seconds) + 1) * w.seconds for w in windows]
        record["remaining"] = max(0, remaining[tightest])
        if self.headers:
            set_legacy_fields(
                ctx, windows[tightest].amount, remaining[tightest], resets[tightest], suffix="-tokens"
            )
        if not result.admitted:
            record["outcome"] = "exhausted"
            violated = [i for i, level in enumerate(result.levels) if level > windows[i].amount]
            if self.alerts is not None:
                await self.alerts.refused(ctx, storage, self.name, record)
            raise BudgetExhausted(
                headers={"Retry-After": retry_after(max(resets[i] for i in violated), now)},
                extensions={"violated-policies": [windows[i].name for i in violated]},
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
    ) -> Any:
        storage = self.storage

        async def settle(ctx: Context) -> None:
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
                return
            difference = used - amount
            try:
                if difference < 0:
                    await storage.run(
                        lambda: give_back(storage.storage, slots, -difference, concurrent=storage.guarded)
                    )
                    record["refunded"] = -difference
                elif difference > 0:
                    current = self._slots(ctx, limit_set, time.time())
                    await storage.run(
                        lambda: take_more(storage.storage, current, difference, concurrent=storage.guarded)
                    )
                    record["charged_extra"] = difference
            except StorageFailure:
                record["settle_error"] = True
                return
            if amount:
                record["outcome"] = "settled"

        return settle

    async def shutdown(self) -> None:
        await self.storage.shutdown()
        if self.alerts is not None:
            await self.alerts.shutdown()
