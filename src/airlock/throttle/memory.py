"""``memory://``: ``limits``' in-process storage, without a task and a full sweep per increment.

``limits.aio``'s ``MemoryStorage`` (5.x) starts an asyncio task from every
``incr`` whose previous task has finished, and that task walks every key it
holds (and hops to a thread for every moving-window key). In a server each
request yields to the loop, so each counted request creates a task and sweeps
the whole store: work that grows with the number of users, on the event loop,
for every request.

:class:`MemoryStorage` is a subclass, so ``limits``' strategies and read
methods (``get_moving_window``, ``get_sliding_window``, ``clear``...) work on it
unchanged, over the same data layout. What it changes:

* Expired keys are dropped when read (as in ``limits``) and, to reclaim memory,
  by a sweep that runs at most once every ``sweep_interval`` seconds and only
  visits keys whose deadline has passed (a heap of deadlines), never the whole
  store.
* Counters change in plain synchronous methods (:meth:`count`, :meth:`add`),
  without ``limits``' per-key ``asyncio.Lock``: nothing between reading and
  writing a counter awaits, so no other task can run in between; the lock was
  never contended. The async ``get``/``incr``/``decr`` that ``limits``'
  strategies call go through the same methods.
* :meth:`hit_sliding_window` is ``limits``' sliding-window-counter acquisition
  that also returns the window it saw, so ``RateLimit`` needs no second read for
  its headers.

It lives in one process and on one event loop (like ``limits``' own): with
several workers or hosts use Redis.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import time
from collections import defaultdict
from math import floor, inf
from typing import Any, NamedTuple

import limits.aio.storage
from limits.aio.storage.memory import Entry

__all__ = ["SWEEP_INTERVAL", "MemoryStorage", "SlidingWindow"]

SWEEP_INTERVAL = 5.0


class SlidingWindow(NamedTuple):
    """A sliding-window-counter window as ``limits`` reads it (``get_sliding_window``)."""

    previous_count: int
    previous_ttl: float
    current_count: int
    current_ttl: float

    def stats(self, limit: int, expiry: int, now: float) -> tuple[int, float]:
        """``(remaining, reset time)``, as ``SlidingWindowCounterRateLimiter.get_window_stats``
        computes them from this window."""
        previous_count, previous_ttl, current_count, current_ttl = self
        remaining = max(0, limit - floor(previous_count * previous_ttl / expiry + current_count))
        if not (previous_count or current_count):
            return remaining, now
        previous_reset_in = previous_ttl % (expiry / previous_count) if previous_count else inf
        current_reset_in = current_ttl % expiry if current_count else inf
        return remaining, now + min(previous_reset_in, current_reset_in)


class MemoryStorage(limits.aio.storage.MemoryStorage):
    """``limits.aio`` memory storage with amortised expiry (see the module docstring)."""

    # No STORAGE_SCHEME: limits' registry keeps "async+memory" pointing at its own class.

    def __init__(
        self,
        uri: str | None = None,
        wrap_exceptions: bool = False,
        sweep_interval: float = SWEEP_INTERVAL,
        **options: str,
    ) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self.sweep_interval = float(sweep_interval)
        self._deadlines: list[tuple[float, str]] = []
        self._next_sweep = time.time() + self.sweep_interval

    def __setstate__(self, state: dict[str, Any]) -> None:
        # limits' version schedules its expiry task here; ours needs none.
        self.__dict__.update(state)
        self.timer = None
        self.locks = defaultdict(asyncio.Lock)

    # -- synchronous core ------------------------------------------------------------------

    def count(self, key: str) -> int:
        """The counter's value (0 once expired); what ``limits``' ``get`` answers."""
        if self.expirations.get(key, 0) <= time.time():
            self.storage.pop(key, None)
            self.expirations.pop(key, None)
        return self.storage.get(key, 0)

    def add(self, key: str, expiry: float, amount: int = 1) -> int:
        """Add ``amount``; a counter that starts lives ``expiry`` seconds. ``limits``' ``incr``."""
        now = time.time()
        if now >= self._next_sweep:
            self.sweep(now)
        storage = self.storage
        if self.expirations.get(key, 0) <= now:
            storage.pop(key, None)
            self.expirations.pop(key, None)
        value = storage[key] + amount
        storage[key] = value
        if value == amount:
            deadline = now + expiry
            self.expirations[key] = deadline
            heapq.heappush(self._deadlines, (deadline, key))
        return value

    def subtract(self, key: str, amount: int = 1) -> int:
        """``limits``' ``decr``: down to 0 at the lowest."""
        self.count(key)
        self.storage[key] = max(self.storage[key] - amount, 0)
        return self.storage.get(key, amount)

    def expires_at(self, key: str) -> float:
        """When the counter expires (now if it does not exist); ``limits``' ``get_expiry``."""
        return self.expirations.get(key, time.time())

    def sweep(self, now: float) -> None:
        """Drop the counters and moving-window entries whose deadline has passed."""
        self._next_sweep = now + self.sweep_interval
        deadlines = self._deadlines
        expirations, storage, events = self.expirations, self.storage, self.events
        trimmed: set[str] = set()
        while deadlines and deadlines[0][0] <= now:
            _, key = heapq.heappop(deadlines)
            if expirations.get(key, now + 1) <= now:
                storage.pop(key, None)
                expirations.pop(key, None)
            entries = events.get(key)
            if entries is None or key in trimmed:
                continue
            trimmed.add(key)
            # Newest first, as limits keeps them: keep the entries that have not expired.
            kept = entries[: bisect.bisect_left(entries, -now, key=lambda entry: -entry.expiry)]
            if kept:
                events[key] = kept
                # Visit the key again when its oldest remaining entry expires.
                heapq.heappush(deadlines, (kept[-1].expiry, key))
            else:
                del events[key]
                self.locks.pop(key, None)

    def _window(self, previous_key: str, current_key: str, expiry: int, now: float) -> SlidingWindow:
        # limits' _get_sliding_window_info, term for term.
        previous_count = self.count(previous_key)
        current_count = self.count(current_key)
        previous_ttl = 0.0 if previous_count == 0 else (1 - (((now - expiry) / expiry) % 1)) * expiry
        current_ttl = (1 - ((now / expiry) % 1)) * expiry + expiry
        return SlidingWindow(previous_count, previous_ttl, current_count, current_ttl)

    def hit_sliding_window(
        self, key: str, limit: int, expiry: int, amount: int = 1
    ) -> tuple[bool, SlidingWindow, float]:
        """``limits``' ``acquire_sliding_window_entry``, plus the window after it and the time used.

        The window is what ``get_sliding_window`` would read right after the hit.
        """
        now = time.time()
        previous_key, current_key = self.sliding_window_keys(key, expiry, now)
        seen = self._window(previous_key, current_key, expiry, now)
        if amount > limit:
            return False, seen, now
        previous_count, previous_ttl, current_count, current_ttl = seen
        weighted = previous_count * previous_ttl / expiry
        if floor(weighted + current_count) + amount > limit:
            return False, seen, now
        # A new current counter lives two windows: it becomes the next window's previous one.
        current_count = self.add(current_key, 2 * expiry, amount)
        admitted = floor(weighted + current_count) <= limit
        if not admitted:  # what limits does when another hit won a race (it cannot here, nothing awaits)
            current_count = self.subtract(current_key, amount)
        return admitted, SlidingWindow(previous_count, previous_ttl, current_count, current_ttl), now

    # -- the limits.aio interface, through the synchronous core ----------------------------

    async def get(self, key: str) -> int:
        return self.count(key)

    async def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        return self.add(key, expiry, amount)

    async def decr(self, key: str, amount: int = 1) -> int:
        return self.subtract(key, amount)

    async def get_expiry(self, key: str) -> float:
        return self.expires_at(key)

    async def acquire_sliding_window_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        return self.hit_sliding_window(key, limit, expiry, amount)[0]

    async def _get_sliding_window_info(
        self, previous_key: str, current_key: str, expiry: int, now: float
    ) -> tuple[int, float, int, float]:
        return self._window(previous_key, current_key, expiry, now)

    async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        # limits' moving-window acquisition, without its lock and its expiry task.
        if amount > limit:
            return False
        now = time.time()
        if now >= self._next_sweep:
            self.sweep(now)
        entries = self.events.setdefault(key, [])
        try:
            entry: Entry | None = entries[limit - amount]
        except IndexError:
            entry = None
        if entry is not None and entry.atime >= now - expiry:
            return False
        added = Entry(expiry)
        if not entries:  # a new list: the sweep visits it once its entries expire
            heapq.heappush(self._deadlines, (added.expiry, key))
        entries[:0] = [added] * amount
        return True

    async def reset(self) -> int | None:
        self._deadlines.clear()
        return await super().reset()
