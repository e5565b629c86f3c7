"""Structure caps: each cap refuses with its code, bombs are refused without recursion or a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from airlock import AirlockMiddleware, ConfigurationError, Policy
from airlock.errors import JSONTooDeep, JSONTooLarge
from airlock.validation import StructureCaps, Validate

from helpers import RecordingSink, client_for

pytestmark = pytest.mark.anyio


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


def make_app(sink: RecordingSink, validate: Any, **policy: Any) -> AirlockMiddleware:
    app = Starlette(routes=[Route("/", echo, methods=["POST"])])
    return AirlockMiddleware(app, policy=Policy(validate=validate, audit=sink, **policy))


def nested(depth: int) -> Any:
    """A list nested ``depth`` deep, built without recursion."""
    document: Any = []
    for _ in range(depth - 1):
        document = [document]
    return document


@pytest.mark.parametrize(
    ("caps", "document", "cap"),
    [
        (StructureCaps(max_array_items=3), {"a": [1, 2, 3, 4]}, "max_array_items"),
        (StructureCaps(max_total_items=5), {"a": [1, 2], "b": {"c": 1, "d": 2}}, "max_total_items"),
        (StructureCaps(max_string_length=4), {"a": ["abcde"]}, "max_string_length"),
        (StructureCaps(max_string_length=4), {"abcde": 1}, "max_string_length"),
    ],
)
async def test_each_size_cap_refuses_with_422(
    sink: RecordingSink, caps: StructureCaps, document: Any, cap: str
) -> None:
    async with client_for(make_app(sink, Validate(caps=caps))) as client:
        response = await client.post("/", json=document)
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "json_too_large"
    assert body["cap"] == cap
    assert response.headers["content-type"] == "application/problem+json"
    assert sink.events[0].audit["validation"]["cap"] == cap


async def test_values_at_each_cap_pass(sink: RecordingSink) -> None:
    caps = StructureCaps(max_depth=3, max_array_items=3, max_total_items=6, max_string_length=4)
    document = {"abcd": [[1, 2, 3]], "b": "wxyz"}  # depth 3, 6 keys+items, strings of 4
    async with client_for(make_app(sink, Validate(caps=caps))) as client:
        response = await client.post("/", json=document)
    assert response.status_code == 200


async def test_depth_cap_tighter_than_the_parse_cap_answers_json_too_deep(sink: RecordingSink) -> None:
    app = make_app(sink, StructureCaps(max_depth=4))
    async with client_for(app) as client:
        ok = await client.post("/", json=nested(4))
        deep = await client.post("/", json=nested(5))
    assert ok.status_code == 200
    assert deep.status_code == 400
    assert deep.json()["code"] == "json_too_deep"
    assert deep.json()["max_depth"] == 4
    assert sink.events[1].stage == "validate"


async def test_million_item_array_is_refused(sink: RecordingSink) -> None:
    body = b"[" + b"0," * 999_999 + b"0]"
    app = make_app(sink, Validate(), max_body_bytes=4 * 1024 * 1024)
    async with client_for(app) as client:
        response = await client.post("/", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["cap"] == "max_array_items"


async def test_depth_bomb_through_the_app_is_a_400_not_a_500(sink: RecordingSink) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    app = make_app(sink, Validate(caps=StructureCaps(max_depth=10)), max_json_depth=10_000)
    async with client_for(app) as client:
        response = await client.post("/", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["code"] == "json_too_deep"


def test_hundred_thousand_deep_document_is_walked_without_recursion() -> None:
    # Built in memory (the parser would refuse it first): the walk itself must be iterative.
    with pytest.raises(JSONTooDeep):
        StructureCaps(max_depth=64).check(nested(100_000))
    wide_and_deep = {"a": nested(100_000)}
    with pytest.raises(JSONTooDeep):
        StructureCaps(max_depth=50_000, max_total_items=10**6).check(wide_and_deep)


def test_walk_stops_at_the_first_cap_crossed() -> None:
    class Exploding(list):  # type: ignore[type-arg]
        def __iter__(self) -> Any:
            raise AssertionError("walked past the cap")

    with pytest.raises(JSONTooLarge):
        StructureCaps(max_array_items=2).check({"a": Exploding([1, 2, 3])})


def test_raw_body_bounds_skip_the_walk_only_when_they_prove_the_caps() -> None:
    caps = StructureCaps(max_depth=3, max_array_items=4, max_total_items=4, max_string_length=100)
    small = {"a": [1, 2]}
    assert caps.within_bounds(json.dumps(small).encode())
    # Commas inside strings inflate the bound: then the document is walked, and passes.
    tricky = {"a": "x,x,x,x,x"}
    raw = json.dumps(tricky).encode()
    assert not caps.within_bounds(raw)
    caps.check(tricky, raw)
    # A body that does not prove the caps is walked and refused when over.
    with pytest.raises(JSONTooLarge):
        caps.check({"a": [1, 2, 3, 4, 5]}, json.dumps({"a": [1, 2, 3, 4, 5]}).encode())


def test_caps_are_validated_at_construction() -> None:
    for bad in (0, -1, True, 1.5, "3"):
        with pytest.raises(ConfigurationError):
            StructureCaps(max_depth=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        Validate(caps={"max_depth": 3})  # type: ignore[arg-type]


async def test_caps_can_be_turned_off(sink: RecordingSink) -> None:
    async with client_for(make_app(sink, Validate(caps=None))) as client:
        response = await client.post("/", json={"a": list(range(20_000))})
    assert response.status_code == 200


async def test_caps_run_before_the_schema(sink: RecordingSink) -> None:
    validate = Validate(schema={"a": {"type": "string"}}, caps=StructureCaps(max_array_items=2))
    async with client_for(make_app(sink, validate)) as client:
        response = await client.post("/", json={"a": [1, 2, 3]})
    assert response.status_code == 422
    assert response.json()["code"] == "json_too_large"
