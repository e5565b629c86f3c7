"""Storage failures: a dead or hung Redis answers 503 (closed) or lets through (open), fast; recovery."""

from __future__ import annotations

import importlib.util
import logging
import time
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from airlock import AirlockMiddleware, ConfigurationError, Context, FromCallable, Policy
from airlock.throttle import ConcurrencyLimit, LimitStorage, RateLimit, TokenBudget

from helpers import (
    RecordingSink,
    RedisServer,
    client_for,
    free_port,
    user_from_header,
)

pytestmark = pytest.mark.anyio

DEADLINE = 0.1  # every answer during an outage comes within 100 ms


USER = FromCallable(user_from_header)


async def ok(request: Request) -> Response:
    body = await request.body()
    ctx: Context = request.state.airlock
    if body:
        ctx.report_usage(10, 10)
    return JSONResponse({"ok": True})


def make_app(sink: RecordingSink | None = None, **stages: Any) -> Starlette:
    return Starlette(
        routes=[Route("/chat", ok, methods=["POST"])],
        middleware=[Middleware(AirlockMiddleware, policy=Policy(identity=USER, audit=sink, **stages))],
    )


async def timed(client: httpx.AsyncClient, user: str = "alice") -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = await client.post("/chat", json={"max_tokens": 10}, headers={"x-user": user})
    return response, time.perf_counter() - started


def stage_sets(storage: LimitStorage, mode: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("throttle:rate", {"admit": RateLimit("100/minute", storage=storage, on_storage_error=mode)}),
        ("throttle:concurrency", {"admit": ConcurrencyLimit(3, storage=storage, on_storage_error=mode)}),
        ("budget:tokens", {"budget": TokenBudget("10000/minute", storage=storage, on_storage_error=mode)}),
    ]


@pytest.mark.parametrize("index", [0, 1, 2], ids=["rate", "concurrency", "budget"])
async def test_dead_port_fails_closed_with_503_fast(index: int, sink: RecordingSink) -> None:
    storage = LimitStorage(f"redis://:s3cret-pw@127.0.0.1:{free_port()}/15", timeout=0.05)
    _, stages = stage_sets(storage, "closed")[index]
    app = make_app(sink, **stages)
    async with client_for(app) as client:
        for _ in range(5):
            response, elapsed = await timed(client)
            assert response.status_code == 503
            assert elapsed < DEADLINE
    problem = response.json()
    assert problem["code"] == "storage_unavailable"
    assert response.headers["retry-after"] == "1"
    assert "127.0.0.1" not in response.text
    assert "s3cret" not in response.text
    assert all(e.outcome == "rejected" and e.status == 503 for e in sink.events)


@pytest.mark.parametrize("index", [0, 1, 2], ids=["rate", "concurrency", "budget"])
async def test_dead_port_fails_open_and_is_recorded(index: int, sink: RecordingSink) -> None:
    storage = LimitStorage(f"redis://127.0.0.1:{free_port()}/15", timeout=0.05)
    name, stages = stage_sets(storage, "open")[index]
    app = make_app(sink, **stages)
    async with client_for(app) as client:
        for _ in range(5):
            response, elapsed = await timed(client)
            assert response.status_code == 200
            assert elapsed < DEADLINE
    assert all(e.failed_open == [name] for e in sink.events)
    section, stage = name.split(":")
    section = "budget" if section == "budget" else "throttle"
    facts = sink.events[0].audit[section][stage]
    assert facts["storage_error"] is True
    assert facts["failed_open"] is True


async def test_failure_logs_never_carry_the_password(caplog: pytest.LogCaptureFixture) -> None:
    storage = LimitStorage(f"redis://user:hunter2-pw@127.0.0.1:{free_port()}/15?password=hunter2-pw")
    assert "hunter2" not in repr(storage)
    app = make_app(admit=RateLimit("1/minute", storage=storage))
    with caplog.at_level(logging.DEBUG, logger="airlock"):
        async with client_for(app) as client:
            await timed(client)
    assert "failed" in caplog.text
    assert "hunter2" not in caplog.text


# --- a real Redis that we stop and kill ---------------------------------------------------------


async def wait_until_status(client: httpx.AsyncClient, status: int, user: str) -> None:
    with anyio.fail_after(3.0):
        while True:
            response, _ = await timed(client, user)
            if response.status_code == status:
                return
            await anyio.sleep(0.05)


