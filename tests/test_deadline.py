"""The per-loop watchdog that enforces body-read deadlines without a timer per request."""

from __future__ import annotations

import time

import anyio
import anyio.lowlevel
import pytest

from airlock.deadline import TICK, before_deadline

pytestmark = pytest.mark.anyio


async def test_reads_past_their_deadline_time_out_and_others_finish() -> None:
    results: dict[str, str] = {}

    async def read(name: str, takes: float, deadline: float) -> None:
        started = time.monotonic()
        try:
            await before_deadline(anyio.sleep(takes), deadline)
            results[name] = "done"
        except TimeoutError:
            elapsed = time.monotonic() - started
            assert deadline <= elapsed <= deadline + TICK + 0.2
            results[name] = "timeout"

    async with anyio.create_task_group() as group:
        for index in range(20):
            group.start_soon(read, f"fast{index}", 0.01, 0.5)
            group.start_soon(read, f"slow{index}", 5.0, 0.2 + index * 0.01)
    assert all(results[f"fast{i}"] == "done" for i in range(20))
    assert all(results[f"slow{i}"] == "timeout" for i in range(20))


async def test_outer_cancellation_stays_a_cancellation() -> None:
    with anyio.move_on_after(0.05) as scope:
        await before_deadline(anyio.sleep(5), 0.2)
    assert scope.cancelled_caught


async def test_the_watchdog_stops_when_idle_and_starts_again() -> None:
    await before_deadline(anyio.lowlevel.checkpoint(), 1.0)
    await anyio.sleep(TICK * 3)  # idle: the watchdog task has ended
    with pytest.raises(TimeoutError):
        await before_deadline(anyio.sleep(5), 0.1)
