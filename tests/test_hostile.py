"""Hostile clients against a real uvicorn on loopback: slowloris, mid-body disconnects,
floods of oversize uploads, header abuse. Bounded in count and time; traffic only to 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from helpers import free_port, wait_for_port
from hostile_app import KEY

HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.anyio


class Server:
    def __init__(self, port: int, events: Path, process: subprocess.Popen[bytes]) -> None:
        self.port = port
        self.events_file = events
        self.process = process

    def events(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.events_file.read_text().splitlines() if line.strip()]

    def peak_rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM")


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    events = tmp_path_factory.mktemp("hostile") / "events.jsonl"
    events.touch()
    port = free_port()
    process = subprocess.Popen([sys.executable, str(HERE / "hostile_app.py"), str(port), str(events)])
    try:
        anyio.run(wait_for_port, port)
        yield Server(port, events, process)
    finally:
        process.terminate()
        process.wait(timeout=10)


def request_head(length: int | None = None, *, chunked: bool = False, extra: str = "") -> bytes:
    lines = ["POST /chat HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {KEY}"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    head = "\r\n".join(lines) + "\r\n" + extra + "\r\n"
    return head.encode("latin-1")


async def read_response(stream: anyio.abc.ByteStream, seconds: float) -> bytes:
    data = b""
    with anyio.move_on_after(seconds):
        while b"\r\n\r\n" not in data:
            try:
                data += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                break
    return data


async def handler_calls(server: Server) -> int:
    import httpx

    async with httpx.AsyncClient() as client:
        return int((await client.get(f"http://127.0.0.1:{server.port}/calls")).json()["handler"])


async def test_slowloris_gets_408_and_the_connection_is_freed(server: Server) -> None:
    before = await handler_calls(server)
    stream = await anyio.connect_tcp("127.0.0.1", server.port)
    started = time.monotonic()
    async with stream:
        await stream.send(request_head(1000))
        response = b""

        async def trickle() -> None:
            for _ in range(100):  # one byte every 50 ms: far under any per-chunk timeout
                try:
                    await stream.send(b"a")
                except (anyio.BrokenResourceError, OSError):
                    return
                await anyio.sleep(0.05)

        async with anyio.create_task_group() as group:
            group.start_soon(trickle)
            response = await read_response(stream, 5)
            group.cancel_scope.cancel()
        elapsed = time.monotonic() - started
        assert response.startswith(b"HTTP/1.1 408"), response[:60]
        assert elapsed < 3
        # The server closes the connection: the rest of the body is never waited for.
        closed = False
        with anyio.move_on_after(3):
            try:
                while await stream.receive():
                    pass
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                closed = True
        assert closed
    assert await handler_calls(server) == before


async def test_mid_body_disconnect_never_reaches_the_handler(server: Server) -> None:
    before_calls = await handler_calls(server)
    before_events = len(server.events())
    stream = await anyio.connect_tcp("127.0.0.1", server.port)
    await stream.send(request_head(1000) + b"x" * 100)
    await anyio.sleep(0.1)
    await stream.aclose()
    with anyio.fail_after(5):
        while len(server.events()) < before_events + 1:
            await anyio.sleep(0.05)
    await anyio.sleep(0.2)
    new = server.events()[before_events:]
    assert new == [{"outcome": "abandoned", "status": None, "code": None}]
    assert await handler_calls(server) == before_calls


async def upload_oversize(port: int, results: list[bytes]) -> None:
    stream = await anyio.connect_tcp("127.0.0.1", port)
    async with stream:
        await stream.send(request_head(chunked=True))
        chunk = b"%x\r\n%s\r\n" % (16 * 1024, b"z" * 16 * 1024)

        async def pump() -> None:
            for _ in range(64):  # up to 1 MiB each (1 GiB in all); the cap is 64 KiB
                try:
                    await stream.send(chunk)
                except (anyio.BrokenResourceError, OSError):
                    return

        async with anyio.create_task_group() as group:
            group.start_soon(pump)
            results.append(await read_response(stream, 30))
            group.cancel_scope.cancel()


@pytest.mark.slow
async def test_flood_of_oversize_uploads_is_refused_in_bounded_memory(server: Server) -> None:
    before_events = len(server.events())
    baseline = server.peak_rss_kib()
    results: list[bytes] = []
    with anyio.fail_after(60):
        async with anyio.create_task_group() as group:
            for _ in range(1000):
                group.start_soon(upload_oversize, server.port, results)
    statuses = [r.split(b" ", 2)[1] if r.startswith(b"HTTP/1.1") else r[:20] for r in results]
    assert statuses.count(b"413") == 1000, set(statuses)
    growth_mib = (server.peak_rss_kib() - baseline) / 1024
    # 1000 x (64 KiB cap + one 16 KiB chunk) would be ~80 MiB if every body were held at once.
    print(f"peak RSS growth for 1000 concurrent oversize uploads: {growth_mib:.1f} MiB")
    assert growth_mib < 300, growth_mib
    with anyio.fail_after(10):
        while len(server.events()) < before_events + 1000:
            await anyio.sleep(0.05)
    codes = [e["code"] for e in server.events()[before_events:]]
    assert codes.count("body_too_large") == 1000


async def test_repeated_authorization_is_refused(server: Server) -> None:
    stream = await anyio.connect_tcp("127.0.0.1", server.port)
    async with stream:
        extra = "Authorization: Bearer ak_someone_elses_key_000000\r\n"
        await stream.send(request_head(2, extra=extra) + b"{}")
        response = await read_response(stream, 5)
    assert response.startswith(b"HTTP/1.1 400")


async def test_huge_and_many_headers_get_a_clean_refusal(server: Server) -> None:
    for extra in ("X-Big: " + "a" * 200_000 + "\r\n", "".join(f"X-H{i}: v\r\n" for i in range(5000))):
        stream = await anyio.connect_tcp("127.0.0.1", server.port)
        async with stream:
            with contextlib.suppress(anyio.BrokenResourceError, OSError):
                await stream.send(request_head(2, extra=extra) + b"{}")
            response = await read_response(stream, 5)
        # uvicorn's parser refuses oversized heads itself; either way no 5xx and no hang.
        assert not response.startswith(b"HTTP/1.1 5"), response[:60]
    assert await handler_calls(server) >= 0
