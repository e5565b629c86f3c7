"""Faults under load: nothing lost, no 500, no request left hanging.

* Redis killed and restarted in the middle of a load, with both ``on_storage_error`` modes
  (a private redis-server on a free port; the shared one is never stopped).
* Redis hung while requests give their concurrency slots back (regression H4 in SECURITY.md).
* The audit log's disk fills up mid-load (a real 32 KiB tmpfs) and frees up again; a sink
  that fails at random under concurrent load.
* A provider that stalls, resets, answers garbage or 5xx, in the middle of streams too, for
  many concurrent requests through the gateway.
* The shared Redis under a burst: a concurrency cap and a token budget never admit more than
  they allow, and every slot is given back.

Every request is counted on the client side and in the audit log: the two numbers are equal.
"""

from __future__ import annotations

import io
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from airlock import AirlockMiddleware, Context, FromCallable, Policy
from airlock.audit import AuditLog, verify_files
from airlock.throttle import ConcurrencyLimit, LimitStorage, RateLimit, TokenBudget
from airlock.validation import Validate
from hardening_stack import by_user_field

from fake_upstream import FakeUpstream, gateway_app, lifespan, serving
from helpers import (
    RecordingSink,
    RedisServer,
    client_for,
    redis_url,
    user_from_header,
)

pytestmark = pytest.mark.anyio

AUDIT_KEY = "hardening-faults-audit-key-000000"
BOUND = 2.0  # no request may take longer than this, whatever fails behind it


USER = FromCallable(user_from_header)


async def answer(request: Request) -> Response:
    ctx: Context = request.state.airlock
    await request.body()
    ctx.report_usage(5, 5)
    return JSONResponse({"ok": True})


def app_for(policy: Policy, handler: Any = answer) -> Starlette:
    return Starlette(
        routes=[Route("/chat", handler, methods=["POST"])],
        middleware=[Middleware(AirlockMiddleware, policy=policy)],
    )


class Tally:
    """What the clients saw: one entry per request, with how long it took."""

    def __init__(self) -> None:
        self.results: list[tuple[int, str | None, float]] = []

    async def post(self, client: httpx.AsyncClient, body: Any, user: str = "alice", **kwargs: Any) -> int:
        started = time.perf_counter()
        response = await client.post("/chat", json=body, headers={"x-user": user}, **kwargs)
        code = (
            response.json().get("code") if response.headers.get("content-type", "").endswith("json") else None
        )
        self.results.append((response.status_code, code, time.perf_counter() - started))
        return response.status_code

    @property
    def statuses(self) -> set[int]:
        return {status for status, _, _ in self.results}

    @property
    def slowest(self) -> float:
        return max(elapsed for _, _, elapsed in self.results)


def audit_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["closed", "open"])
async def test_redis_killed_and_restarted_mid_load(own_redis: RedisServer, tmp_path: Path, mode: str) -> None:
    storage = LimitStorage(f"redis://127.0.0.1:{own_redis.port}/0", timeout=0.05, retry_interval=0.1)
    audit = AuditLog(path=tmp_path / "audit.jsonl", identity_key=AUDIT_KEY)
    policy = Policy(
        identity=USER,
        admit=(
            RateLimit("100000/minute", storage=storage, on_storage_error=mode),
            ConcurrencyLimit(50, storage=storage, on_storage_error=mode),
        ),
        budget=TokenBudget("100000000/minute", storage=storage, on_storage_error=mode),
        audit=audit,
    )
    tally = Tally()
    stop = anyio.Event()

    async def worker(client: httpx.AsyncClient, user: str) -> None:
        while not stop.is_set():
            await tally.post(client, {"max_tokens": 5}, user)
            await anyio.sleep(0.005)  # a bounded load: refusals come back at once during the outage

    async with client_for(app_for(policy)) as client:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                for index in range(8):
                    group.start_soon(worker, client, f"user-{index % 3}")
                await anyio.sleep(0.4)
                own_redis.kill()  # mid-load, without warning
                await anyio.sleep(0.6)
                await own_redis.start()  # same port, empty data
                await anyio.sleep(0.6)
                stop.set()
            # No restart of the app: the breaker probes and closes again.
            while await tally.post(client, {"max_tokens": 5}) != 200 or (
                storage.guarded and not storage.available
            ):
                await anyio.sleep(0.05)
        last = await tally.post(client, {"max_tokens": 5})
    await audit.shutdown()

    assert last == 200
    assert tally.slowest < BOUND, tally.slowest
    if mode == "closed":
        assert tally.statuses <= {200, 503}
        refused = [code for status, code, _ in tally.results if status == 503]
        assert refused
        assert set(refused) == {"storage_unavailable"}
    else:
        assert tally.statuses == {200}
    events = audit_lines(tmp_path / "audit.jsonl")
    outcomes = Counter((event["outcome"], event["status"]) for event in events)
    assert len(events) == len(tally.results), outcomes  # every request, nothing lost
    assert audit.stats()["lost"] == 0
    assert sorted(event["status"] for event in events) == sorted(status for status, _, _ in tally.results)
    failed_open = [event for event in events if event.get("failed_open")]
    assert bool(failed_open) == (mode == "open")
    assert all(event["level"] == "CRITICAL" for event in failed_open)
    assert "failed_open" not in events[-1]
    assert verify_files([str(tmp_path / "audit.jsonl")]).ok


