"""Load: hundreds of concurrent mixed requests, exactly one event each, and the chain verifies."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from airlock import AirlockMiddleware, Context, Policy
from airlock.audit import AuditLog, verify_files
from airlock.cli import main
from airlock.errors import RateLimited, ValidationFailed

from helpers import RawExchange, http_scope

pytestmark = pytest.mark.anyio

CHAIN_KEY = "chain-key-for-the-load-test-0123456789"
KINDS = ("accepted", "too_large", "invalid", "limited", "abandoned", "stream_abandoned")
EXPECTED = {
    "accepted": ("allowed", 200),
    "too_large": ("rejected", 413),
    "invalid": ("rejected", 422),
    "limited": ("rejected", 429),
    "abandoned": ("abandoned", None),
    "stream_abandoned": ("allowed", 200),
}


class LimitFlagged:
    """Stands in for the throttle: refuses requests that carry ``x-test-limit``."""

    async def __call__(self, ctx: Context) -> None:
        await anyio.lowlevel.checkpoint()
        if any(name == b"x-test-limit" for name, _ in ctx.scope["headers"]):
            ctx.audit["throttle"] = {"remaining": 0, "limit": "1/minute"}
            raise RateLimited(headers={"Retry-After": "60"})
        ctx.audit["throttle"] = {"remaining": 1, "limit": "1/minute"}


class RejectFlagged:
    """Stands in for validation: refuses documents with an ``invalid`` member."""

    async def __call__(self, ctx: Context) -> None:
        if isinstance(ctx.json, dict) and "invalid" in ctx.json:
            raise ValidationFailed(extensions={"errors": [{"path": "invalid", "rule": "unknown"}]})


async def chat(request: Request) -> Response:
    await anyio.sleep(0.001)
    ctx: Context = request.state.airlock
    ctx.report_usage(5, 7, provider="echo", model="echo-1")
    return JSONResponse({"ok": True})


async def stream(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(1000):
            yield b"data: x\n\n"
            await anyio.sleep(0.002)

    return StreamingResponse(chunks(), media_type="text/event-stream")


def messages(kind: str) -> list[Any]:
    small = {"type": "http.request", "body": b'{"q": "hello"}', "more_body": False}
    if kind in ("accepted", "limited"):
        return [0.0, small]
    if kind == "invalid":
        return [0.0, {"type": "http.request", "body": b'{"invalid": 1}', "more_body": False}]
    if kind == "too_large":
        chunk = {"type": "http.request", "body": b" " * 600, "more_body": True}
        return [chunk, 0.0, chunk, chunk, {"type": "http.request", "body": b"{}", "more_body": False}]
    if kind == "abandoned":
        return [
            {"type": "http.request", "body": b'{"q": ', "more_body": True},
            0.001,
            {"type": "http.disconnect"},
        ]
    # stream_abandoned: a whole request, then the client leaves while the reply streams.
    return [small, 0.02, {"type": "http.disconnect"}]


async def one_request(app: Any, index: int, kind: str, results: dict[str, tuple[str, int | None]]) -> None:
    request_id = f"load-{index}"
    headers = [("content-type", "application/json"), ("x-request-id", request_id)]
    if kind == "limited":
        headers.append(("x-test-limit", "1"))
    path = "/v1/stream" if kind == "stream_abandoned" else "/v1/chat"
    scope = http_scope(path=path, headers=headers)
    scope["app"] = app
    if kind == "stream_abandoned":
        # ASGI 2.3: Starlette's StreamingResponse listens for http.disconnect and stops.
        scope["asgi"]["spec_version"] = "2.3"
    exchange = RawExchange(messages(kind))
    with anyio.fail_after(20):
        await app(scope, exchange.receive, exchange.send)
    results[request_id] = (kind, exchange.status)


class Lifespan:
    """Drives an app's ASGI lifespan like a server: startup, then later shutdown."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.to_app, self.app_inbox = anyio.create_memory_object_stream[dict[str, Any]](4)
        self.app_outbox, self.from_app = anyio.create_memory_object_stream[dict[str, Any]](4)

    async def run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        await self.app(scope, self.app_inbox.receive, self.app_outbox.send)

    async def step(self, message: str) -> None:
        await self.to_app.send({"type": message})
        assert (await self.from_app.receive())["type"] == f"{message}.complete"


@pytest.mark.slow
async def test_hundreds_of_concurrent_mixed_requests_leave_exactly_one_event_each(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path=path, chain_key=CHAIN_KEY, identity_key="identity-key-0123456789")
    policy = Policy(max_body_bytes=1024, admit=LimitFlagged(), validate=RejectFlagged(), audit=audit)
    app = Starlette(
        routes=[Route("/v1/chat", chat, methods=["POST"]), Route("/v1/stream", stream, methods=["POST"])],
        middleware=[Middleware(AirlockMiddleware, policy=policy)],
    )
    total = 600
    results: dict[str, tuple[str, int | None]] = {}
    lifespan = Lifespan(app)
    async with anyio.create_task_group() as server:
        server.start_soon(lifespan.run)
        await lifespan.step("lifespan.startup")
        async with anyio.create_task_group() as tg:
            for index in range(total):
                tg.start_soon(one_request, app, index, KINDS[index % len(KINDS)], results)
        await lifespan.step("lifespan.shutdown")

    assert len(results) == total
    for kind, status in results.values():
        assert status == EXPECTED[kind][1], kind

    events = [json.loads(line) for line in path.read_text().splitlines()]
    counts = Counter(event["request_id"] for event in events)
    assert set(counts) == set(results)
    assert set(counts.values()) == {1}, "a request was audited more than once"
    for event in events:
        kind = results[event["request_id"]][0]
        assert (event["outcome"], event["status"]) == EXPECTED[kind], (kind, event)
        if kind == "stream_abandoned":
            assert event["disconnected"] is True
        if kind == "invalid":
            assert event["validation"] == [{"path": "invalid", "rule": "unknown"}]
    assert Counter(results[e["request_id"]][0] for e in events) == dict.fromkeys(KINDS, total // len(KINDS))

    assert audit.stats() == {"recorded": total, "written": total, "sink_failures": 0, "lost": 0, "pending": 0}
    report = verify_files([str(path)], key=CHAIN_KEY.encode())
    assert report.ok, report.failure
    assert report.events == total
    assert len(report.chains) == 1
    assert main(["audit", "verify", "--key-env", "LOAD_TEST_KEY", str(path)]) == 2  # keyed: needs the key
