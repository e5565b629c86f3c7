"""Cost of throttling per admitted request: airlock on memory:// and Redis, next to slowapi.

Every configuration serves the same Starlette route with the same limit (high
enough that every request is admitted), driven by in-process ASGI calls, so the
difference to the bare app is the price of counting. Configurations run
interleaved, round after round; the median of the rounds is reported with
ratios to the bare app and to slowapi's ``@limiter.limit`` on memory.

The storage rows time one ``incr`` of the in-process storage with the counters of
many identities alive, the way a server calls it: every request yields to the event loop
before the next one counts. ``limits.aio``'s own ``MemoryStorage`` starts a task per
increment that walks every key; airlock's ``memory://`` storage
(``airlock.throttle.memory``) sweeps expired keys at most every few seconds.

Redis rows run when a Redis answers at ``AIRLOCK_BENCH_REDIS_URL`` (default
``AIRLOCK_TEST_REDIS_URL``, else ``redis://127.0.0.1:6379/15``); keys get a unique
prefix and are deleted afterwards. slowapi rows run when slowapi is installed
(``pip install 'asgi-airlock[bench]'``). slowapi calls its storage synchronously,
so on Redis each request blocks the event loop for a round trip.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import statistics
import time
import uuid
from typing import Any

from limits.aio.storage import MemoryStorage as LimitsMemoryStorage
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from airlock import AirlockMiddleware, Policy
from airlock.throttle import ConcurrencyLimit, LimitStorage, RateLimit, TokenBudget
from airlock.throttle.memory import MemoryStorage

from apps import timed_batch
from report import print_result

LIMIT = "1000000/minute"
BUDGET = "1000000000/minute"
BODY = json.dumps(
    {"model": "m", "messages": [{"role": "user", "content": "hello " * 40}], "max_tokens": 50}
).encode()


async def _handler(request: Request) -> JSONResponse:
    await request.body()
    ctx = request.scope.get("state", {}).get("airlock")
    if ctx is not None:
        ctx.report_usage(60, 20)
    return JSONResponse({"ok": True})


def _routes(endpoint: Any = _handler) -> list[Route]:
    return [Route("/v1/chat/completions", endpoint, methods=["POST"])]


def _airlock(**stages: Any) -> Starlette:
    return Starlette(routes=_routes(), middleware=[Middleware(AirlockMiddleware, policy=Policy(**stages))])


def _slowapi(storage_uri: str, prefix: str) -> Any | None:
    try:
        from slowapi import Limiter, _rate_limit_exceeded_handler
        from slowapi.errors import RateLimitExceeded
        from slowapi.util import get_remote_address
    except ImportError:
        return None
    limiter = Limiter(key_func=get_remote_address, storage_uri=storage_uri, key_prefix=prefix)

    @limiter.limit(LIMIT)
    async def limited(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"ok": True})

    app = Starlette(routes=_routes(limited))
    app.state.limiter = limiter
    app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]
    return app


def _redis_url() -> str | None:
    url = os.environ.get("AIRLOCK_BENCH_REDIS_URL") or os.environ.get(
        "AIRLOCK_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"
    )
    try:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        client.ping()
        client.close()
    except Exception:
        return None
    return url


def _cleanup(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def configurations(redis_url: str | None, prefix: str) -> tuple[dict[str, Any], list[str]]:
    notes: list[str] = []
    apps: dict[str, Any] = {"bare Starlette": Starlette(routes=_routes())}
    slow = _slowapi("memory://", prefix)
    if slow is not None:
        apps["slowapi @limit (memory)"] = slow
    else:
        notes.append("slowapi is not installed: no slowapi rows")
    apps["airlock engine, no throttle"] = _airlock()
    storages = [("memory", "memory://")]
    if redis_url is not None:
        storages.append(("redis", redis_url))
        slow = _slowapi(redis_url, prefix)
        if slow is not None:
            apps["slowapi @limit (redis, sync)"] = slow
    else:
        notes.append("no Redis reachable: no Redis rows")
    for label, uri in storages:
        store = LimitStorage(uri, key_prefix=prefix, timeout=1.0)
        for strategy in ("sliding-window-counter", "fixed-window"):
            apps[f"airlock RateLimit {strategy} ({label})"] = _airlock(
                admit=RateLimit(LIMIT, storage=store, strategy=strategy)
            )
        apps[f"airlock ConcurrencyLimit ({label})"] = _airlock(admit=ConcurrencyLimit(1000, storage=store))
        apps[f"airlock TokenBudget ({label})"] = _airlock(budget=TokenBudget(BUDGET, storage=store))
        apps[f"airlock all three ({label})"] = _airlock(
            admit=(RateLimit(LIMIT, storage=store), ConcurrencyLimit(1000, storage=store)),
            budget=TokenBudget(BUDGET, storage=store),
        )
    return apps, notes


async def _incr_cost(storage: Any, keys: int, ops: int) -> float:
    """µs per ``incr`` with ``keys`` live counters, yielding to the loop between requests."""
    for index in range(keys):
        await storage.incr(f"bench/{index}", 60)
    await asyncio.sleep(0.01)  # let a pending sweep finish before timing
    started = time.perf_counter()
    for index in range(ops):
        await storage.incr(f"bench/{index % keys}", 60)
        await asyncio.sleep(0)  # the request's I/O: other tasks run here
    return (time.perf_counter() - started) / ops * 1e6


def storage_rows(*, quick: bool) -> list[dict[str, Any]]:
    """limits' MemoryStorage next to airlock's memory:// storage, with many identities."""
    ops = 200 if quick else 2000
    rounds = 3 if quick else 5
    rows = []
    for keys in (100, 10_000):
        samples: dict[str, list[float]] = {"limits.aio MemoryStorage": [], "airlock memory:// storage": []}
        for _ in range(rounds):
            samples["limits.aio MemoryStorage"].append(
                asyncio.run(_incr_cost(LimitsMemoryStorage(), keys, ops))
            )
            samples["airlock memory:// storage"].append(asyncio.run(_incr_cost(MemoryStorage(), keys, ops)))
        for name, values in samples.items():
            rows.append(
                {
                    "name": f"storage incr, {keys} live keys: {name}",
                    "us_per_op": round(statistics.median(values), 1),
                }
            )
    return rows


