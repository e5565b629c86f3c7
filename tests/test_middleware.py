"""AirlockMiddleware: pass-through, streaming, route overrides, exactly one audit call, rewrites."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket

from airlock import AirlockMiddleware, ConfigurationError, Context, Policy, exempt, protect
from airlock.errors import RateLimited

from helpers import Lifespan, RawExchange, RecordingSink, client_for, http_scope

pytestmark = pytest.mark.anyio


async def chat(request: Request) -> JSONResponse:
    ctx: Context = request.state.airlock
    return JSONResponse({"json": ctx.json, "body": (await request.body()).decode()})


@protect(max_body_bytes=10)
async def tiny(request: Request) -> PlainTextResponse:
    return PlainTextResponse("tiny")


@exempt
async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok", headers={"x-has-airlock": str(hasattr(request.state, "airlock"))})


async def stream(request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for index in range(3):
            yield f"data: {index}\n\n".encode()

    return StreamingResponse(chunks(), media_type="text/event-stream")


async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("hello")
    await websocket.close()


def make_app(sink: RecordingSink, **policy: Any) -> Starlette:
    inner = Starlette(routes=[Route("/chat", chat, methods=["POST"])])
    return Starlette(
        routes=[
            Route("/chat", chat, methods=["POST"]),
            Route("/tiny", tiny, methods=["POST"]),
            Route("/health", health),
            Route("/stream", stream),
            Route("/items/{item_id}", chat, methods=["POST"]),
            Mount("/api", app=inner),
            WebSocketRoute("/ws", ws),
        ],
        middleware=[Middleware(AirlockMiddleware, policy=Policy(audit=sink, **policy))],
    )


async def test_checked_content_reaches_the_handler_once(sink: RecordingSink) -> None:
    async with client_for(make_app(sink)) as client:
        response = await client.post("/chat", json={"q": "hi"})
    assert response.status_code == 200
    assert response.json()["json"] == {"q": "hi"}
    assert json.loads(response.json()["body"]) == {"q": "hi"}
    assert [e.outcome for e in sink.events] == ["allowed"]
    assert sink.events[0].route == "/chat"
    assert sink.events[0].status == 200


async def test_route_override_merges_over_app_policy(sink: RecordingSink) -> None:
    async with client_for(make_app(sink, max_body_bytes=1000)) as client:
        small = await client.post("/tiny", content=b"{}", headers={"content-type": "application/json"})
        large = await client.post("/tiny", json={"q": "x" * 20})
        big_elsewhere = await client.post("/chat", json={"q": "x" * 20})
    assert small.status_code == 200
    assert large.status_code == 413
    assert big_elsewhere.status_code == 200
    # The override changed only the cap: the app's audit sink still saw every request.
    assert len(sink.events) == 3


async def test_exempt_route_is_untouched_and_unaudited(sink: RecordingSink) -> None:
    async with client_for(make_app(sink)) as client:
        response = await client.get("/health")
    assert response.text == "ok"
    assert response.headers["x-has-airlock"] == "False"
    assert "x-request-id" not in response.headers
    assert sink.events == []


async def test_path_routes_override_and_exempt(sink: RecordingSink) -> None:
    async def raw(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"{len(await request.body())} {hasattr(request.state, 'airlock')}")

    app = Starlette(
        routes=[Route("/chat", chat, methods=["POST"]), Route("/other", raw, methods=["POST"])],
        middleware=[
            Middleware(
                AirlockMiddleware,
                policy=Policy(audit=sink),
                routes={"/chat": {"max_body_bytes": 5}, "/other": None},
            )
        ],
    )
    async with client_for(app) as client:
        capped = await client.post("/chat", json={"q": "hello"})
        free = await client.post("/other", content=b"not json", headers={"content-type": "text/plain"})
    assert capped.status_code == 413
    assert free.text == "8 False"
    assert len(sink.events) == 1


async def test_mounted_and_parametrised_routes_get_their_template(sink: RecordingSink) -> None:
    async with client_for(make_app(sink)) as client:
        await client.post("/api/chat", json={})
        await client.post("/items/42", json={})
        await client.post("/nowhere", json={})
    assert [e.route for e in sink.events] == ["/api/chat", "/items/{item_id}", None]
    assert [e.status for e in sink.events] == [200, 200, 404]


async def test_streaming_response_passes_chunk_by_chunk(sink: RecordingSink) -> None:
    app = make_app(sink)
    exchange = RawExchange([{"type": "http.request", "body": b"", "more_body": False}])
    scope = http_scope(method="GET", path="/stream", headers=[], app=app)
    await app(scope, exchange.receive, exchange.send)
    kinds = [m["type"] for m in exchange.sent]
    assert kinds.count("http.response.start") == 1
    bodies = [m["body"] for m in exchange.sent if m["type"] == "http.response.body" and m.get("body")]
    assert bodies == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n"]
    assert "x-request-id" in exchange.headers
    assert sink.events[0].bytes_out == sum(len(b) for b in bodies)


async def test_websocket_passes_through(sink: RecordingSink) -> None:
    app = make_app(sink)
    exchange = RawExchange([{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000}])
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "path": "/ws",
        "raw_path": b"/ws",
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "scheme": "ws",
        "client": ("127.0.0.1", 5),
        "server": ("testserver", 80),
        "subprotocols": [],
    }
    await app(scope, exchange.receive, exchange.send)
    assert [m["type"] for m in exchange.sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert exchange.sent[1]["text"] == "hello"
    assert sink.events == []


async def test_request_id_is_taken_when_well_formed_and_returned(sink: RecordingSink) -> None:
    async with client_for(make_app(sink)) as client:
        given = await client.post("/chat", json={}, headers={"x-request-id": "req-123.abc"})
        forged = await client.post("/chat", json={}, headers={"x-request-id": "bad id\r\nx"})
        rejected = await client.post("/chat", content=b"{", headers={"content-type": "application/json"})
    assert given.headers["x-request-id"] == "req-123.abc"
    assert forged.headers["x-request-id"] != "bad id\r\nx"
    assert len(forged.headers["x-request-id"]) == 32
    assert rejected.headers["x-request-id"] == rejected.json()["request_id"]
    assert next(e.request_id for e in sink.events) == "req-123.abc"


class Rewrite:
    """A stage that changes the document, as sanitize/anonymize stages do."""

    async def __call__(self, ctx: Context) -> None:
        ctx.json["q"] = "[REDACTED]"
        ctx.mark_modified()


async def test_modified_document_is_what_the_app_receives(sink: RecordingSink) -> None:
    async with client_for(make_app(sink, anonymize=Rewrite())) as client:
        response = await client.post("/chat", json={"q": "jane@example.com", "n": 1})
    assert response.json()["json"] == {"q": "[REDACTED]", "n": 1}
    assert json.loads(response.json()["body"]) == {"q": "[REDACTED]", "n": 1}
    assert "jane@example.com" not in response.text


class Refuse:
    async def __call__(self, ctx: Context) -> None:
        ctx.add_response_header("X-Test-Limit", "3")
        raise RateLimited(headers={"Retry-After": "7"})


async def test_stage_rejection_carries_stage_headers(sink: RecordingSink) -> None:
    async with client_for(make_app(sink, admit=Refuse())) as client:
        response = await client.post("/chat", json={})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.headers["x-test-limit"] == "3"
    assert sink.events[0].stage == "admit"
    assert sink.events[0].problem is not None
    assert sink.events[0].problem.code == "rate_limited"


class Swap:
    """A body filter that replaces a token, holding back a possible partial match."""

    def __init__(self) -> None:
        self.tail = b""

    def begin(self, status: int, headers: list[tuple[bytes, bytes]]) -> bool:
        return True

    def feed(self, chunk: bytes) -> bytes:
        data = (self.tail + chunk).replace(b"<P1>", b"jane@example.com")
        cut = data.rfind(b"<")
        if cut != -1 and b">" not in data[cut:]:
            self.tail, data = data[cut:], data[:cut]
        else:
            self.tail = b""
        return data

    def flush(self) -> bytes:
        tail, self.tail = self.tail, b""
        return tail


class InstallFilter:
    async def __call__(self, ctx: Context) -> None:
        ctx.body_filter = Swap()


async def test_body_filter_fixes_content_length(sink: RecordingSink) -> None:
    async def reply(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello <P1>!")

    app = Starlette(routes=[Route("/r", reply, methods=["POST"])])
    app.add_middleware(AirlockMiddleware, policy=Policy(budget=InstallFilter(), audit=sink))
    async with client_for(app) as client:
        response = await client.post("/r", json={})
    assert response.text == "hello jane@example.com!"
    assert response.headers["content-length"] == str(len(response.content))


async def test_body_filter_on_a_stream_drops_content_length_and_joins_split_tokens() -> None:
    async def reply(request: Request) -> StreamingResponse:
        async def parts() -> AsyncIterator[bytes]:
            for part in (b"a <P", b"1> b", b" <P1>"):
                yield part

        return StreamingResponse(parts(), media_type="text/plain", headers={"content-length": "13"})

    app = Starlette(routes=[Route("/r", reply, methods=["POST"])])
    app.add_middleware(AirlockMiddleware, policy=Policy(budget=InstallFilter()))
    exchange = RawExchange([{"type": "http.request", "body": b"{}", "more_body": False}])
    await app(http_scope(path="/r", app=app), exchange.receive, exchange.send)
    assert "content-length" not in exchange.headers
    assert exchange.body == b"a jane@example.com b jane@example.com"


async def test_app_error_is_audited_once_and_reraised(sink: RecordingSink) -> None:
    async def boom(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("handler bug")

    app = AirlockMiddleware(boom, policy=Policy(json=False, audit=sink))
    exchange = RawExchange([{"type": "http.request", "body": b"", "more_body": False}])
    with pytest.raises(RuntimeError):
        await app(http_scope(), exchange.receive, exchange.send)
    assert [(e.outcome, e.status) for e in sink.events] == [("error", 500)]


async def test_cancelled_request_still_runs_finalizers_and_audit(sink: RecordingSink) -> None:
    released: list[str] = []

    class Slot:
        async def __call__(self, ctx: Context) -> None:
            async def release(ctx: Context) -> None:
                await anyio.lowlevel.checkpoint()  # must survive the cancellation
                released.append(ctx.request_id)

            ctx.defer(release)

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        await anyio.sleep(10)

    app = AirlockMiddleware(slow, policy=Policy(json=False, admit=Slot(), audit=sink))
    exchange = RawExchange([{"type": "http.request", "body": b"", "more_body": False}])
    with anyio.move_on_after(0.1):
        await app(http_scope(), exchange.receive, exchange.send)
    assert len(released) == 1
    assert len(sink.events) == 1


async def test_lifespan_calls_component_hooks_once() -> None:
    calls: list[str] = []

    class Component:
        async def __call__(self, ctx: Context) -> None:
            return None

        async def startup(self) -> None:
            calls.append("startup")

        async def shutdown(self) -> None:
            calls.append("shutdown")

    component = Component()
    app = Starlette(
        middleware=[Middleware(AirlockMiddleware, policy=Policy(admit=component, budget=component))],
    )
    async with Lifespan(app):
        assert calls == ["startup"]
    assert calls == ["startup", "shutdown"]


def test_bad_configuration_fails_at_start_up() -> None:
    with pytest.raises(ConfigurationError):
        AirlockMiddleware(PlainTextResponse("x"), policy=Policy(max_body_bytes=-1))
    with pytest.raises(ConfigurationError):
        AirlockMiddleware(PlainTextResponse("x"), routes={"/a": {"no_such_option": 1}})
    with pytest.raises(ConfigurationError):
        protect(max_body_size=5)


async def test_rejecting_stage_is_timed(sink: RecordingSink) -> None:
    async with client_for(make_app(sink, admit=Refuse())) as client:
        await client.post("/chat", json={})
    assert set(sink.events[0].timings) == {"identify", "admit"}


async def test_send_failing_marks_the_client_as_gone(sink: RecordingSink) -> None:
    async def reply(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x", "more_body": True})

    app = AirlockMiddleware(reply, policy=Policy(json=False, audit=sink))
    exchange = RawExchange([{"type": "http.request", "body": b"", "more_body": False}])

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            raise OSError("client gone")  # what ASGI 2.4 servers raise after a disconnect
        await exchange.send(message)

    with pytest.raises(OSError):
        await app(http_scope(), exchange.receive, send)
    assert sink.events[0].client_disconnected is True
