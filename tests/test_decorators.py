"""Per-route decorator: runs the engine itself when no middleware is installed, once when one is."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from airlock import AirlockMiddleware, Context, Policy, protect
from airlock.decorators import ProtectedEndpoint

from helpers import RecordingSink, client_for

pytestmark = pytest.mark.anyio


async def test_decorator_alone_checks_and_audits(sink: RecordingSink) -> None:
    @protect(policy=Policy(audit=sink), max_body_bytes=20)
    async def chat(request: Request) -> JSONResponse:
        ctx: Context = request.state.airlock
        return JSONResponse({"json": ctx.json})

    async def open_route(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(len(await request.body())))

    app = Starlette(
        routes=[Route("/chat", chat, methods=["POST"]), Route("/open", open_route, methods=["POST"])]
    )
    async with client_for(app) as client:
        ok = await client.post("/chat", json={"a": 1})
        big = await client.post("/chat", json={"a": "x" * 50})
        bad = await client.post("/chat", content=b"{", headers={"content-type": "application/json"})
        wrong_method = await client.get("/chat")
        untouched = await client.post("/open", content=b"x" * 50)
    assert ok.json() == {"json": {"a": 1}}
    assert big.status_code == 413
    assert bad.json()["code"] == "invalid_json"
    assert wrong_method.status_code == 405
    assert untouched.text == "50"
    assert [e.status for e in sink.events] == [200, 413, 400]
    assert [e.route for e in sink.events] == ["/chat"] * 3


async def test_decorator_under_middleware_runs_the_checks_once(sink: RecordingSink) -> None:
    calls: list[int] = []

    class Count:
        async def __call__(self, ctx: Context) -> None:
            calls.append(1)

    @protect(max_body_bytes=1000)
    async def chat(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/chat", chat, methods=["POST"])])
    app.add_middleware(AirlockMiddleware, policy=Policy(admit=Count(), audit=sink))
    async with client_for(app) as client:
        await client.post("/chat", json={})
    assert calls == [1]
    assert len(sink.events) == 1


async def test_decorating_an_asgi_app_and_bare_decorator() -> None:
    class Raw:
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            await PlainTextResponse("raw")(scope, receive, send)

    protected = protect(max_body_bytes=5)(Raw())  # type: ignore[arg-type]
    assert isinstance(protected, ProtectedEndpoint)

    @protect
    async def bare(request: Request) -> PlainTextResponse:
        return PlainTextResponse("bare")

    app = Starlette(
        routes=[Route("/raw", protected, methods=["POST"]), Route("/bare", bare, methods=["POST"])]
    )
    async with client_for(app) as client:
        assert (await client.post("/raw", json={})).text == "raw"
        assert (await client.post("/raw", json={"long": 1})).status_code == 413
        assert (await client.post("/bare", json={})).text == "bare"
    assert bare.__name__ == "bare"
