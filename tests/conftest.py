from __future__ import annotations

import os
import shutil
import signal
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from airlock.throttle import LimitStorage

from helpers import REQUIRE_REDIS_ENV, RecordingSink, RedisServer, redis_url


# Every async test runs on asyncio through anyio's pytest plugin.
@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def redis_storage() -> Iterator[LimitStorage]:
    """Real Redis (db 15), a unique key prefix per test, keys removed afterwards."""
    url = redis_url()
    prefix = f"t{uuid.uuid4().hex[:12]}"
    # Generous: these tests are about exact counts, not latency, and a loaded CI machine is slow.
    yield LimitStorage(url, key_prefix=prefix, timeout=3.0)
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(params=["memory", "redis"])
def storage(request: pytest.FixtureRequest) -> LimitStorage:
    """Each test runs twice: in-process storage, then real Redis."""
    if request.param == "memory":
        return LimitStorage("memory://")
    return request.getfixturevalue("redis_storage")  # type: ignore[no-any-return]


@pytest.fixture
async def own_redis() -> AsyncIterator[RedisServer]:
    """A private redis-server the test may stop, freeze and restart."""
    if shutil.which("redis-server") is None:
        if os.environ.get(REQUIRE_REDIS_ENV) == "1":
            pytest.fail("redis-server is not installed but CI requires Redis")
        pytest.skip("redis-server is not installed")
    server = RedisServer()
    await server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            server.signal(signal.SIGCONT)
        server.kill()
