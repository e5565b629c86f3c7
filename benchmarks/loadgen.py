"""Load generation against 127.0.0.1 only: wrk when installed, else a small asyncio generator.

Both send the same POST (keep-alive, HTTP/1.1) over ``connections`` connections for
``seconds`` seconds, and report completed requests, requests/s, p50/p99 latency and the count
of non-2xx answers and socket errors. Every run is bounded in time and count.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

MAX_REQUESTS = 500_000


@dataclass
class LoadResult:
    tool: str
    connections: int
    seconds: float
    requests: int
    non_2xx: int
    errors: int
    p50_ms: float
    p99_ms: float

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _check_loopback(host: str) -> None:
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError("load is only ever sent to the loopback interface")


_WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
wrk.body = [==[{body}]==]
done = function(summary, latency, requests)
  io.write(string.format("AIRLOCK p50=%f p99=%f non2xx=%d\\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.errors.status))
end
"""


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(port: int, path: str, body: bytes, key: str, connections: int, seconds: float) -> LoadResult:
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "post.lua"
        script.write_text(_WRK_SCRIPT.format(key=key, body=body.decode()))
        threads = max(1, min(2, connections))
        output = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{int(seconds)}s",
                "--timeout",
                "10s",
                "-s",
                str(script),
                f"http://127.0.0.1:{port}{path}",
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        ).stdout
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    errors_match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    errors = sum(int(g) for g in errors_match.groups()) if errors_match else 0
    stats = re.search(r"AIRLOCK p50=([\d.]+) p99=([\d.]+) non2xx=(\d+)", output)
    assert stats is not None, output
    return LoadResult(
        tool="wrk",
        connections=connections,
        seconds=seconds,
        requests=requests,
        non_2xx=int(stats.group(3)),
        errors=errors,
        p50_ms=float(stats.group(1)),
        p99_ms=float(stats.group(2)),
    )


async def _connection(
    port: int, request: bytes, stop_at: float, latencies: list[float], statuses: list[int], errors: list[int]
) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        errors.append(1)
        return
    try:
        while time.perf_counter() < stop_at and len(latencies) < MAX_REQUESTS:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            match = re.search(rb"(?i)content-length: *(\d+)", head)
            if match:
                await reader.readexactly(int(match.group(1)))
            else:  # chunked: read to the terminating chunk
                while True:
                    size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                    await reader.readexactly(size + 2)
                    if size == 0:
                        break
            latencies.append(time.perf_counter() - started)
            statuses.append(status)
            if b"connection: close" in head.lower():
                break
    except (OSError, asyncio.IncompleteReadError, ValueError):
        errors.append(1)
    finally:
        writer.close()


def run_python(port: int, path: str, body: bytes, key: str, connections: int, seconds: float) -> LoadResult:
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    statuses: list[int] = []
    errors: list[int] = []

    async def main() -> float:
        started = time.perf_counter()
        stop_at = started + seconds
        await asyncio.gather(
            *(_connection(port, request, stop_at, latencies, statuses, errors) for _ in range(connections))
        )
        return time.perf_counter() - started

    elapsed = asyncio.run(main())
    ordered = sorted(latencies) or [0.0]
    return LoadResult(
        tool="python",
        connections=connections,
        seconds=elapsed,
        requests=len(latencies),
        non_2xx=sum(1 for s in statuses if not 200 <= s < 300),
        errors=len(errors),
        p50_ms=statistics.median(ordered) * 1000,
        p99_ms=ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
    )


def run_load(
    port: int, path: str, body: bytes, key: str, connections: int, seconds: float, *, host: str = "127.0.0.1"
) -> LoadResult:
    _check_loopback(host)
    if wrk_available():
        return run_wrk(port, path, body, key, connections, seconds)
    return run_python(port, path, body, key, connections, seconds)
