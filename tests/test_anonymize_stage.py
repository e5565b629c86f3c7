"""The anonymize stage in a real app: what the upstream receives, what the client gets, what is logged."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from airlock import AirlockMiddleware, Policy
from airlock.anonymize import Anonymize, Anonymizer
from airlock.errors import ConfigurationError

from helpers import RawExchange, RecordingSink, client_for, http_scope

pytestmark = pytest.mark.anyio

KEY = "test-key-0123456789abcdef"
MARKER_EMAIL = "zq-marker-5521@example.com"
MARKER_CARD = "4111 1111 1111 1111"


class Upstream:
    """What the app (standing in for the AI provider) received."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []


def make_app(upstream: Upstream, sink: RecordingSink, **options: Any) -> AirlockMiddleware:
    async def chat(request: Request) -> Response:
        payload = await request.json()
        upstream.bodies.append(payload)
        content = payload["messages"][-1]["content"]
        text = content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)
        return JSONResponse({"choices": [{"message": {"role": "assistant", "content": f"You said: {text}"}}]})

    async def stream(request: Request) -> Response:
        payload = await request.json()
        upstream.bodies.append(payload)
        text = payload["messages"][-1]["content"]

        async def events() -> Any:
            for start in range(0, len(text), 4):  # four characters per token: placeholders get split
                delta = {"choices": [{"index": 0, "delta": {"content": text[start : start + 4]}}]}
                yield f"data: {json.dumps(delta)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def plain(request: Request) -> Response:
        payload = await request.json()
        upstream.bodies.append(payload)
        return PlainTextResponse(payload["prompt"])

    async def binary(request: Request) -> Response:
        payload = await request.json()
        return Response(payload["prompt"].encode(), media_type="application/octet-stream")

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/stream", stream, methods=["POST"]),
            Route("/plain", plain, methods=["POST"]),
            Route("/binary", binary, methods=["POST"]),
        ]
    )
    stage = Anonymize(anonymizer=Anonymizer(key=KEY), **options)
    return AirlockMiddleware(app, policy=Policy(anonymize=stage, audit=sink))


def chat_body(content: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "user": MARKER_EMAIL,  # not a text field: left alone
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": content},
        ],
    }


async def test_upstream_gets_placeholders_and_client_gets_originals(sink: RecordingSink) -> None:
    upstream = Upstream()
    app = make_app(upstream, sink)
    async with client_for(app) as client:
        response = await client.post(
            "/v1/chat/completions", json=chat_body(f"Mail {MARKER_EMAIL}, card {MARKER_CARD}")
        )
    assert response.status_code == 200
    assert (
        response.json()["choices"][0]["message"]["content"]
        == f"You said: Mail {MARKER_EMAIL}, card {MARKER_CARD}"
    )
    assert int(response.headers["content-length"]) == len(response.content)
    sent = upstream.bodies[0]
    sent_text = sent["messages"][1]["content"]
    assert MARKER_EMAIL not in sent_text
    assert "4111" not in sent_text
    assert "[EMAIL_" in sent_text
    assert "[CREDIT_CARD_" in sent_text
    assert sent["user"] == MARKER_EMAIL
    assert sent["model"] == "gpt-4o-mini"
    (ctx,) = sink.events
    assert ctx.entity_counts == {"EMAIL": 1, "CREDIT_CARD": 1}
    assert ctx.audit["anonymize"] == {
        "entities": {"EMAIL": 1, "CREDIT_CARD": 1},
        "findings": 2,
        "fields_changed": 1,
        "pseudonyms": 2,
    }
    assert MARKER_EMAIL not in repr(ctx.audit)
    assert "4111" not in repr(ctx.audit)
    assert len(ctx.vault) == 2


