"""Where counts live: a ``limits.aio`` storage behind a deadline and a circuit breaker.

Every limit, budget and concurrency stage talks to its storage only through
:meth:`LimitStorage.run`, which

* bounds each storage phase by ``timeout`` seconds (``anyio.fail_after``), so a
  hung Redis costs one request ``timeout``, never a hang;
* turns any storage exception into :class:`StorageFailure`, which the stages
  answer with ``503 storage_unavailable`` (closed) or let through (open), never
  a 500;
* after a failure answers at once for ``retry_interval`` seconds without
  touching the storage, then lets one request probe it; the first success
  closes the breaker again, so recovery needs no restart.

``memory://`` counts in this process only and cannot fail, so it skips the
deadline and the breaker, and the stages call it synchronously through
:attr:`LimitStorage.local` (:mod:`airlock.throttle.memory`): nothing awaits,
so a check is one atomic step on the event loop. With several workers or
hosts use Redis.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar, cast

import anyio
from limits.aio.storage import Storage
from limits.errors import ConfigurationError as LimitsConfigurationError
from limits.storage import storage_from_string

from airlock.errors import AirlockError, ConfigurationError
from airlock.throttle.memory import MemoryStorage

__all__ = ["LimitStorage", "StorageFailure", "as_storage"]

logger = logging.getLogger("airlock.throttle")

T = TypeVar("T")

# Our scheme -> what limits.aio registers it under.
_REDIS_POOLED = ("redis", "rediss", "redis+unix")
_REDIS_OTHER = ("redis+cluster", "redis+sentinel")
_VALKEY = ("valkey", "valkeys", "valkey+unix", "valkey+cluster", "valkey+sentinel")
_OTHER = ("memcached", "mongodb", "mongodb+srv")
_SCHEMES = frozenset(("memory", *_REDIS_POOLED, *_REDIS_OTHER, *_VALKEY, *_OTHER))
_HINTS = {
    "redis": "pip install 'asgi-airlock[redis]'",
    "valkey": "pip install 'limits[async-valkey]'",
    "memcached": "pip install 'limits[async-memcached]'",
    "mongodb": "pip install 'limits[async-mongodb]'",
}
_CLIENTS = {"redis": "redis", "valkey": "valkey", "memcached": "memcachio", "mongodb": "motor"}
_PREFIX_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_CREDENTIALS_RE = re.compile(r"^[^/]*@")


class StorageFailure(AirlockError):
    """The limit storage failed or did not answer in time (content-free).

    ``attempted`` is False when the breaker answered without calling the storage: the
    operation certainly did not happen. A call that was made and failed (a timeout) may
    still have been applied by the storage.
    """

    def __init__(self, message: str, *, attempted: bool = True) -> None:
        super().__init__(message)
        self.attempted = attempted


def _family(scheme: str) -> str:
    for family in ("redis", "valkey", "memcached", "mongodb"):
        if scheme.startswith(family):
            return family
    return scheme


class LimitStorage:
    """A ``limits.aio`` storage chosen by URI, shared by any number of stages.

    :param uri: ``memory://`` (default), ``redis://host:6379/0``, ``rediss://``,
        ``redis+unix://``, ``redis+cluster://h1:p1,h2:p2``,
        ``redis+sentinel://h:p/service``, ``valkey://``, ``memcached://h:p``,
        ``mongodb://h:p``. ``async+`` prefixes are accepted too.
    :param timeout: seconds one storage phase may take before the request is
        answered as a storage failure.
    :param retry_interval: seconds after a failure during which requests are
        answered without trying the storage; then one request probes it.
    :param key_prefix: first part of every key airlock writes.
    :param max_connections: Redis connection pool size; requests beyond it wait
        (within ``timeout``) instead of failing.
    :param options: passed to the ``limits`` storage (and so to the client).

    Redis is reached with redis-py's asyncio client (``implementation="redispy"``):
    its fixed-window increment is one atomic script (coredis' is two commands),
    and redis-py is the client most deployments already run. Share one
    ``LimitStorage`` between stages so they share its pool and its breaker.

    ``storage`` is the ``limits.aio`` storage; ``local`` is the same object for
    ``memory://`` (an :class:`~airlock.throttle.memory.MemoryStorage`, which the
    stages call synchronously) and ``None`` otherwise.
    """

    def __init__(
        self,
        uri: str = "memory://",
        *,
        timeout: float = 0.05,
        retry_interval: float = 0.5,
        key_prefix: str = "airlock",
        max_connections: int = 64,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(uri, str) or "://" not in uri:
            raise ConfigurationError("storage must be a URI such as 'memory://' or 'redis://host:6379/0'")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 30:
            raise ConfigurationError("LimitStorage timeout must be between 0 and 30 seconds")
        if isinstance(retry_interval, bool) or not isinstance(retry_interval, (int, float)):
            raise ConfigurationError("LimitStorage retry_interval must be a number of seconds")
        if not 0 <= retry_interval <= 300:
            raise ConfigurationError("LimitStorage retry_interval must be between 0 and 300 seconds")
        if not isinstance(key_prefix, str) or not _PREFIX_RE.fullmatch(key_prefix):
            raise ConfigurationError(
                "LimitStorage key_prefix must be 1-64 letters, digits, '_', '.', ':', '-'"
            )
        if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
            raise ConfigurationError("LimitStorage max_connections must be a positive integer")
        scheme, rest = uri.split("://", 1)
        scheme = scheme.lower().removeprefix("async+")
        if scheme not in _SCHEMES:
            raise ConfigurationError(f"unsupported limit storage scheme {scheme!r}")
        self.scheme = scheme
        self.timeout = float(timeout)
        self.retry_interval = float(retry_interval)
        self.key_prefix = key_prefix
        self.guarded = scheme != "memory"
        # Shown in logs and reprs: never the credentials or the query (which may hold a password).
        self._display = f"{scheme}://{_CREDENTIALS_RE.sub('', rest.split('?', 1)[0])}"
        self._pool: Any = None
        self._down_until = 0.0
        self._failed = False
        self.storage = self._build(scheme, rest, max_connections, dict(options or {}))
        # The in-process storage, for the stages' synchronous path; None for network storages.
        self.local = self.storage if isinstance(self.storage, MemoryStorage) else None

    def _build(self, scheme: str, rest: str, max_connections: int, options: dict[str, Any]) -> Storage:
        family = _family(scheme)
        module = _CLIENTS.get(family)
        if family == "memcached" and options.get("implementation") == "emcache":
            module = "emcache"
        if module is not None and importlib.util.find_spec(module) is None:
            # Checked here: a limits storage whose client is missing fails half-built.
            raise ConfigurationError(f"{scheme}:// storage needs its client library: {_HINTS[family]}")
        try:
            if scheme == "memory":
                return MemoryStorage(f"async+memory://{rest}", **options)
            if scheme in _REDIS_POOLED:
                # Our own blocking pool: a burst beyond the pool waits for a connection
                # instead of failing with "Too many connections" (redis-py's default).
                import redis.asyncio as redis_asyncio

                url = ("unix://" if scheme == "redis+unix" else f"{scheme}://") + rest
                pool_options = {"socket_timeout": self.timeout, "socket_connect_timeout": self.timeout}
                pool_options.update(options)
                self._pool = redis_asyncio.BlockingConnectionPool.from_url(
                    url, max_connections=max_connections, timeout=self.timeout, **pool_options
                )
                built = storage_from_string(
                    f"async+{scheme}://{rest}", implementation="redispy", connection_pool=self._pool
                )
            elif scheme in _REDIS_OTHER:
                client_options = {"socket_timeout": self.timeout, "socket_connect_timeout": self.timeout}
                client_options.update(options)
                built = storage_from_string(
                    f"async+{scheme}://{rest}", implementation="redispy", **client_options
                )
            else:
                built = storage_from_string(f"async+{scheme}://{rest}", **options)
        except (ImportError, LimitsConfigurationError) as exc:
            hint = _HINTS.get(family)
            if hint is None:  # pragma: no cover - memory:// has no dependency
                raise ConfigurationError(f"cannot use {scheme}:// storage") from None
            raise ConfigurationError(
                f"{scheme}:// storage needs its client library: {hint} ({type(exc).__name__})"
            ) from None
        if not isinstance(built, Storage):  # pragma: no cover - async+ schemes always give async storages
            raise ConfigurationError(f"{scheme}:// did not give an asynchronous limits storage")
        return built

    def __repr__(self) -> str:
        return f"<LimitStorage {self._display} timeout={self.timeout}>"

    @property
    def available(self) -> bool:
        """False while the breaker is open (the last storage call failed)."""
        return not self._failed

    async def run(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Await ``operation()`` (storage calls) under the deadline and the breaker."""
        if not self.guarded:
            return await operation()
        if self._failed:
            now = time.monotonic()
            if now < self._down_until:
                raise StorageFailure("the limit storage is unavailable", attempted=False)
            # Half-open: this request probes; the others keep failing fast meanwhile.
            self._down_until = now + self.retry_interval
        try:
            with anyio.fail_after(self.timeout):
                result = await operation()
        except Exception as exc:  # any client error or the deadline: a decision, never a 500
            self._trip(exc)
            raise StorageFailure("the limit storage is unavailable") from None
        except asyncio.CancelledError as exc:
            # A client library cancelled one of its own futures (redis-py does, when a connect
            # is cut short by the deadline while another call waits on it): that cancellation is
            # not ours. Nobody asked to cancel this task, so it is a storage failure; a real
            # cancellation (client gone, shutdown) has a pending request and goes on up.
            # (Python 3.10 cannot tell the two apart: there every cancellation goes on up.)
            cancelling = getattr(asyncio.current_task(), "cancelling", None)
            if cancelling is None or cancelling():
                raise
            self._trip(exc)
            raise StorageFailure("the limit storage is unavailable") from None
        if self._failed:
            self._failed = False
            logger.warning("airlock limit storage %s recovered", self._display)
        return result

    def _trip(self, exc: BaseException) -> None:
        if not self._failed:
            # Type only: client messages can carry addresses or, for some drivers, credentials.
            logger.warning("airlock limit storage %s failed (%s)", self._display, type(exc).__name__)
        self._failed = True
        self._down_until = time.monotonic() + self.retry_interval

    async def shutdown(self) -> None:
        """Close the Redis pool we opened (connections reopen on demand if used again)."""
        pool = self._pool
        if pool is not None:
            with anyio.move_on_after(1.0, shield=True):
                await cast(Any, pool).disconnect()


def as_storage(storage: str | LimitStorage) -> LimitStorage:
    if isinstance(storage, LimitStorage):
        return storage
    if isinstance(storage, str):
        return LimitStorage(storage)
    raise ConfigurationError("storage must be a URI string or an airlock.throttle.LimitStorage")