# H4: a concurrency slot whose release failed stayed taken until its lease ran out (10 to 20
# minutes by default). After any storage blip the breaker fails every call fast for
# retry_interval, so every request finishing in that window kept its slot: a caller with K
# requests in flight was locked out with 429 long after the storage was back.
async def test_slots_whose_release_failed_are_given_back_once_the_storage_answers(
    own_redis: RedisServer, sink: RecordingSink
) -> None:
    storage = LimitStorage(f"redis://127.0.0.1:{own_redis.port}/0", timeout=0.05, retry_interval=0.5)
    gate = anyio.Event()
    inside: list[int] = []

    async def held(request: Request) -> Response:
        if user_from_header(request.scope) == "alice":
            inside.append(1)
            await gate.wait()
        return JSONResponse({"ok": True})

    app = app_for(Policy(identity=USER, admit=ConcurrencyLimit(2, storage=storage), audit=sink), held)
    tally = Tally()
    async with client_for(app) as client:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                for _ in range(2):
                    group.start_soon(tally.post, client, {}, "alice")
                while len(inside) < 2:
                    await anyio.sleep(0.01)
                own_redis.signal(signal.SIGSTOP)  # a blip: one call times out...
                assert await tally.post(client, {}, "bob") == 503
                own_redis.signal(signal.SIGCONT)  # ...and the storage is back at once
                gate.set()  # alice's two requests end while the breaker still fails calls fast
            assert not storage.available
            await anyio.sleep(0.6)  # the breaker's retry interval
            assert await tally.post(client, {}, "carol") == 200  # someone's request closes the breaker
            assert await tally.post(client, {}, "alice") == 200  # not 429 for the next 10 minutes
            assert await tally.post(client, {}, "alice") == 200
    alice = [ctx.audit["throttle"]["concurrency"] for ctx in sink.events if ctx.identity.id == "user:alice"]
    assert [record.get("released") for record in alice] == [False, False, True, True]


# H7: the same for token budgets: a settlement that failed (the breaker still open after a
# blip) left the whole unused reservation charged until the window ended, a day for a
# daily budget.
async def test_settlements_that_failed_are_applied_once_the_storage_answers(
    own_redis: RedisServer, sink: RecordingSink
) -> None:
    storage = LimitStorage(f"redis://127.0.0.1:{own_redis.port}/0", timeout=0.05, retry_interval=0.5)
    gate = anyio.Event()
    inside: list[int] = []

    async def held(request: Request) -> Response:
        await request.body()
        if user_from_header(request.scope) == "alice" and not gate.is_set():
            inside.append(1)
            await gate.wait()
        request.state.airlock.report_usage(5, 5)
        return JSONResponse({"ok": True})

    budget = TokenBudget("2000/minute", storage=storage, default_max_tokens=1000)
    app = app_for(Policy(identity=USER, budget=budget, audit=sink), held)
    tally = Tally()
    async with client_for(app) as client:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(tally.post, client, {"q": "hi"}, "alice")  # reserves ~1000 of 2000
                while not inside:
                    await anyio.sleep(0.01)
                own_redis.signal(signal.SIGSTOP)
                assert await tally.post(client, {"q": "hi"}, "bob") == 503  # a blip opens the breaker
                own_redis.signal(signal.SIGCONT)
                gate.set()  # alice's request used 10 tokens; its refund fails fast
            await anyio.sleep(0.6)  # the breaker's retry interval
            assert await tally.post(client, {"q": "hi"}, "carol") == 200  # closes the breaker
            # Refunded: 10 used + 1000 reserved fits; with ~1000 still charged it would not.
            assert await tally.post(client, {"q": "hi"}, "alice") == 200
    records = [ctx.audit["budget"]["tokens"] for ctx in sink.events if ctx.identity.id == "user:alice"]
    assert records[0].get("settle_error") is True
    assert records[1]["outcome"] == "settled"