async def test_content_parts_are_anonymized_and_other_parts_left_alone(sink: RecordingSink) -> None:
    upstream = Upstream()
    app = make_app(upstream, sink)
    parts = [
        {"type": "text", "text": f"write to {MARKER_EMAIL}"},
        {"type": "image_url", "image_url": {"url": f"https://img.example.com/{MARKER_EMAIL}.png"}},
    ]
    async with client_for(app) as client:
        response = await client.post("/v1/chat/completions", json=chat_body(parts))
    assert response.json()["choices"][0]["message"]["content"] == f"You said: write to {MARKER_EMAIL} "
    sent_parts = upstream.bodies[0]["messages"][1]["content"]
    assert sent_parts[0]["text"].startswith("write to [EMAIL_")
    assert sent_parts[1] == parts[1]


async def test_same_value_same_placeholder_across_turns(sink: RecordingSink) -> None:
    upstream = Upstream()
    app = make_app(upstream, sink)
    async with client_for(app) as client:
        await client.post("/v1/chat/completions", json=chat_body(f"I am {MARKER_EMAIL}"))
        await client.post("/v1/chat/completions", json=chat_body(f"again {MARKER_EMAIL}"))
    first = upstream.bodies[0]["messages"][1]["content"].split()[-1]
    second = upstream.bodies[1]["messages"][1]["content"].split()[-1]
    assert first == second


async def test_nothing_found_leaves_the_body_byte_identical(sink: RecordingSink) -> None:
    received: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        received.append(message["body"])
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b"{}"})

    guarded = AirlockMiddleware(app, policy=Policy(anonymize=Anonymize(Anonymizer(key=KEY)), audit=sink))
    body = b'{"messages": [{"role": "user", "content": "hello there"}],   "model": "x"}'
    exchange = RawExchange([{"type": "http.request", "body": body}])
    await guarded(http_scope(path="/v1/chat/completions"), exchange.receive, exchange.send)
    assert received == [body]
    assert sink.events[0].body_filter is None
    assert sink.events[0].audit["anonymize"]["findings"] == 0


async def test_streamed_reply_with_split_placeholders_is_restored(sink: RecordingSink) -> None:
    upstream = Upstream()
    app = make_app(upstream, sink)
    text = f"Contact {MARKER_EMAIL} or {MARKER_EMAIL}, ok?"
    async with client_for(app) as client:
        response = await client.post("/stream", json=chat_body(text))
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "content-length" not in response.headers
    restored = ""
    for line in response.text.splitlines():
        if line.startswith("data: {"):
            restored += json.loads(line[6:])["choices"][0]["delta"]["content"]
    assert restored == text
    assert "[EMAIL_" not in response.text
    assert response.text.rstrip().endswith("data: [DONE]")


async def test_plain_text_reply_restored_and_binary_untouched(sink: RecordingSink) -> None:
    upstream = Upstream()
    app = make_app(upstream, sink)
    async with client_for(app) as client:
        plain = await client.post("/plain", json={"prompt": f"hi {MARKER_EMAIL}"})
        binary = await client.post("/binary", json={"prompt": f"hi {MARKER_EMAIL}"})
    assert plain.text == f"hi {MARKER_EMAIL}"
    assert binary.content.startswith(b"hi [EMAIL_")


async def test_restore_off_keeps_placeholders(sink: RecordingSink) -> None:
    app = make_app(Upstream(), sink, restore=False)
    async with client_for(app) as client:
        response = await client.post("/v1/chat/completions", json=chat_body(f"Mail {MARKER_EMAIL}"))
    assert "[EMAIL_" in response.json()["choices"][0]["message"]["content"]
    assert sink.events[0].body_filter is None


async def test_custom_fields_and_offloaded_large_text(sink: RecordingSink) -> None:
    upstream = Upstream()
    app = make_app(upstream, sink, fields=["messages[*].content", "metadata.note"], offload_chars=0)
    body = chat_body(f"Mail {MARKER_EMAIL}")
    body["metadata"] = {"note": f"from {MARKER_EMAIL}", "other": MARKER_EMAIL}
    async with client_for(app) as client:
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    sent = upstream.bodies[0]
    assert sent["metadata"]["note"].startswith("from [EMAIL_")
    assert sent["metadata"]["other"] == MARKER_EMAIL
    assert sink.events[0].audit["anonymize"]["fields_changed"] == 2


