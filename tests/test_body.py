"""Reading the body: caps (with and without Content-Length), deadlines, disconnects, replay."""

from __future__ import annotations

from typing import Any

import pytest

from airlock import AirlockMiddleware, Policy

from helpers import RawExchange, RecordingSink, http_scope

pytestmark = pytest.mark.anyio


class Handler:
    """A raw ASGI app that records whether it ran and what body it received."""

    def __init__(self) -> None:
        self.calls = 0
        self.body = b""
        self.after_body: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.calls += 1
        while True:
            message = await receive()
            self.body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})


def guarded(handler: Handler, sink: RecordingSink, **options: Any) -> AirlockMiddleware:
    options.setdefault("linger_seconds", 0.05)
    return AirlockMiddleware(handler, policy=Policy(json=False, audit=sink, **options))


async def test_chunked_upload_over_cap_is_refused_after_cap_plus_one_chunk(sink: RecordingSink) -> None:
    cap = 64 * 1024
    chunk = 16 * 1024
    total = 50 * 1024 * 1024
    handler = Handler()
    app = guarded(handler, sink, max_body_bytes=cap)
    chunks = (
        {"type": "http.request", "body": b"x" * chunk, "more_body": True} for _ in range(total // chunk)
    )
    exchange = RawExchange(chunks)
    pulled_at_answer: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            pulled_at_answer.append(exchange.bytes_pulled)
        await exchange.send(message)

    scope = http_scope(
        headers=[("content-type", "application/octet-stream"), ("transfer-encoding", "chunked")]
    )
    await app(scope, exchange.receive, send)

    assert exchange.status == 413
    assert exchange.json()["code"] == "body_too_large"
    assert pulled_at_answer[0] <= cap + chunk
    # Afterwards only the bounded lingering discard, never the 50 MB.
    assert exchange.bytes_pulled <= cap + chunk + Policy().linger_bytes + chunk
    assert handler.calls == 0
    assert [e.outcome for e in sink.events] == ["rejected"]
    assert sink.events[0].stage == "read_body"


async def test_declared_length_over_cap_is_refused_before_reading(sink: RecordingSink) -> None:
    handler = Handler()
    app = guarded(handler, sink, max_body_bytes=1000)
    exchange = RawExchange([{"type": "http.request", "body": b"x" * 10, "more_body": True}])
    pulled_at_answer: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            pulled_at_answer.append(exchange.receive_calls)
        await exchange.send(message)

    scope = http_scope(headers=[("content-length", "5000000")])
    await app(scope, exchange.receive, send)

    assert exchange.status == 413
    assert pulled_at_answer == [0]  # answered before a single receive()
    assert exchange.headers["connection"] == "close"
    assert handler.calls == 0


async def test_refusal_with_unread_body_lingers_then_closes(sink: RecordingSink) -> None:
    # The client keeps sending after the refusal: airlock discards a bounded amount for a
    # bounded time (lingering close), then ends the response so the server closes.
    handler = Handler()
    app = guarded(handler, sink, max_body_bytes=10, linger_seconds=0.3, linger_bytes=100)
    endless = ({"type": "http.request", "body": b"y" * 30, "more_body": True} for _ in range(10_000))
    exchange = RawExchange(endless)
    await app(http_scope(), exchange.receive, exchange.send)
    assert exchange.status == 413
    assert exchange.bytes_pulled <= 10 + 30 + 100 + 30
    assert exchange.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


async def test_body_at_exactly_the_cap_is_accepted(sink: RecordingSink) -> None:
    handler = Handler()
    app = guarded(handler, sink, max_body_bytes=10)
    exchange = RawExchange(
        [
            {"type": "http.request", "body": b"12345", "more_body": True},
            {"type": "http.request", "body": b"67890", "more_body": False},
        ]
    )
    await app(http_scope(), exchange.receive, exchange.send)
    assert exchange.status == 200
    assert handler.body == b"1234567890"


async def test_stalled_body_gets_408(sink: RecordingSink) -> None:
    handler = Handler()
    app = guarded(handler, sink, body_timeout=0.2)
    exchange = RawExchange([{"type": "http.request", "body": b"{", "more_body": True}])  # then stalls
    await app(http_scope(), exchange.receive, exchange.send)
    assert exchange.status == 408
    assert exchange.json()["code"] == "body_timeout"
    assert handler.calls == 0


async def test_trickled_body_past_the_deadline_gets_408(sink: RecordingSink) -> None:
    # Each byte arrives well within any per-chunk timeout; the deadline covers the whole body.
    handler = Handler()
    app = guarded(handler, sink, body_timeout=0.3)
    trickle: list[Any] = []
    for _ in range(50):
        trickle += [0.02, {"type": "http.request", "body": b"a", "more_body": True}]
    exchange = RawExchange(trickle)
    await app(http_scope(), exchange.receive, exchange.send)
    assert exchange.status == 408


async def test_client_disconnect_mid_body_never_reaches_handler(sink: RecordingSink) -> None:
    handler = Handler()
    app = guarded(handler, sink)
    exchange = RawExchange(
        [
            {"type": "http.request", "body": b"abc", "more_body": True},
            {"type": "http.disconnect"},
        ]
    )
    await app(http_scope(), exchange.receive, exchange.send)
    assert handler.calls == 0
    assert exchange.sent == []
    assert len(sink.events) == 1
    assert sink.events[0].outcome == "abandoned"


async def test_app_sees_body_once_then_the_real_receive() -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(await receive())
        seen.append(await receive())  # must reach the server: here, the disconnect
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    guarded_app = AirlockMiddleware(app, policy=Policy(json=False))
    exchange = RawExchange(
        [
            {"type": "http.request", "body": b"ab", "more_body": True},
            {"type": "http.request", "body": b"cd", "more_body": False},
            {"type": "http.disconnect"},
        ]
    )
    await guarded_app(http_scope(), exchange.receive, exchange.send)
    assert seen[0] == {"type": "http.request", "body": b"abcd", "more_body": False}
    assert seen[1] == {"type": "http.disconnect"}


@pytest.mark.parametrize(
    "value", [b"abc", b"-1", b"+5", b"1_0", "١٢".encode(), b"99999999999999999999999", b""]
)
async def test_malformed_content_length_gets_400(value: bytes, sink: RecordingSink) -> None:
    handler = Handler()
    app = guarded(handler, sink)
    exchange = RawExchange([{"type": "http.request", "body": b"", "more_body": False}])
    await app(http_scope(headers=[("content-length", value)]), exchange.receive, exchange.send)
    assert exchange.status == 400
    assert exchange.json()["code"] == "invalid_content_length"


async def test_body_shorter_than_declared_length_gets_400(sink: RecordingSink) -> None:
    handler = Handler()
    app = guarded(handler, sink)
    exchange = RawExchange([{"type": "http.request", "body": b"abc", "more_body": False}])
    await app(http_scope(headers=[("content-length", "10")]), exchange.receive, exchange.send)
    assert exchange.status == 400
    assert handler.calls == 0


async def test_outer_cancellation_while_reading_is_not_a_timeout(sink: RecordingSink) -> None:
    import anyio

    handler = Handler()
    app = guarded(handler, sink, body_timeout=0.2)
    exchange = RawExchange([{"type": "http.request", "body": b"{", "more_body": True}])
    with anyio.move_on_after(0.05) as scope:
        await app(http_scope(), exchange.receive, exchange.send)
    assert scope.cancelled_caught
    assert exchange.sent == []  # no 408: the request was cancelled from outside first
    assert [e.outcome for e in sink.events] == ["abandoned"]
