"""What the storage-backed stages share: their storage, what its failure does, headers and alerts.

:class:`~airlock.throttle.RateLimit`, :class:`~airlock.throttle.ConcurrencyLimit`
and :class:`~airlock.throttle.TokenBudget` each count in a :class:`LimitStorage`
and answer its failure the same way: ``503 storage_unavailable`` (closed) or an
admitted request recorded in ``ctx.failed_open`` and in the stage's audit
record (open).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airlock.errors import ConfigurationError, StorageUnavailable
from airlock.throttle.alerts import Alerts
from airlock.throttle.spec import check_on_error
from airlock.throttle.storage import LimitStorage, as_storage

if TYPE_CHECKING:
    from airlock.context import Context

__all__ = ["StorageStage"]


class StorageStage:
    """Base of the throttle stages; the subclass sets ``name`` before calling ``__init__``."""

    name: str

    def __init__(
        self, *, storage: str | LimitStorage, on_storage_error: str, headers: bool, alerts: Alerts | None
    ) -> None:
        self.on_storage_error = check_on_error(on_storage_error)
        self.headers = bool(headers)
        if alerts is not None and not isinstance(alerts, Alerts):
            raise ConfigurationError("alerts must be an airlock.throttle.Alerts")
        self.alerts = alerts
        self.storage = as_storage(storage)

    def _storage_failed(self, ctx: Context, record: dict[str, Any], section: str) -> None:
        """Called while handling a :class:`StorageFailure`: raise the 503, or return to admit (open)."""
        record["storage_error"] = True
        if self.on_storage_error != "open":
            raise StorageUnavailable(headers={"Retry-After": "1"}) from None
        ctx.failed_open.append(f"{section}:{self.name}")
        record["failed_open"] = True

    async def shutdown(self) -> None:
        await self.storage.shutdown()
        if self.alerts is not None:
            await self.alerts.shutdown()
