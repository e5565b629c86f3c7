"""Alerts for abnormal activity: a user crossing a share of a budget, or refused again and again.

One :class:`Alerts` object is given to any number of stages. When something
crosses a threshold, the stage records the fact in its audit section
(``ctx.audit["budget"][name]["alert"]`` or ``ctx.audit["throttle"][name]["alert"]``)
and the hook is called with an :class:`Alert` in the background: a coroutine
function runs as its own task, a plain function in a worker thread. The hook
never delays the request, and its failures are logged, never raised.

"Refused again and again" is counted in the stage's storage, in time-aligned
windows (``throttled="10/minute"``: the 10th refusal of an identity within one
clock minute), so the alert fires once per window across all workers.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from airlock.errors import ConfigurationError
from airlock.throttle.spec import identity_key, namespace_key, parse_limits
from airlock.throttle.storage import LimitStorage, StorageFailure

if TYPE_CHECKING:
    from airlock.context import Context

__all__ = ["Alert", "AlertHook", "Alerts"]

logger = logging.getLogger("airlock.throttle")


@dataclass(frozen=True, slots=True)
class Alert:
    """What crossed a threshold. Content-free: ids, names and counts only.

    ``kind`` is ``"budget_share"`` or ``"throttled_repeatedly"``; ``identity`` is
    the identity id (``key:<name>``, ``user:<id>``, ``addr:<ip>``), which the
    operator needs to act on the alert; ``facts`` holds the numbers.
    """

    kind: str
    identity: str
    stage: str
    route: str | None
    request_id: str
    facts: dict[str, Any] = field(default_factory=dict)


AlertHook = Callable[[Alert], Awaitable[None] | None]


class Alerts:
    """Thresholds and the hook to call when one is crossed.

    :param hook: ``hook(alert)``, sync or async; ``None`` keeps only the audit facts.
    :param budget_share: alert when a token budget window's level crosses this
        share of its limit (0 < share <= 1); ``None`` turns it off.
    :param throttled: alert when one identity is refused this often within one
        window, in limit notation (``"10/minute"``); ``None`` turns it off.
    """

    def __init__(
        self,
        hook: AlertHook | None = None,
        *,
        budget_share: float | None = 0.8,
        throttled: str | None = "10/minute",
    ) -> None:
        if hook is not None and not callable(hook):
            raise ConfigurationError("Alerts hook must be callable")
        if budget_share is not None:
            if isinstance(budget_share, bool) or not isinstance(budget_share, (int, float)):
                raise ConfigurationError("Alerts budget_share must be a number between 0 and 1")
            if not 0 < budget_share <= 1:
                raise ConfigurationError("Alerts budget_share must be > 0 and <= 1")
        self.hook = hook
        self.budget_share = None if budget_share is None else float(budget_share)
        self._throttled = None
        if throttled is not None:
            windows = parse_limits(throttled, "alert").windows
            if len(windows) != 1 or windows[0].amount < 1:
                raise ConfigurationError("Alerts throttled takes one limit such as '10/minute'")
            self._throttled = windows[0]
        self._is_coroutine = hook is not None and inspect.iscoroutinefunction(hook)
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"<Alerts budget_share={self.budget_share} throttled={self._throttled is not None}>"

    def crossed(self, before: int, after: int, limit: int) -> bool:
        """True when a level going from ``before`` to ``after`` crosses the budget share."""
        if self.budget_share is None or limit <= 0:
            return False
        threshold = self.budget_share * limit
        return before < threshold <= after

    async def refused(self, ctx: Context, storage: LimitStorage, stage: str, record: dict[str, Any]) -> None:
        """Count one refusal of this identity; alert on the configured count (once per window)."""
        window = self._throttled
        if window is None:
            return
        index = int(time.time() // window.seconds)
        key = (
            f"{storage.key_prefix}/alert/{namespace_key(stage)}/{identity_key(ctx)}/{window.seconds}/{index}"
        )
        try:
            count = await storage.run(lambda: storage.storage.incr(key, window.seconds + 1))
        except StorageFailure:
            return  # alerting is best effort; the refusal itself is already decided
        if count == window.amount:
            facts = {"refusals": count, "window_seconds": window.seconds}
            self.fire(ctx, "throttled_repeatedly", stage, record, facts)

    def fire(
        self, ctx: Context, kind: str, stage: str, record: dict[str, Any], facts: dict[str, Any]
    ) -> None:
        record["alert"] = kind
        identity = ctx.identity.id if ctx.identity is not None else "anonymous"
        alert = Alert(kind, identity, stage, ctx.route, ctx.request_id, dict(facts))
        if self.hook is not None:
            self._dispatch(ctx, alert)

    def _dispatch(self, ctx: Context, alert: Alert) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # Not on asyncio (e.g. trio): call it once the response is over instead.
            async def later(_: Context) -> None:
                await self._call(alert)

            ctx.defer(later)
            return
        task = loop.create_task(self._call(alert))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call(self, alert: Alert) -> None:
        hook = self.hook
        if hook is None:  # pragma: no cover - checked before dispatching
            return
        try:
            if self._is_coroutine:
                await hook(alert)  # type: ignore[misc]
            else:
                result = await anyio.to_thread.run_sync(hook, alert)
                if inspect.isawaitable(result):
                    await result
        except Exception:
            logger.exception(
                "airlock alert hook failed (kind=%s, request_id=%s)", alert.kind, alert.request_id
            )

    async def shutdown(self) -> None:
        """Wait (up to 5 s) for alert hooks still running."""
        if self._tasks:
            with anyio.move_on_after(5.0):
                await asyncio.gather(*self._tasks, return_exceptions=True)
