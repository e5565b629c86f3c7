"""Parsing: media types, UTF-8, strict JSON, depth; every refusal is problem+json with a stable code."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from airlock import AirlockMiddleware, Policy

from helpers import RecordingSink, client_for

pytestmark = pytest.mark.anyio


def make_app(sink: RecordingSink, **options: Any) -> tuple[Starlette, list[Any]]:
    received: list[Any] = []

    async def echo(request: Request) -> JSONResponse:
        document = await request.json()
        received.append(document)
        return JSONResponse({"ok": True, "checked": request.state.airlock.json == document})

    async def status(request: Request) -> JSONResponse:
        received.append(None)
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[
            Route("/echo", echo, methods=["POST", "PUT"]),
            Route("/status", status, methods=["GET", "DELETE"]),
        ]
    )
    app.add_middleware(AirlockMiddleware, policy=Policy(audit=sink, **options))
    return app, received


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON; Charset=UTF-8",
        'application/json; charset="utf-8"',
        "application/vnd.api+json",
    ],
)
async def test_json_media_types_are_accepted(content_type: str, sink: RecordingSink) -> None:
    app, received = make_app(sink)
    async with client_for(app) as client:
        response = await client.post("/echo", content=b'{"a": 1}', headers={"content-type": content_type})
    assert response.status_code == 200
    assert response.json() == {"ok": True, "checked": True}
    assert received == [{"a": 1}]


@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "text/plain"},
        {"content-type": "application/json; charset=latin-1"},
        {"content-type": "application/x-www-form-urlencoded"},
        {},
    ],
)
async def test_other_media_types_get_415(headers: dict[str, str], sink: RecordingSink) -> None:
    app, received = make_app(sink)
    async with client_for(app) as client:
        response = await client.post("/echo", content=b'{"a": 1}', headers=headers)
    assert response.status_code == 415
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "unsupported_media_type"
    assert received == []
    assert sink.events[0].stage == "parse"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"a": ', "invalid_json"),
        (b'{"a": NaN}', "invalid_json"),
        (b'{"a": Infinity}', "invalid_json"),
        (b'{"a": 1, "a": 2}', "invalid_json"),
        (b"", "invalid_json"),
        (b"   ", "invalid_json"),
        (b'\xef\xbb\xbf{"a": 1}', "invalid_json"),
        (b'{"a": "\xff\xfe"}', "invalid_encoding"),
        (b'{"a": "\xed\xa0\x80"}', "invalid_encoding"),  # an encoded surrogate is not UTF-8
        (b'{"a": ' + b"1" * 5000 + b"}", "invalid_json"),  # beyond Python's int digit limit
        (b"[" * 100_000 + b"]" * 100_000, "json_too_deep"),
        (b"[" * 65 + b"]" * 65, "json_too_deep"),
    ],
)
async def test_bad_bodies_get_400_with_a_stable_code(body: bytes, code: str, sink: RecordingSink) -> None:
    app, received = make_app(sink)
    async with client_for(app) as client:
        response = await client.post("/echo", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    problem = response.json()
    assert problem["code"] == code
    assert problem["status"] == 400
    assert problem["type"] == f"urn:airlock:problem:{code}"
    assert received == []
    assert len(sink.events) == 1


async def test_depth_limit_is_per_policy(sink: RecordingSink) -> None:
    app, _received = make_app(sink, max_json_depth=3)
    nested_ok = json.dumps({"a": [{"b": 1}]}).encode()
    nested_deep = json.dumps({"a": [{"b": [1]}]}).encode()
    async with client_for(app) as client:
        ok = await client.post("/echo", content=nested_ok, headers={"content-type": "application/json"})
        deep = await client.post("/echo", content=nested_deep, headers={"content-type": "application/json"})
    assert ok.status_code == 200
    assert deep.status_code == 400
    assert deep.json()["code"] == "json_too_deep"


async def test_brackets_inside_strings_do_not_count_as_depth(sink: RecordingSink) -> None:
    app, _ = make_app(sink)
    body = json.dumps({"text": "[" * 500}).encode()
    async with client_for(app) as client:
        response = await client.post("/echo", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200


async def test_get_without_body_is_not_parsed(sink: RecordingSink) -> None:
    app, received = make_app(sink)
    async with client_for(app) as client:
        response = await client.get("/status")
        deleted = await client.delete("/status")
    assert response.status_code == 200
    assert deleted.status_code == 200
    assert received == [None, None]


async def test_json_false_skips_parsing(sink: RecordingSink) -> None:
    async def raw(request: Request) -> JSONResponse:
        return JSONResponse({"size": len(await request.body())})

    app = Starlette(routes=[Route("/raw", raw, methods=["POST"])])
    app.add_middleware(AirlockMiddleware, policy=Policy(json=False, max_body_bytes=10, audit=sink))
    async with client_for(app) as client:
        ok = await client.post("/raw", content=b"not json", headers={"content-type": "text/plain"})
        big = await client.post("/raw", content=b"x" * 11)
    assert ok.json() == {"size": 8}
    assert big.status_code == 413


async def test_problem_never_echoes_the_body(sink: RecordingSink) -> None:
    app, _ = make_app(sink)
    marker = "MARKER-7f3a-secret-content"
    async with client_for(app) as client:
        for body in (f'{{"a": "{marker}"', f'{{"{marker}": 1, "{marker}": 2}}', f"[{marker}]"):
            response = await client.post(
                "/echo", content=body.encode(), headers={"content-type": "application/json"}
            )
            assert response.status_code == 400
            assert marker not in response.text
            assert marker not in repr(sink.events[-1])
            assert marker not in str(sink.events[-1].problem)
