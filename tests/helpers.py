"""Helpers shared by the tests: raw ASGI exchanges, recording sinks, loopback servers."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from typing import Any

import anyio
import httpx
import pytest

from airlock.context import Context


class RecordingSink:
    """An audit sink that keeps the finished contexts, for asserting exactly-once auditing."""

    def __init__(self) -> None:
        self.events: list[Context] = []

    def record(self, ctx: Context) -> None:
        self.events.append(ctx)


def client_for(app: Any, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver", **kwargs)


class RawExchange:
    """Drives an ASGI app with hand-made ``receive`` messages and records what it sends."""

    def __init__(self, messages: Iterable[dict[str, Any] | float]) -> None:
        self._messages = iter(messages)
        self.sent: list[dict[str, Any]] = []
        self.bytes_pulled = 0
        self.receive_calls = 0

    async def receive(self) -> dict[str, Any]:
        self.receive_calls += 1
        for item in self._messages:
            if isinstance(item, (int, float)):
                await anyio.sleep(item)
                continue
            self.bytes_pulled += len(item.get("body", b""))
            return item
        # Nothing left: behave like a server whose client is still connected.
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int | None:
        for message in self.sent:
            if message["type"] == "http.response.start":
                return int(message["status"])
        return None

    @property
    def headers(self) -> dict[str, str]:
        for message in self.sent:
            if message["type"] == "http.response.start":
                return {k.decode(): v.decode() for k, v in message["headers"]}
        return {}

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")

    def json(self) -> Any:
        import json

        return json.loads(self.body)


def http_scope(
    method: str = "POST",
    path: str = "/",
    headers: Iterable[tuple[str, str | bytes]] = (("content-type", "application/json"),),
    client: tuple[str, int] = ("127.0.0.1", 50000),
    **extra: Any,
) -> dict[str, Any]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (k.lower().encode("latin-1"), v if isinstance(v, bytes) else v.encode("latin-1"))
            for k, v in headers
        ],
        "client": client,
        "server": ("testserver", 80),
    }
    scope.update(extra)
    return scope


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_for_port(port: int, seconds: float = 20.0) -> None:
    with anyio.fail_after(seconds):
        while True:
            try:
                stream = await anyio.connect_tcp("127.0.0.1", port)
            except OSError:
                await anyio.sleep(0.05)
                continue
            await stream.aclose()
            return


REDIS_URL_ENV = "AIRLOCK_TEST_REDIS_URL"
REQUIRE_REDIS_ENV = "AIRLOCK_REQUIRE_REDIS"


def redis_url() -> str:
    """The test Redis URL; skip when absent unless CI requires Redis (then fail)."""
    url = os.environ.get(REDIS_URL_ENV)
    if not url:
        if os.environ.get(REQUIRE_REDIS_ENV) == "1":
            pytest.fail(f"{REDIS_URL_ENV} is not set but {REQUIRE_REDIS_ENV}=1 (CI needs a real Redis)")
        pytest.skip(f"{REDIS_URL_ENV} is not set: no Redis to test against")
    return url


class Lifespan:
    """Runs an ASGI app's lifespan protocol (startup on enter, shutdown on exit) without a server."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._to_app: Any = None
        self._from_app: Any = None

    async def __aenter__(self) -> Lifespan:
        import anyio.abc

        self._to_app, app_receive = anyio.create_memory_object_stream[dict[str, Any]](10)
        app_send, self._from_app = anyio.create_memory_object_stream[dict[str, Any]](10)
        self._group: anyio.abc.TaskGroup = anyio.create_task_group()
        await self._group.__aenter__()

        async def run() -> None:
            scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
            await self.app(scope, app_receive.receive, app_send.send)

        self._group.start_soon(run)
        await self._to_app.send({"type": "lifespan.startup"})
        message = await self._from_app.receive()
        assert message["type"] == "lifespan.startup.complete", message
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._to_app.send({"type": "lifespan.shutdown"})
        message = await self._from_app.receive()
        assert message["type"] == "lifespan.shutdown.complete", message
        await self._group.__aexit__(None, None, None)


def user_from_header(scope: Any) -> str | None:
    """Identify by an ``x-user`` header: lets a test act as several callers."""
    for name, value in scope.get("headers", ()):
        if name == b"x-user":
            return str(value.decode())
    return None


class RedisServer:
    """A redis-server of our own on a free port, so stopping it disturbs no other test."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: Any = None

    async def start(self) -> None:
        import shutil
        import subprocess

        binary = shutil.which("redis-server")
        assert binary is not None
        self.process = subprocess.Popen(  # noqa: ASYNC220 - a short-lived child, started once
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await wait_for_port(self.port)

    def signal(self, number: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, number)

    def pause(self) -> None:
        import signal

        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        import signal

        self.signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=5)
            self.process = None
