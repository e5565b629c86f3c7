"""Cost of the audit log on the event loop: µs per event, and the loop's worst stall under load.

Side by side, interleaved round after round (median reported):

- ``airlock AuditLog.record``: build the event on the loop, queue it; a writer thread
  formats it with python-json-logger, chains it (HMAC-SHA256) and writes it.
- ``sync JsonFormatter``: the usual setup, a ``logging`` logger with python-json-logger's
  ``JsonFormatter`` on a ``FileHandler``, called on the loop (format + write inline).

The stall test runs a 1 ms ticker on the loop while requests finish at a steady
rate and are recorded, and reports how late the ticker woke up (worst and p99). It
runs with a healthy file sink and with a sink that stalls 20 ms every 200
events (a full pipe to a log shipper, a slow network disk).
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pythonjsonlogger.json import JsonFormatter

from airlock import Context, Identity, Policy
from airlock.audit import AuditLog, build_event
from airlock.audit.hashing import KeyedHasher

KEY = "benchmark-identity-key-0123456789"
CHAIN_KEY = "benchmark-chain-key-0123456789ab"


def make_context(index: int = 0) -> Context:
    """A finished, accepted chat request with the facts the other stages leave."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "headers": [
            (b"content-type", b"application/json"),
            (b"authorization", b"Bearer sk-not-logged"),
            (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            (b"user-agent", b"bench/1.0"),
        ],
        "client": ("203.0.113.7", 50000),
    }
    ctx = Context(scope, Policy(), f"req-{index}", "/v1/chat/completions")
    ctx.identity = Identity(kind="key", id=f"key:client-{index % 50}", name="client")
    ctx.status = 200
    ctx.bytes_in = 712
    ctx.bytes_out = 1534
    ctx.timings.update(
        {"identify": 0.011, "admit": 0.032, "read_body": 0.021, "parse": 0.014, "validate": 0.009}
    )
    ctx.timings.update({"anonymize": 0.041, "budget": 0.027})
    ctx.entity_counts.update({"EMAIL": 1, "PHONE": 1})
    ctx.audit["throttle"] = {"limit": "60/minute", "remaining": 41, "reset": 21.5}
    ctx.audit["budget"] = {"reserved": 1200, "settled": 830, "remaining": 18_170}
    ctx.audit["sanitize"] = {"removed": {"zero_width": 2}}
    ctx.token_estimate = 180
    ctx.report_usage(180, 650, provider="openai", model="gpt-4o-mini")
    return ctx


class SlowHandler(logging.FileHandler):
    """A file that stalls ``pause`` seconds every ``every`` writes."""

    def __init__(self, path: str, *, every: int = 200, pause: float = 0.02) -> None:
        super().__init__(path, encoding="utf-8")
        self.every, self.pause, self.count = every, pause, 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if self.count % self.every == 0:
            time.sleep(self.pause)
        super().emit(record)


def sync_logger(handler: logging.Handler) -> Callable[[Context], None]:
    """The naive setup: JsonFormatter on a handler, called on the loop."""
    hasher = KeyedHasher(KEY)
    handler.setFormatter(JsonFormatter(timestamp=True))
    logger = logging.Logger("bench.sync")
    logger.addHandler(handler)
    logger.propagate = False

    def record(ctx: Context) -> None:
        event = build_event(ctx, hasher)
        event.pop("ts")
        logger.info(event)

    return record


def time_per_call(func: Callable[[Context], object], contexts: list[Context]) -> float:
    started = time.perf_counter()
    for ctx in contexts:
        func(ctx)
    return (time.perf_counter() - started) / len(contexts) * 1e6


async def stall_under_load(
    record: Callable[[Context], None] | None, contexts: list[Context], *, rate: int, seconds: float
) -> tuple[float, float, float]:
    """(worst, p99) lateness in ms of a 1 ms ticker while requests finish at ``rate`` per second,
    and the µs the loop spent in ``record`` per request."""
    lateness: list[float] = []
    in_record = [0.0]
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            lateness.append((time.perf_counter() - before - 0.001) * 1000.0)

    async def finish_requests() -> None:
        # Every millisecond, the requests that finished in it are recorded.
        started = time.perf_counter()
        sent = 0
        while (elapsed := time.perf_counter() - started) < seconds:
            due = min(int(elapsed * rate), len(contexts))
            before = time.perf_counter()
            while sent < due:
                if record is not None:
                    record(contexts[sent])
                sent += 1
            in_record[0] += time.perf_counter() - before
            await asyncio.sleep(0.001)

    tick = asyncio.ensure_future(ticker())
    await asyncio.sleep(0.01)
    await finish_requests()
    done.set()
    await tick
    lateness.sort()
    per_request = in_record[0] / max(1, int(rate * seconds)) * 1e6
    return lateness[-1], lateness[int(len(lateness) * 0.99) - 1], per_request


