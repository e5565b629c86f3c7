"""Deadlines for body reads without a timer per request.

Every request's body read needs a deadline (a client that trickles bytes must not hold a
connection forever), but nearly every body has already arrived when it is read. A timer per
read (``asyncio.timeout``, ``anyio.fail_after`` or a bare ``loop.call_at``) costs 2 to 8 µs of
a request's budget for a deadline that almost never fires. Instead, one watchdog task per event
loop wakes every ``TICK`` seconds while reads are in progress and cancels the reads whose
deadline has passed; registering a read is a dict insert. A deadline therefore fires up to
``TICK`` late, which is irrelevant for limits measured in seconds.

The cancellation is turned into ``TimeoutError`` only in the read it was meant for, with the
same bookkeeping ``asyncio.timeout`` does (``Task.uncancel``), so a cancellation from outside
(server shutdown, an enclosing scope) still propagates as a cancellation.
"""

from __future__ import annotations

import asyncio
import sys
import weakref
from collections.abc import Awaitable
from typing import Any, TypeVar

__all__ = ["TICK", "before_deadline"]

T = TypeVar("T")
TICK = 0.05

if sys.version_info >= (3, 11):

    def _cancelling(task: asyncio.Task[Any]) -> int:
        return task.cancelling()

    def _uncancel(task: asyncio.Task[Any]) -> int:
        return task.uncancel()

else:  # pragma: no cover - Python 3.10 has no cancellation counting: nothing to undo

    def _cancelling(task: asyncio.Task[Any]) -> int:
        return 0

    def _uncancel(task: asyncio.Task[Any]) -> int:
        return 0


class _Watch:
    __slots__ = ("deadline", "fired")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.fired = False


class _Watchdog:
    """The reads of one event loop that have a deadline, and the task that enforces them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.watches: dict[asyncio.Task[Any], _Watch] = {}
        self.task: asyncio.Task[None] | None = None

    def watch(self, task: asyncio.Task[Any], seconds: float) -> _Watch:
        watch = _Watch(self.loop.time() + seconds)
        self.watches[task] = watch
        if self.task is None or self.task.done():
            # Runs only while reads are in progress, and ends on the first idle tick.
            self.task = self.loop.create_task(self._run(), name="airlock body deadlines")
        return watch

    async def _run(self) -> None:
        while self.watches:
            await asyncio.sleep(TICK)
            now = self.loop.time()
            for task, watch in list(self.watches.items()):
                if not watch.fired and watch.deadline <= now:
                    watch.fired = True
                    task.cancel()


_WATCHDOGS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watchdog] = weakref.WeakKeyDictionary()
# The last loop's watchdog: a process nearly always has one loop, and looking it up in the
# WeakKeyDictionary (a weak reference made per call) is a good part of a read's bookkeeping.
_last: tuple[weakref.ref[asyncio.AbstractEventLoop], _Watchdog] | None = None


def _watchdog(loop: asyncio.AbstractEventLoop) -> _Watchdog:
    global _last
    last = _last
    if last is not None and last[0]() is loop:
        return last[1]
    watchdog = _WATCHDOGS.get(loop)
    if watchdog is None:
        watchdog = _WATCHDOGS[loop] = _Watchdog(loop)
    _last = (weakref.ref(loop), watchdog)
    return watchdog


async def before_deadline(awaitable: Awaitable[T], seconds: float) -> T:
    """Await ``awaitable``; raise ``TimeoutError`` if it takes longer than ``seconds`` (asyncio only)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task(loop)
    assert task is not None
    watchdog = _watchdog(loop)
    cancelling = _cancelling(task)
    watch = watchdog.watch(task, seconds)
    try:
        return await awaitable
    except asyncio.CancelledError:
        if watch.fired and _uncancel(task) <= cancelling:
            raise TimeoutError from None
        raise
    finally:
        del watchdog.watches[task]
