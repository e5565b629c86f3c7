from __future__ import annotations

import os
import shutil
import signal
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from airlock.throttle import LimitStorage

from helpers import REQUIRE_REDIS_ENV, RecordingSink, RedisServer, redis_url

MEMCACHED_URL_ENV = "AIRLOCK_TEST_MEMCACHED_URL"


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


@pytest.fixture
def memcached_storage() -> LimitStorage:
    """Real memcached when ``AIRLOCK_TEST_MEMCACHED_URL`` is set (``.ci/run`` starts one when it can).

    Optional, unlike Redis: memcached is one of the storages ``limits`` offers, and a
    machine without it skips these runs with the reason.
    """
    url = os.environ.get(MEMCACHED_URL_ENV)
    if not url:
        pytest.skip(f"{MEMCACHED_URL_ENV} is not set: no memcached to test against")
    pytest.importorskip("memcachio", reason="memcached:// needs limits[async-memcached]")
    # A unique prefix per test: memcached has no key scan, so nothing is deleted afterwards;
    # the counters expire with their windows.
    return LimitStorage(url, key_prefix=f"t{uuid.uuid4().hex[:12]}", timeout=3.0)


@pytest.fixture(params=["memory", "redis", "memcached"])
def storage(request: pytest.FixtureRequest) -> LimitStorage:
    """Each test runs on in-process storage, real Redis and (when present) real memcached."""
    if request.param == "memory":
        return LimitStorage("memory://")
    return request.getfixturevalue(f"{request.param}_storage")  # type: ignore[no-any-return]


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