async def test_redis_hung_then_killed_mid_run_then_recovered(
    own_redis: RedisServer, sink: RecordingSink
) -> None:
    storage = LimitStorage(f"redis://127.0.0.1:{own_redis.port}/0", timeout=0.05, retry_interval=0.1)
    closed = make_app(
        sink,
        admit=RateLimit("1000/minute", storage=storage),
        budget=TokenBudget("100000/minute", storage=storage),
    )
    opened = make_app(
        sink,
        admit=RateLimit("1000/minute", storage=storage, on_storage_error="open"),
        budget=TokenBudget("100000/minute", storage=storage, on_storage_error="open"),
    )
    async with client_for(closed) as closed_client, client_for(opened) as open_client:
        # Warm up: the first call also opens the connection, which a busy machine may not
        # finish within the 50 ms deadline.
        await wait_until_status(closed_client, 200, "alice")

        for outage, recover in ((own_redis.pause, own_redis.resume), (own_redis.kill, None)):
            outage()  # hung (SIGSTOP), then gone (SIGKILL)
            for _ in range(4):
                refused, elapsed = await timed(closed_client)
                assert refused.status_code == 503, refused.text
                assert refused.json()["code"] == "storage_unavailable"
                assert elapsed < DEADLINE
                admitted, elapsed = await timed(open_client)
                assert admitted.status_code == 200
                assert elapsed < DEADLINE
                await anyio.sleep(0.03)
            if recover is not None:
                recover()
            else:
                await own_redis.start()  # same port, empty data
            # No restart of the app: the breaker probes and closes again.
            await wait_until_status(closed_client, 200, "alice")
            assert (await timed(open_client))[0].status_code == 200

    failed_open = [e for e in sink.events if e.failed_open]
    assert failed_open
    assert all(set(e.failed_open) <= {"throttle:rate", "budget:tokens"} for e in failed_open)
    assert sink.events[-1].failed_open == []
    assert not any(e.status == 500 for e in sink.events)


async def test_settlement_during_an_outage_is_recorded_not_raised(
    own_redis: RedisServer, sink: RecordingSink
) -> None:
    storage = LimitStorage(f"redis://127.0.0.1:{own_redis.port}/0", timeout=0.05, retry_interval=0.1)

    async def handler(request: Request) -> Response:
        await request.body()
        request.state.airlock.report_usage(5, 5)
        own_redis.pause()  # the storage hangs after the reservation, before the settlement
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[Route("/chat", handler, methods=["POST"])],
        middleware=[
            Middleware(
                AirlockMiddleware,
                policy=Policy(identity=USER, budget=TokenBudget("1000/minute", storage=storage), audit=sink),
            )
        ],
    )
    try:
        async with client_for(app) as client:
            response, _ = await timed(client)
    finally:
        own_redis.resume()
    assert response.status_code == 200
    record = sink.events[0].audit["budget"]["tokens"]
    assert record["settle_error"] is True
    assert record["reserved"] == record["prompt_estimate"] + 10
    assert record["settled"] == 10


def test_uris_and_missing_clients() -> None:
    assert LimitStorage("async+memory://").scheme == "memory"
    assert LimitStorage("redis://127.0.0.1:6379/15").scheme == "redis"
    assert LimitStorage("rediss://127.0.0.1:6380/0").scheme == "rediss"
    assert LimitStorage("redis+sentinel://127.0.0.1:26379/mymaster").scheme == "redis+sentinel"
    with pytest.raises(ConfigurationError, match="unsupported"):
        LimitStorage("ftp://127.0.0.1")
    with pytest.raises(ConfigurationError, match="timeout"):
        LimitStorage("memory://", timeout=0)
    for uri, module, hint in (
        ("memcached://127.0.0.1:11211", "memcachio", "limits[async-memcached]"),
        ("mongodb://127.0.0.1:27017", "motor", "limits[async-mongodb]"),
    ):
        if importlib.util.find_spec(module) is None:
            with pytest.raises(ConfigurationError, match=hint.replace("[", r"\[").replace("]", r"\]")):
                LimitStorage(uri)
        else:  # pragma: no cover - depends on what is installed
            assert LimitStorage(uri).scheme == uri.split(":", 1)[0]


def test_breaker_state_is_visible() -> None:
    storage = LimitStorage("memory://")
    assert storage.available
    assert not storage.guarded
