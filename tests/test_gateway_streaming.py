"""Streamed chat completions: forwarded as they arrive, usage settled, disconnects cancel upstream."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from airlock.gateway import create_app

from fake_upstream import (
    DONE,
    FakeUpstream,
    chunk,
    gateway_app,
    lifespan,
    respond,
    serving,
    stall,
    stream,
    with_audit,
)
from helpers import RecordingSink, http_scope

pytestmark = pytest.mark.anyio

CHAT = {"model": "gpt-test", "stream": True, "messages": [{"role": "user", "content": "say hello"}]}
EVENTS = [chunk("Hel"), chunk("lo"), chunk(finish="stop"), chunk(usage=(5, 2)), DONE]


class StreamingClient:
    """A client driving the app over raw ASGI: sees each body message as it is sent, can hang up."""

    def __init__(self, document: Any) -> None:
        self.body = json.dumps(document).encode()
        self.sent: list[dict[str, Any]] = []
        self.leave = anyio.Event()
        self.got_data = anyio.Event()
        self._requested = False

    async def receive(self) -> dict[str, Any]:
        if not self._requested:
            self._requested = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self.leave.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        if message["type"] == "http.response.body" and message.get("body"):
            self.got_data.set()

    async def run(self, app: Any) -> None:
        scope = http_scope("POST", "/v1/chat/completions")
        await app(scope, self.receive, self.send)

    @property
    def status(self) -> int:
        return next(m["status"] for m in self.sent if m["type"] == "http.response.start")

    @property
    def headers(self) -> dict[str, str]:
        start = next(m for m in self.sent if m["type"] == "http.response.start")
        return {k.decode(): v.decode() for k, v in start["headers"]}

    @property
    def data(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")

    def events(self) -> list[Any]:
        parts = [p for p in self.data.split(b"\n\n") if p.startswith(b"data: ")]
        return [p[6:].decode() if p[6:] == b"[DONE]" else json.loads(p[6:]) for p in parts]


def text_of(events: list[Any]) -> str:
    return "".join(
        e["choices"][0]["delta"].get("content", "")
        for e in events
        if isinstance(e, dict) and e.get("choices")
    )


async def test_chunks_are_forwarded_as_they_arrive() -> None:
    gate = anyio.Event()
    upstream = FakeUpstream(stream(EVENTS, gate=gate, gate_after=1))
    client = StreamingClient(CHAT)
    async with serving(upstream) as port:
        app = gateway_app(port)
        async with lifespan(app), anyio.create_task_group() as group:
            group.start_soon(client.run, app)
            # The upstream holds everything after the first event until the client has seen it:
            # a gateway that buffered the stream would never get here.
            with anyio.fail_after(5):
                await client.got_data.wait()
            assert b"Hel" in client.data
            assert b"lo" not in client.data
            gate.set()
    assert client.status == 200
    assert client.headers["content-type"].startswith("text/event-stream")
    assert client.headers["cache-control"] == "no-store"
    assert text_of(client.events()) == "Hello"
    assert client.events()[-1] == "[DONE]"


async def test_usage_is_settled_from_the_final_chunk_and_hidden_unless_asked() -> None:
    upstream = FakeUpstream(stream(EVENTS), stream(EVENTS))
    sink = RecordingSink()
    plain, asking = (
        StreamingClient(CHAT),
        StreamingClient({**CHAT, "stream_options": {"include_usage": True}}),
    )
    async with serving(upstream) as port:
        app = gateway_app(port, sink=sink)
        async with lifespan(app):
            await plain.run(app)
            await asking.run(app)
    # The upstream was asked for usage both times, whatever the client asked.
    for received in upstream.received:
        assert received.json()["stream_options"] == {"include_usage": True}
        assert received.json()["stream"] is True
    assert all(e == "[DONE]" or e["choices"] for e in plain.events())
    assert asking.events()[-2]["usage"]["total_tokens"] == 7
    for ctx in sink.events:
        assert ctx.usage is not None
        assert (ctx.usage.prompt_tokens, ctx.usage.completion_tokens) == (5, 2)
        assert ctx.outcome == "allowed"
        assert ctx.audit["provider"]["stream"] is True


async def test_client_disconnect_cancels_the_upstream_request() -> None:
    never = anyio.Event()
    upstream = FakeUpstream(stream(EVENTS, gate=never, gate_after=1))
    sink = RecordingSink()
    client = StreamingClient(CHAT)
    async with serving(upstream) as port:
        app = gateway_app(port, sink=sink)
        async with lifespan(app), anyio.create_task_group() as group:
            group.start_soon(client.run, app)
            with anyio.fail_after(5):
                await client.got_data.wait()
                client.leave.set()
                # The upstream learns the caller hung up: the provider stops generating.
                await upstream.disconnected.wait()
    (ctx,) = sink.events
    assert ctx.outcome == "abandoned"
    assert ctx.client_disconnected
    assert len(upstream.received) == 1


async def test_client_disconnect_while_waiting_is_not_retried() -> None:
    upstream = FakeUpstream(stall(), respond(503, {}, headers={"retry-after-ms": "300"}))
    sink = RecordingSink()
    client = StreamingClient({**CHAT, "stream": False})
    async with serving(upstream) as port:
        app = gateway_app(port, sink=sink, max_retries=3)
        async with lifespan(app), anyio.create_task_group() as group:
            group.start_soon(client.run, app)
            with anyio.fail_after(5):
                while not upstream.received:
                    await anyio.sleep(0.01)
                client.leave.set()
                await upstream.disconnected.wait()
        await anyio.sleep(0.5)  # longer than any backoff: a retry would have arrived by now
    assert len(upstream.received) == 1
    assert [m for m in client.sent if m["type"] == "http.response.start"] == []
    (ctx,) = sink.events
    assert ctx.outcome == "abandoned"


async def test_failure_mid_stream_ends_the_stream_with_an_error_event() -> None:
    sink = RecordingSink()
    client = StreamingClient(CHAT)

    async def broken_stream(up: Any, received: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        await send({"type": "http.response.body", "body": chunk("partial"), "more_body": True})
        raise RuntimeError("drop the connection")

    upstream = FakeUpstream(broken_stream)
    async with serving(upstream) as port:
        app = gateway_app(port, sink=sink)
        async with lifespan(app):
            await client.run(app)
    assert client.status == 200
    events = client.events()
    assert text_of(events) == "partial"
    assert events[-1]["error"]["code"] == "upstream_error"
    assert client.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    (ctx,) = sink.events
    assert ctx.outcome == "error"
    assert ctx.audit["provider"]["error"] == "upstream_error"


async def test_a_stalled_stream_ends_with_a_timeout_event() -> None:
    never = anyio.Event()
    upstream = FakeUpstream(stream(EVENTS, gate=never, gate_after=1))
    client = StreamingClient(CHAT)
    async with serving(upstream) as port:
        app = gateway_app(port, read_timeout=0.3)
        async with lifespan(app):
            with anyio.fail_after(5):
                await client.run(app)
    assert client.events()[-1]["error"]["code"] == "upstream_timeout"


async def test_a_refusal_before_streaming_is_passed_on_as_json() -> None:
    error = {
        "error": {"message": "model not found", "type": "invalid_request_error", "code": "model_not_found"}
    }
    upstream = FakeUpstream(respond(404, error), respond(503, {}), respond(503, {}))
    refused, failed = StreamingClient(CHAT), StreamingClient(CHAT)
    async with serving(upstream) as port:
        app = gateway_app(port, max_retries=1)
        async with lifespan(app):
            await refused.run(app)
            await failed.run(app)
    assert refused.status == 404
    assert json.loads(refused.data) == error
    assert failed.status == 502
    assert failed.headers["content-type"] == "application/problem+json"
    assert json.loads(failed.data)["code"] == "upstream_error"


async def test_echo_streams_the_user_text_word_by_word() -> None:
    sink = RecordingSink()
    app = with_audit(create_app(), sink)
    client = StreamingClient(
        {"model": "echo", "stream": True, "messages": [{"role": "user", "content": "a b c"}]}
    )
    await client.run(app)
    events = client.events()
    assert text_of(events) == "a b c"
    assert len([e for e in events if isinstance(e, dict) and e["choices"]]) >= 4
    (ctx,) = sink.events
    assert ctx.usage is not None
    assert ctx.usage.completion_tokens > 0