async def test_no_log_record_carries_a_value_or_placeholder(
    sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    upstream = Upstream()
    app = make_app(upstream, sink)
    with caplog.at_level(logging.DEBUG):
        async with client_for(app) as client:
            await client.post("/stream", json=chat_body(f"Mail {MARKER_EMAIL} card {MARKER_CARD}"))
            await client.post("/v1/chat/completions", json=chat_body(f"Mail {MARKER_EMAIL}"))
    placeholder = upstream.bodies[0]["messages"][1]["content"].split()[1]
    for record in caplog.records:
        message = record.getMessage()
        assert "zq-marker" not in message
        assert "4111" not in message
        assert placeholder not in message


def test_stage_configuration_is_checked() -> None:
    with pytest.raises(ConfigurationError):
        Anonymize(anonymizer="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        Anonymize(Anonymizer(key=KEY), fields=[])
    with pytest.raises(ConfigurationError):
        Anonymize(Anonymizer(key=KEY), offload_chars=-1)


async def test_two_stages_share_one_vault_and_one_restore(sink: RecordingSink) -> None:
    seen: list[Any] = []

    async def chat(request: Request) -> Response:
        payload = await request.json()
        seen.append(payload)
        return JSONResponse({"echo": [payload["messages"][0]["content"], payload["metadata"]["note"]]})

    app = Starlette(routes=[Route("/c", chat, methods=["POST"])])
    anonymizer = Anonymizer(key=KEY)
    policy = Policy(
        anonymize=[Anonymize(anonymizer), Anonymize(anonymizer, fields=["metadata.note"])], audit=sink
    )
    body = {"messages": [{"role": "user", "content": f"a {MARKER_EMAIL}"}], "metadata": {"note": MARKER_CARD}}
    async with client_for(AirlockMiddleware(app, policy=policy)) as client:
        response = await client.post("/c", json=body)
    assert response.json() == {"echo": [f"a {MARKER_EMAIL}", MARKER_CARD]}
    assert seen[0]["metadata"]["note"].startswith("[CREDIT_CARD_")
    (ctx,) = sink.events
    assert ctx.entity_counts == {"EMAIL": 1, "CREDIT_CARD": 1}
    assert ctx.audit["anonymize"]["fields_changed"] == 2


async def test_a_foreign_body_filter_is_chained_not_replaced(sink: RecordingSink) -> None:
    class Upper:
        def begin(self, status: int, headers: list[tuple[bytes, bytes]]) -> bool:
            return True

        def feed(self, chunk: bytes) -> bytes:
            return chunk.replace(b"hello", b"HELLO")

        def flush(self) -> bytes:
            return b""

    async def set_filter(ctx: Any) -> None:
        ctx.body_filter = Upper()

    async def plain(request: Request) -> Response:
        payload = await request.json()
        return PlainTextResponse("hello " + payload["prompt"])

    app = Starlette(routes=[Route("/p", plain, methods=["POST"])])
    policy = Policy(validate=set_filter, anonymize=Anonymize(Anonymizer(key=KEY)), audit=sink)
    async with client_for(AirlockMiddleware(app, policy=policy)) as client:
        response = await client.post("/p", json={"prompt": MARKER_EMAIL})
    assert response.text == f"HELLO {MARKER_EMAIL}"


def test_findings_cache_holds_no_content_and_changes_nothing() -> None:
    cached = Anonymizer(key=KEY)
    cold = Anonymizer(key=KEY, cache_size=0)
    text = f"mail {MARKER_EMAIL} card {MARKER_CARD}"
    assert cached.anonymize(text).text == cached.anonymize(text).text == cold.anonymize(text).text
    assert cached.detect(text) == cold.detect(text)
    stored = repr(cached.__dict__)
    assert "zq-marker" not in stored
    assert "4111" not in stored
