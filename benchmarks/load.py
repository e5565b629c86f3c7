"""Throughput and latency under uvicorn on loopback: bare Starlette, slowapi, airlock full.

Each app runs in its own uvicorn process (one worker) on a free 127.0.0.1 port and is driven
with a bounded load (wrk when installed, else :mod:`loadgen`'s asyncio generator) at several
concurrency levels. After the airlock runs the benchmark checks that the counts are exact:
one audit event per request that reached the server, and, in a separate run against a
``500/hour`` limit, exactly 500 requests admitted and every other one refused with 429.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from apps import BENCH_KEY, CHAT_BODY, PATH
from loadgen import LoadResult, run_load, wrk_available
from report import print_result

HERE = Path(__file__).resolve().parent
ADMITTED_LIMIT = 500
_FACTORIES = {"bare": "bare", "slowapi": "slowapi", "airlock": "airlock_full"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One app under uvicorn in a child process, stopped (and its lifespan shut down) on exit."""

    def __init__(self, factory: str, env: dict[str, str] | None = None) -> None:
        self.port = _free_port()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                f"apps:{_FACTORIES[factory]}",
                "--factory",
                "--app-dir",
                str(HERE),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--no-access-log",
                "--backlog",
                "4096",
            ],
            env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{factory} exited with {self.process.returncode}") from None
                time.sleep(0.05)
        raise RuntimeError(f"{factory} did not start")

    def stats(self) -> dict[str, int]:
        return dict(httpx.get(f"http://127.0.0.1:{self.port}/bench-stats", timeout=5).json())

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)  # uvicorn runs the lifespan shutdown: audit flushed
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _row(app: str, result: LoadResult) -> dict[str, Any]:
    return {
        "app": app,
        "concurrency": result.connections,
        "requests_per_s": round(result.requests_per_s),
        "p50_ms": round(result.p50_ms, 2),
        "p99_ms": round(result.p99_ms, 2),
        "requests": result.requests,
        "non_2xx": result.non_2xx,
        "errors": result.errors,
        "tool": result.tool,
    }


def _audit_lines(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip())


def run(*, quick: bool = False) -> dict[str, Any]:
    levels = (1, 16, 64) if not quick else (4,)
    seconds = 5.0 if not quick else 1.0
    apps = ("bare", "slowapi", "airlock") if not quick else ("bare", "airlock")
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        audit_file = Path(folder) / "audit.jsonl"
        for app in apps:
            env = {"AIRLOCK_BENCH_AUDIT_FILE": str(audit_file)} if app == "airlock" else {}
            with Server(app, env) as server:
                for level in levels:
                    rows.append(_row(app, run_load(server.port, PATH, CHAT_BODY, BENCH_KEY, level, seconds)))
                counted = server.stats()["requests"] if app == "airlock" else None
            if counted is not None:
                logged = _audit_lines(audit_file)
                verdict = "exact" if logged == counted else "NOT EXACT"
                notes.append(f"audit: {logged} events for {counted} requests ({verdict})")

        limited_audit = Path(folder) / "limited.jsonl"
        env = {
            "AIRLOCK_BENCH_AUDIT_FILE": str(limited_audit),
            "AIRLOCK_BENCH_LIMIT": f"{ADMITTED_LIMIT}/hour",
        }
        with Server("airlock", env) as server:
            result = run_load(server.port, PATH, CHAT_BODY, BENCH_KEY, 16, 2.0 if not quick else 1.0)
            stats = server.stats()
        refused = result.non_2xx
        logged = _audit_lines(limited_audit)
        exact = stats["handled"] == min(ADMITTED_LIMIT, stats["requests"]) and logged == stats["requests"]
        notes.append(
            f"rate limit {ADMITTED_LIMIT}/hour: {stats['handled']} admitted, {refused} refused, "
            f"{stats['requests']} requests, {logged} audit events ({'exact' if exact else 'NOT EXACT'})"
        )

    by_key = {(row["app"], row["concurrency"]): row for row in rows}
    top = max(levels)
    bare, full = by_key.get(("bare", top)), by_key.get(("airlock", top))
    if bare and full and not quick:
        ratio = full["requests_per_s"] / max(bare["requests_per_s"], 1)
        p99 = full["p99_ms"] / max(bare["p99_ms"], 1e-9)
        verdict = "PASS" if ratio >= 0.8 else "MISS"
        notes.append(f"target throughput >= 0.8x bare at {top} connections: {verdict} ({ratio:.2f}x)")
        verdict = "PASS" if p99 <= 1.5 else "MISS"
        notes.append(f"target p99 <= 1.5x bare at {top} connections: {verdict} ({p99:.2f}x)")
    notes.append(
        f"{'wrk' if wrk_available() else 'built-in asyncio load generator'}, {seconds:.0f} s per level, "
        "one uvicorn worker per app, loopback only; server and load generator share the machine's cores."
    )
    return {"title": "Throughput under uvicorn (loopback)", "rows": rows, "notes": notes}


if __name__ == "__main__":
    print_result(run(quick="--quick" in sys.argv))
