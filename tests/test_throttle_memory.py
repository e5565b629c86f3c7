"""memory://: limits' in-process storage without a task per increment, deciding exactly as limits does."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import limits.aio.storage
import pytest
from limits import parse
from limits.aio.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    SlidingWindowCounterRateLimiter,
)
from limits.storage import storage_from_string
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from airlock import AirlockMiddleware, Context, FromCallable, Policy
from airlock.throttle import ConcurrencyLimit, LimitStorage, RateLimit, TokenBudget
from airlock.throttle.memory import MemoryStorage

from helpers import client_for, user_from_header

pytestmark = pytest.mark.anyio


class Clock:
    """A settable ``time.time`` for limits' code and ours alike."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock(1_800_000_000.0)
    monkeypatch.setattr(time, "time", fake)
    return fake


async def ok(request: Request) -> Response:
    await request.body()
    ctx: Context = request.state.airlock
    ctx.report_usage(10, 10)
    return JSONResponse({"ok": True})


def test_memory_uri_gives_a_limits_storage_without_taking_over_limits_scheme() -> None:
    storage = LimitStorage("memory://").storage
    assert isinstance(storage, MemoryStorage)
    assert isinstance(storage, limits.aio.storage.MemoryStorage)
    # limits' own registry still answers with limits' class for anyone else in the process.
    assert type(storage_from_string("async+memory://")) is limits.aio.storage.MemoryStorage


async def test_requests_start_no_task_per_count() -> None:
    """limits.aio's MemoryStorage starts a task (that walks every key) from each increment."""
    store = LimitStorage("memory://")
    policy = Policy(
        identity=FromCallable(user_from_header),
        admit=(RateLimit("1000/minute", storage=store), ConcurrencyLimit(100, storage=store)),
        budget=TokenBudget("1000000/minute", storage=store),
    )
    app = Starlette(
        routes=[Route("/chat", ok, methods=["POST"])],
        middleware=[Middleware(AirlockMiddleware, policy=policy)],
    )
    loop = asyncio.get_running_loop()
    created: list[Any] = []
    previous = loop.get_task_factory()

    def counting_factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        created.append(getattr(coro, "__qualname__", ""))
        return asyncio.Task(coro, loop=loop, **kwargs)

    async with client_for(app) as client:
        await client.post("/chat", json={}, headers={"x-user": "warm-up"})
        loop.set_task_factory(counting_factory)
        try:
            for index in range(30):
                response = await client.post("/chat", json={"q": index}, headers={"x-user": f"u{index % 3}"})
                assert response.status_code == 200
                await asyncio.sleep(0)
        finally:
            loop.set_task_factory(previous)
    assert not [name for name in created if "expire" in name.lower()]
    assert store.local is not None
    assert store.local.timer is None

    # The same pattern on limits' own storage, for contrast: a sweep task per increment.
    own = limits.aio.storage.MemoryStorage()
    loop.set_task_factory(counting_factory)
    try:
        for index in range(30):
            await own.incr(f"k{index}", 60)
            await asyncio.sleep(0)
    finally:
        loop.set_task_factory(previous)
    assert sum("expire" in name.lower() for name in created) >= 20


async def test_expired_counters_and_entries_are_swept() -> None:
    storage = MemoryStorage(sweep_interval=0.0)
    for index in range(500):
        storage.add(f"old/{index}", 0.05)
    assert await storage.acquire_entry("log/old", 10, 1)
    await asyncio.sleep(0.1)
    assert storage.count("old/0") == 0  # expired counters read as 0 at once, as in limits
    storage.add("new", 60)
    assert set(storage.storage) == {"new"}
    assert set(storage.expirations) == {"new"}
    assert "log/old" in storage.events  # a moving-window entry lives its full second
    await asyncio.sleep(1.0)
    storage.add("newer", 60)
    assert "log/old" not in storage.events
    assert set(storage.storage) == {"new", "newer"}


async def test_reset_and_clear_still_work_through_limits_methods() -> None:
    storage = MemoryStorage()
    await storage.incr("a", 60)
    await storage.incr("b", 60)
    await storage.clear("a")
    assert await storage.get("a") == 0
    assert await storage.get("b") == 1
    assert await storage.reset() == 1
    assert await storage.get("b") == 0


@pytest.mark.parametrize("limit", ["5/minute", "3/second", "20/hour"])
async def test_sliding_window_decisions_and_stats_equal_limits_own(clock: Clock, limit: str) -> None:
    """Same hits at the same instants: the same decisions, and our stats are limits' get_window_stats."""
    item = parse(limit)
    ours = MemoryStorage()
    theirs = limits.aio.storage.MemoryStorage()
    reference = SlidingWindowCounterRateLimiter(theirs)
    stats_of_ours = SlidingWindowCounterRateLimiter(ours)
    expiry = item.get_expiry()
    key = item.key_for("user")
    steps = [0.0, 0.1, 0.1, 0.2, 0.3, expiry * 0.5, expiry * 0.9, expiry * 1.05, expiry * 1.3, expiry * 1.8]
    steps += [expiry * 2.2 + i * expiry / 17 for i in range(25)]
    start = clock.now
    for offset in steps:
        clock.now = start + offset
        admitted, window, now = ours.hit_sliding_window(key, item.amount, expiry)
        assert admitted == await reference.hit(item, "user"), offset
        remaining, reset_at = window.stats(item.amount, expiry, now)
        expected = await stats_of_ours.get_window_stats(item, "user")
        assert remaining == expected.remaining, offset
        assert reset_at == pytest.approx(expected.reset_time), offset
        assert remaining == (await reference.get_window_stats(item, "user")).remaining, offset


@pytest.mark.parametrize("strategy", [FixedWindowRateLimiter, MovingWindowRateLimiter])
async def test_limits_own_strategies_decide_the_same_on_it(clock: Clock, strategy: Any) -> None:
    item = parse("4/minute")
    ours, theirs = strategy(MemoryStorage()), strategy(limits.aio.storage.MemoryStorage())
    start = clock.now
    for offset in [0, 1, 2, 3, 4, 5, 30, 59, 61, 62, 90, 121, 122, 123, 124, 125]:
        clock.now = start + offset
        assert await ours.hit(item, "u") == await theirs.hit(item, "u"), offset
        mine, reference = await ours.get_window_stats(item, "u"), await theirs.get_window_stats(item, "u")
        assert mine.remaining == reference.remaining, offset
        assert mine.reset_time == pytest.approx(reference.reset_time), offset
