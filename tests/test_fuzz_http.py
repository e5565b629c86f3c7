"""Fuzzing the engine with raw HTTP bodies: whatever arrives, the answer is a documented status
and, when refused, a problem+json with a known code that never echoes the submitted bytes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airlock import AirlockMiddleware, Policy
from airlock.errors import PROBLEM_CODES

from helpers import RawExchange, RecordingSink, http_scope

pytestmark = pytest.mark.anyio

# Hypothesis draws string literals from the code under test, so a body may be a phrase airlock
# writes itself ("application/json" in the 415 detail); that coincidence is not an echo.
AIRLOCK_TEXT = b"\n".join(
    path.read_bytes()
    for path in sorted((Path(__file__).resolve().parent.parent / "src" / "airlock").rglob("*.py"))
)

CONTENT_TYPES = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "application/json; charset=latin-1",
            "text/plain",
            "application/problem+json",
            "multipart/form-data; boundary=x",
            "",
            "application/json;;;",
            "application/json; charset",
        ]
    ),
    st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass").decode("latin-1")),
)

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)

BODIES = st.one_of(
    st.binary(max_size=400),
    JSONISH.map(lambda doc: json.dumps(doc).encode()),
    JSONISH.map(lambda doc: json.dumps(doc).encode()[:-1]),  # truncated
    st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass")),  # lone surrogates
    st.sampled_from([b"NaN", b'{"a": Infinity}', b'{"a":1,"a":2}', b"\xef\xbb\xbf{}", b"[" * 2000]),
)


async def ok_app(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def split(body: bytes, cuts: list[int]) -> list[dict[str, Any]]:
    points = sorted({min(max(c, 0), len(body)) for c in cuts})
    parts, start = [], 0
    for point in [*points, len(body)]:
        parts.append(body[start:point])
        start = point
    messages = [{"type": "http.request", "body": part, "more_body": True} for part in parts]
    messages[-1]["more_body"] = False
    return messages


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=BODIES,
    content_type=CONTENT_TYPES,
    declared=st.one_of(st.none(), st.just("exact"), st.integers(-5, 10_000).map(str), st.text(max_size=6)),
    cuts=st.lists(st.integers(0, 400), max_size=4),
    method=st.sampled_from(["POST", "PUT", "PATCH", "GET", "DELETE"]),
)
async def test_any_raw_request_gets_a_documented_answer(
    body: bytes, content_type: str | None, declared: str | None, cuts: list[int], method: str
) -> None:
    sink = RecordingSink()
    app = AirlockMiddleware(ok_app, policy=Policy(max_body_bytes=300, audit=sink, linger_seconds=0.01))
    headers: list[tuple[str, str | bytes]] = []
    if content_type is not None:
        headers.append(("content-type", content_type))
    if declared == "exact":
        headers.append(("content-length", str(len(body))))
    elif declared is not None:
        headers.append(("content-length", declared.encode("utf-8", "surrogatepass")))
    exchange = RawExchange(split(body, cuts))
    await app(http_scope(method=method, headers=headers), exchange.receive, exchange.send)

    assert len(sink.events) == 1
    assert exchange.status is not None
    if exchange.status == 200:
        return
    problem = exchange.json()
    assert exchange.headers["content-type"] == "application/problem+json"
    assert problem["code"] in PROBLEM_CODES
    assert problem["status"] == exchange.status
    assert exchange.status in (400, 408, 413, 415)
    # Never echo the submitted content (only check payloads long enough to be meaningful).
    for token in body.split():
        if len(token) >= 12 and token not in AIRLOCK_TEXT:
            assert token not in exchange.body