# --- the audit log's disk fills up --------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 32 KiB tmpfs (needs root and mount); skipped where it cannot be made."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=32k,mode=0755", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (no CAP_SYS_ADMIN)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_a_full_disk_mid_load_loses_no_event(tiny_disk: Path, caplog: pytest.LogCaptureFixture) -> None:
    filler = tiny_disk / "filler"
    filler.write_bytes(b"\0" * 20 * 1024)  # leaves room for a dozen events
    fallback = io.StringIO()
    path = tiny_disk / "audit.jsonl"
    audit = AuditLog(path=path, fallback=fallback, identity_key=AUDIT_KEY)
    policy = Policy(identity=USER, validate=Validate(schema={"q": {"type": "string"}}), audit=audit)
    tally = Tally()
    bodies: list[Any] = [{"q": "ok"}, {"q": 5}, {"other": 1}, [1]]
    async with client_for(app_for(policy)) as client:
        with anyio.fail_after(30), caplog.at_level(logging.ERROR, logger="airlock.audit"):
            for round_ in range(3):
                async with anyio.create_task_group() as group:
                    for index in range(60):
                        group.start_soon(tally.post, client, bodies[index % len(bodies)])
                assert await anyio.to_thread.run_sync(audit.flush)
                if round_ == 1:
                    filler.unlink()  # space is back
    await audit.shutdown()

    assert tally.statuses == {200, 422}
    assert tally.slowest < BOUND
    written = audit_lines(path)
    fell_back = [json.loads(line) for line in fallback.getvalue().splitlines() if line.startswith("{")]
    assert written  # the disk filled up only after some events...
    assert fell_back  # ...and the rest went to the fallback until space was back
    assert all(event["fallback"] is True for event in fell_back)
    ids = [event["request_id"] for event in written + fell_back]
    assert len(ids) == len(set(ids)) == len(tally.results) == 180
    stats = audit.stats()
    assert stats["lost"] == 0
    assert stats["written"] + stats["sink_failures"] == 180
    assert verify_files([str(path)]).ok  # a line cut by the full disk is ended, not merged
    assert "sink failed" in caplog.text


