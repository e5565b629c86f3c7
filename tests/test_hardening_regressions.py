"""Regression tests for the defects the hardening work found (listed in SECURITY.md).

Each test names the finding it pins down; each failed before its fix.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from airlock import AirlockMiddleware, FromCallable, Policy
from airlock.anonymize import Anonymizer
from airlock.audit import AuditLog
from airlock.errors import InvalidJSON
from airlock.gateway import create_app
from airlock.parse import parse_json
from airlock.throttle import LimitStorage, RateLimit, TokenBudget
from airlock.throttle.storage import StorageFailure

from fake_upstream import DONE, FakeUpstream, chunk, gateway_app, lifespan, serving, stream
from helpers import RecordingSink, client_for, free_port

pytestmark = pytest.mark.anyio

SURROGATE_CHAT = (
    b'{"model":"gpt-test","stream":true,"user":"u\\ud800",'
    b'"messages":[{"role":"user","content":"hi \\udfff there"}]}'
)


# H1: "1e400" is JSON syntax but overflows to infinity; a stage that changed the document then
# re-serialised it as the non-JSON token "Infinity" for the app and the provider.
@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"1E+999", b"-18e307"])
def test_numbers_that_overflow_a_float_are_refused(number: bytes) -> None:
    with pytest.raises(InvalidJSON):
        parse_json(b'{"x": [1, ' + number + b"]}", max_depth=8)


def test_finite_and_underflowing_numbers_still_parse() -> None:
    assert parse_json(b"[1e308, -1e308, 1e-400, 0.5, -0.0, 12]", max_depth=8) == [
        1e308,
        -1e308,
        0.0,
        0.5,
        -0.0,
        12,
    ]


async def test_the_app_never_receives_infinity(sink: RecordingSink) -> None:
    received: list[bytes] = []

    async def handler(request: Request) -> Response:
        received.append(await request.body())
        return JSONResponse({"ok": True})

    # The budget writes max_tokens into the request, so the document is re-serialised.
    policy = Policy(budget=TokenBudget("100000/minute"), audit=sink)
    app = Starlette(
        routes=[Route("/chat", handler, methods=["POST"])],
        middleware=[Middleware(AirlockMiddleware, policy=policy)],
    )
    body = b'{"messages": [], "tools": [{"parameters": {"x": 1e400}}]}'
    async with client_for(app) as client:
        response = await client.post("/chat", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"
    assert received == []
    assert [ctx.outcome for ctx in sink.events] == ["rejected"]


# H2: a lone surrogate escape ("\ud800") in any field of a streamed chat request made the
# OpenAI provider's re-serialisation raise UnicodeEncodeError: an unhandled 500.
async def test_lone_surrogates_in_a_streamed_request_are_forwarded_escaped() -> None:
    upstream = FakeUpstream(default=stream([chunk("ok"), chunk(usage=(1, 1)), DONE]))
    sink = RecordingSink()
    async with serving(upstream) as port:
        app = gateway_app(port, sink=sink)
        async with lifespan(app), client_for(app) as client:
            response = await client.post(
                "/v1/chat/completions", content=SURROGATE_CHAT, headers={"content-type": "application/json"}
            )
    assert response.status_code == 200
    assert "data: [DONE]" in response.text
    forwarded = upstream.last.body
    forwarded.decode("utf-8")  # valid UTF-8 on the wire
    document: Any = json.loads(forwarded)
    assert document["user"] == "u\ud800"
    assert document["stream_options"] == {"include_usage": True}
    assert [ctx.outcome for ctx in sink.events] == ["allowed"]


# H3: the same in the offline echo provider (chat replies and embedding vectors).
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", SURROGATE_CHAT.replace(b"gpt-test", b"echo")),
        ("/v1/chat/completions", SURROGATE_CHAT.replace(b"gpt-test", b"echo").replace(b"true", b"false")),
        ("/v1/embeddings", b'{"model":"echo","input":["a\\ud800b","\\udc00"]}'),
    ],
)
async def test_the_echo_provider_answers_lone_surrogates(path: str, body: bytes) -> None:
    app = create_app()
    async with lifespan(app), client_for(app) as client:
        response = await client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    response.content.decode("utf-8")


# H5: an `sk-` key made of lower-case hex digits (DeepSeek's format, and that of several
# OpenAI-compatible proxies) pasted into a prompt was not recognised as a secret and went
# to the provider: the OpenAI rule demanded both letter cases.
@pytest.mark.parametrize(
    "key",
    ["sk-" + "0f3a9c1d" * 4, "sk-proj-" + "5e0b7d2c" * 6, "sk-" + "deadbeef" * 4 + "9"],
)
def test_hex_sk_keys_are_secrets(key: str) -> None:
    result = Anonymizer(key="regression-key-0123456789").anonymize(f"my key is {key} thanks")
    assert [finding.entity for finding in result.findings] == ["SECRET"]
    assert key not in result.text


@pytest.mark.parametrize(
    "text",
    ["We use sk-learn and scikit-learn-intelex here.", "sk-" + "a" * 40, "sk-" + "1" * 40, "sk-0f3a9c1d0f3a"],
)
def test_sk_prose_and_short_hex_are_not_secrets(text: str) -> None:
    assert Anonymizer(key="regression-key-0123456789").anonymize(text).findings == ()


# H6: an identity id holding a lone surrogate (a user id taken from a JSON claim) made the
# audit event fail to build: the request was logged as a bare minimal event, its facts lost.
async def test_an_identity_with_a_lone_surrogate_gets_a_full_audit_event(tmp_path: Path) -> None:
    audit = AuditLog(path=tmp_path / "audit.jsonl", identity_key="regression-audit-key-0123456789")

    async def handler(request: Request) -> Response:
        return JSONResponse({"ok": True})

    policy = Policy(
        identity=FromCallable(lambda scope: "jane\ud800"), admit=RateLimit("10/minute"), audit=audit
    )
    app = Starlette(
        routes=[Route("/chat", handler, methods=["POST"])],
        middleware=[Middleware(AirlockMiddleware, policy=policy)],
    )
    async with client_for(app) as client:
        assert (await client.post("/chat", json={})).status_code == 200
    await audit.shutdown()
    (event,) = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert "audit_error" not in event
    assert event["identity"]["kind"] == "user"
    assert "rate" in event["facts"]["throttle"]


# H8: redis-py cancels its own futures when a connect is cut short by the storage deadline
# while another call waits on it. That CancelledError was not the request's: it escaped
# LimitStorage.run (which caught Exception only), so during a Redis outage some requests were
# dropped as "abandoned" with no answer at all instead of getting their 503 (or being let
# through with on_storage_error="open").
async def test_a_cancellation_from_inside_the_storage_client_is_a_storage_failure() -> None:
    storage = LimitStorage(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)

    async def stray() -> None:
        raise asyncio.CancelledError  # as when a gathered call's future is cancelled by the client

    with pytest.raises(StorageFailure):
        await storage.run(stray)
    assert not storage.available  # counted as an outage, like any other failure


async def test_a_real_cancellation_still_goes_through_the_storage() -> None:
    storage = LimitStorage(f"redis://127.0.0.1:{free_port()}/0", timeout=5)
    with anyio.move_on_after(0.05) as scope:  # the client went away, the server shuts down...
        await storage.run(lambda: anyio.sleep(1))
    assert scope.cancelled_caught
    assert storage.available