def run(*, quick: bool = False) -> dict[str, Any]:
    rounds = 3 if quick else 7
    events = 2_000 if quick else 20_000
    seconds = 0.4 if quick else 2.0
    rate = 5_000  # requests finishing per second
    folder = tempfile.mkdtemp(prefix="airlock-bench-audit-")
    contexts = [make_context(i) for i in range(max(events, int(rate * seconds) + 1))]
    logging.getLogger("airlock.audit").setLevel(logging.ERROR)

    per_call: dict[str, list[float]] = {"build_event": [], "airlock": [], "sync": []}
    drain: list[float] = []
    hasher = KeyedHasher(KEY)
    for round_ in range(rounds):
        per_call["build_event"].append(time_per_call(lambda ctx: build_event(ctx, hasher), contexts[:events]))

        audit = AuditLog(path=os.path.join(folder, f"a{round_}.jsonl"), identity_key=KEY, chain_key=CHAIN_KEY)
        audit.close()  # nothing to write yet; record() starts the writer again
        started = time.perf_counter()
        per_call["airlock"].append(time_per_call(audit.record, contexts[:events]))
        audit.close(timeout=120)
        drain.append((time.perf_counter() - started) / events * 1e6)

        handler = logging.FileHandler(os.path.join(folder, f"s{round_}.jsonl"), encoding="utf-8")
        per_call["sync"].append(time_per_call(sync_logger(handler), contexts[:events]))
        handler.close()

    stalls: dict[str, list[tuple[float, float, float]]] = {}
    Recorder = Callable[[Context], None]

    def none(_: int) -> tuple[Recorder | None, Callable[[], object]]:
        return None, lambda: None

    def airlock_file(n: int, slow: bool = False) -> tuple[Recorder | None, Callable[[], object]]:
        path = os.path.join(folder, f"l{n}{'s' if slow else ''}.jsonl")
        if slow:
            handler = SlowHandler(path)
            audit = AuditLog(handler=handler, identity_key=KEY, chain_key=CHAIN_KEY)

            def finish() -> None:
                audit.close(timeout=300)
                handler.close()

            return audit.record, finish
        audit = AuditLog(path=path, identity_key=KEY, chain_key=CHAIN_KEY)
        return audit.record, lambda: audit.close(timeout=300)

    def sync_file(n: int, slow: bool = False) -> tuple[Recorder | None, Callable[[], object]]:
        path = os.path.join(folder, f"y{n}{'s' if slow else ''}.jsonl")
        handler = SlowHandler(path) if slow else logging.FileHandler(path, encoding="utf-8")
        return sync_logger(handler), handler.close

    scenarios: list[tuple[str, Callable[[int], tuple[Recorder | None, Callable[[], object]]]]] = [
        ("no audit log (baseline)", none),
        ("airlock AuditLog, file", airlock_file),
        ("sync JsonFormatter, file", sync_file),
        ("airlock AuditLog, stalling sink", lambda n: airlock_file(n, slow=True)),
        ("sync JsonFormatter, stalling sink", lambda n: sync_file(n, slow=True)),
    ]
    for round_ in range(rounds):
        for name, make in scenarios:
            record, finish = make(round_)
            result = asyncio.run(stall_under_load(record, contexts, rate=rate, seconds=seconds))
            stalls.setdefault(name, []).append(result)
            finish()

    def median(values: list[float]) -> float:
        return round(statistics.median(values), 2)

    rows: list[dict[str, Any]] = [
        {"name": "build_event (on the loop)", "us_per_op": median(per_call["build_event"])},
        {"name": "airlock AuditLog.record (on the loop)", "us_per_op": median(per_call["airlock"])},
        {"name": "airlock writer thread, end to end", "us_per_op": median(drain)},
        {"name": "sync JsonFormatter + FileHandler (on the loop)", "us_per_op": median(per_call["sync"])},
    ]
    for name, results in stalls.items():
        rows.append(
            {
                "name": f"stall: {name}",
                "us_per_op": median([cost for _, _, cost in results]),
                "worst_stall_ms": median([worst for worst, _, _ in results]),
                "p99_lateness_ms": median([p99 for _, p99, _ in results]),
            }
        )
    ratio = statistics.median(per_call["sync"]) / statistics.median(per_call["airlock"])
    notes = [
        f"{events} events per round, {rounds} rounds interleaved, median reported; "
        f"Python {sys.version.split()[0]}.",
        f"record() costs the loop {ratio:.1f}x less than formatting and writing inline.",
        f"stall rows: lateness of a 1 ms ticker on the loop while {rate} requests/s finish and are "
        f"recorded for {seconds:g}s (us/op: loop time in record per request); "
        "'stalling sink' sleeps 20 ms every 200 writes.",
        "The writer thread still takes the GIL to format and hash: it formats up to 16 events "
        "(about 0.3 ms) per batch and writes a batch in a few write() calls, and the loop gets "
        "the GIL back between batches.",
    ]
    return {"title": "Audit log: cost per event and event-loop stalls", "rows": rows, "notes": notes}


def _print(result: dict[str, Any]) -> None:
    print(result["title"])
    print(f"{'':52} {'us/op':>9} {'worst ms':>9} {'p99 ms':>8}")
    for row in result["rows"]:
        worst = row.get("worst_stall_ms")
        p99 = row.get("p99_lateness_ms")
        us = f"{row['us_per_op']:9.2f}"
        extra = f" {worst:9.2f} {p99:8.2f}" if worst is not None else ""
        print(f"{row['name']:52} {us}{extra}")
    for note in result["notes"]:
        print(f"- {note}")


if __name__ == "__main__":
    _print(run(quick="--quick" in sys.argv))