class Flaky(logging.Handler):
    """A sink that fails a third of the time, like a network log shipper on a bad day."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.random = random.Random(7)

    def emit(self, record: logging.LogRecord) -> None:
        if self.random.random() < 0.33:
            raise OSError(5, "Input/output error")
        self.lines.append(self.format(record))


async def test_a_sink_failing_at_random_under_concurrent_load_loses_no_event() -> None:
    handler = Flaky()
    fallback = io.StringIO()
    audit = AuditLog(handler=handler, fallback=fallback, identity_key=AUDIT_KEY)
    policy = Policy(identity=USER, max_body_bytes=64, audit=audit)
    tally = Tally()
    async with client_for(app_for(policy)) as client:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                for index in range(200):
                    body = {"q": "x" * (100 if index % 5 == 0 else 1)}  # every fifth: 413
                    group.start_soon(tally.post, client, body, f"user-{index % 7}")
    await audit.shutdown()
    assert tally.statuses == {200, 413}
    fell_back = [line for line in fallback.getvalue().splitlines() if line.startswith("{")]
    ids = [json.loads(line)["request_id"] for line in handler.lines + fell_back]
    assert len(ids) == len(set(ids)) == 200
    assert audit.stats()["lost"] == 0
    assert len(fell_back) == audit.stats()["sink_failures"] > 0


# --- a provider misbehaving in every way, for many requests at once ------------------------------


# What the client gets for each behaviour: status, and for streams whether they end with an error event.
EXPECTED = {
    "ok": (200, None),
    "stall": (504, "upstream_timeout"),
    "reset": (502, "upstream_error"),
    "garbage": (502, "upstream_error"),
    "e500": (502, "upstream_error"),
    "stream_ok": (200, None),
    "stream_stall": (200, "upstream_timeout"),
    "stream_garbage": (200, None),
    "stream_cut": (200, "upstream_error"),
}


@pytest.mark.slow
async def test_a_misbehaving_provider_under_concurrent_load() -> None:
    upstream = FakeUpstream(default=by_user_field)
    sink = RecordingSink()
    seen: list[tuple[str, int, str, float]] = []
    async with serving(upstream) as port:
        app = gateway_app(port, sink=sink, read_timeout=0.3, total_timeout=1.0, max_retries=1)
        async with lifespan(app), client_for(app, timeout=10) as client:

            async def call(behaviour: str) -> None:
                body: dict[str, Any] = {
                    "model": "gpt-test",
                    "user": behaviour,
                    "messages": [{"role": "user", "content": "hi"}],
                }
                if behaviour.startswith("stream"):
                    body["stream"] = True
                started = time.perf_counter()
                response = await client.post("/v1/chat/completions", json=body)
                seen.append((behaviour, response.status_code, response.text, time.perf_counter() - started))

            with anyio.fail_after(30):
                async with anyio.create_task_group() as group:
                    for index in range(45):
                        group.start_soon(call, list(EXPECTED)[index % len(EXPECTED)])
    assert len(seen) == 45
    for behaviour, status, text, elapsed in seen:
        expected_status, expected_code = EXPECTED[behaviour]
        assert status == expected_status, (behaviour, status, text[:200])
        assert elapsed < BOUND + 1.0, (behaviour, elapsed)  # total_timeout plus a retry's backoff
        if behaviour.startswith("stream"):
            assert text.rstrip().endswith("data: [DONE]") or expected_code is not None, (behaviour, text)
            if expected_code is not None:
                last = text.strip().splitlines()[-1]
                assert json.loads(last.removeprefix("data: "))["error"]["code"] == expected_code
        elif expected_code is not None:
            assert json.loads(text)["code"] == expected_code
    # One audit event per request, none a 500, every stream's end recorded.
    assert len(sink.events) == 45
    assert not [
        ctx for ctx in sink.events if ctx.status == 500 or (ctx.outcome == "allowed" and ctx.status is None)
    ]


# --- the shared Redis under a burst ---------------------------------------------------------------


async def test_a_burst_on_real_redis_never_admits_more_than_allowed(sink: RecordingSink) -> None:
    prefix = "hardening" + os.urandom(4).hex()
    storage = LimitStorage(redis_url(), key_prefix=prefix, timeout=1.0)
    gate = anyio.Event()
    inside: list[int] = []

    async def held(request: Request) -> Response:
        inside.append(1)
        await gate.wait()
        request.state.airlock.report_usage(10, 10)
        return JSONResponse({"ok": True})

    policy = Policy(
        identity=USER,
        admit=ConcurrencyLimit(3, storage=storage),
        budget=TokenBudget("1000/minute", storage=storage, default_max_tokens=200),
        audit=sink,
    )
    tally = Tally()
    async with client_for(app_for(policy, held)) as client:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                for _ in range(30):
                    group.start_soon(tally.post, client, {"q": "hi"})
                while len(tally.results) < 27:
                    await anyio.sleep(0.01)
                assert len(inside) == 3  # three slots, however many arrive at once
                gate.set()
            for _ in range(3):  # every slot was given back
                assert await tally.post(client, {"q": "hi"}) == 200
    await storage.shutdown()
    codes = sorted(code or "ok" for _, code, _ in tally.results)
    assert codes.count("too_many_concurrent_requests") == 27
    assert codes.count("ok") == 6
    assert len(sink.events) == 33