def run(*, quick: bool = False) -> dict[str, Any]:
    redis_url = _redis_url()
    prefix = f"bench{uuid.uuid4().hex[:10]}"
    apps, notes = configurations(redis_url, prefix)
    rounds, per_round = (3, 100) if quick else (9, 500)

    async def main() -> dict[str, list[float]]:
        samples: dict[str, list[float]] = {name: [] for name in apps}
        for app in apps.values():  # warm up: connection pools, scripts, route lookups
            await timed_batch(app, BODY, 20)
        for _ in range(rounds):
            for name, app in apps.items():
                # A full collection between batches, not inside one: otherwise whichever
                # configuration happens to trigger it pays for everyone's garbage.
                gc.collect()
                samples[name].append(await timed_batch(app, BODY, per_round))
        return samples

    try:
        medians = {name: statistics.median(values) for name, values in asyncio.run(main()).items()}
    finally:
        if redis_url is not None:
            _cleanup(redis_url, prefix)
    bare = medians["bare Starlette"]
    engine = medians["airlock engine, no throttle"]
    slowapi_memory = medians.get("slowapi @limit (memory)")
    rows = []
    for name, micros in medians.items():
        row: dict[str, Any] = {
            "name": name,
            "us_per_op": round(micros, 1),
            "x_bare": round(micros / bare, 2),
            "us_over_engine": round(micros - engine, 1) if name.startswith("airlock ") else "",
        }
        if slowapi_memory is not None:
            row["x_slowapi_memory"] = round(micros / slowapi_memory, 2)
        rows.append(row)
    rows.extend(storage_rows(quick=quick))
    notes.insert(
        0,
        f"limit {LIMIT} (every request admitted), one client address; in-process ASGI calls, median of "
        f"{rounds} interleaved rounds of {per_round} sequential requests.",
    )
    notes.append(
        "us_over_engine: the throttle's own cost over airlock's engine without stages (identity by address, "
        "body read, JSON parse)."
    )
    if redis_url is not None:
        notes.append("Redis on loopback: its rows are dominated by round trips (see the readme's counts).")
    notes.append(
        "storage incr rows: one increment per request with the loop yielding in between (as under a "
        "server), including that yield; limits' MemoryStorage sweeps every key on every increment."
    )
    return {"title": "Throttling cost per admitted request", "rows": rows, "notes": notes}


if __name__ == "__main__":
    print_result(run())
