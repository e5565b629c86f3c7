"""Token estimates: the heuristic, per-preset structure, pluggable counters, the prompt cap."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from airlock import AirlockMiddleware, ConfigurationError, Context, Policy
from airlock.validation import Validate, heuristic_tokens
from airlock.validation.tokens import chat_tokens, embeddings_tokens, responses_tokens

from helpers import RecordingSink, client_for

pytestmark = pytest.mark.anyio


async def handler(request: Request) -> JSONResponse:
    ctx: Context = request.state.airlock
    return JSONResponse({"token_estimate": ctx.token_estimate})


async def post(sink: RecordingSink, validate: Validate, document: Any) -> Any:
    app = AirlockMiddleware(
        Starlette(routes=[Route("/", handler, methods=["POST"])]),
        policy=Policy(validate=validate, audit=sink),
    )
    async with client_for(app) as client:
        return await client.post("/", json=document)


def chat(*contents: Any, **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": c} for c in contents], **extra}


def test_heuristic_is_a_quarter_of_the_utf8_bytes_rounded_up() -> None:
    assert heuristic_tokens("") == 0
    assert heuristic_tokens("abcd") == 1
    assert heuristic_tokens("abcde") == 2
    assert heuristic_tokens("日本語") == 3  # 9 bytes
    assert heuristic_tokens("\ud800") == 1  # a lone surrogate does not raise


def test_chat_estimate_counts_structure() -> None:
    count = heuristic_tokens
    assert chat_tokens(chat("abcd"), count) == 3 + 4 + 1
    parts = [
        {"type": "text", "text": "abcdefgh"},
        {"type": "image_url", "image_url": {"url": "https://x", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://x"}},
    ]
    assert chat_tokens(chat(parts), count) == 3 + 4 + 2 + 85 + 765
    tools = [{"type": "function", "function": {"name": "f"}}]
    with_tools = chat("abcd", tools=tools)
    tools_json = json.dumps(tools, separators=(",", ":"))
    assert chat_tokens(with_tools, count) == 3 + 4 + 1 + heuristic_tokens(tools_json)


def test_responses_and_embeddings_estimates() -> None:
    count = heuristic_tokens
    assert (
        responses_tokens({"model": "m", "input": "abcd", "instructions": "abcd"}, count) == 3 + 4 + 1 + 4 + 1
    )
    items = [
        {"role": "user", "content": [{"type": "input_text", "text": "abcd"}]},
        {"type": "function_call_output", "output": "abcd"},
    ]
    assert responses_tokens({"model": "m", "input": items}, count) == 3 + (4 + 1) + (4 + 1)
    assert embeddings_tokens({"input": "abcdefgh"}, count) == 2
    assert embeddings_tokens({"input": ["abcd", [1, 2, 3], 7]}, count) == 1 + 3 + 1


async def test_estimate_reaches_the_handler_and_the_audit(sink: RecordingSink) -> None:
    response = await post(sink, Validate(preset="openai-chat"), chat("x" * 400))
    assert response.status_code == 200
    assert response.json()["token_estimate"] == 3 + 4 + 100
    assert sink.events[0].token_estimate == 107
    assert sink.events[0].audit["validation"]["token_estimate"] == 107


async def test_prompt_over_the_cap_is_413_prompt_too_long(sink: RecordingSink) -> None:
    marker = "MRKtok77"
    validate = Validate(preset="openai-chat", max_prompt_tokens=107)
    assert (await post(sink, validate, chat("x" * 400))).status_code == 200
    response = await post(sink, validate, chat(marker + "x" * 400))
    assert response.status_code == 413
    body = response.json()
    assert body["code"] == "prompt_too_long"
    assert body["max_prompt_tokens"] == 107
    assert body["token_estimate"] > 107
    assert marker not in response.text
    assert sink.events[-1].stage == "validate"


async def test_custom_schema_counts_every_string_or_the_named_fields(sink: RecordingSink) -> None:
    schema = {"question": {"type": "string"}, "lang": {"type": "string"}}
    document = {"question": "x" * 40, "lang": "abcd"}
    assert (await post(sink, Validate(schema=schema), document)).json()["token_estimate"] == 11
    named = Validate(schema=schema, text_fields=["question"])
    assert (await post(sink, named, document)).json()["token_estimate"] == 10
    # No schema at all: caps and the estimate only.
    assert (await post(sink, Validate(), document)).json()["token_estimate"] == 11


class FakeEncoding:
    """Looks like a tiktoken Encoding: one token per word."""

    def encode_ordinary(self, text: str) -> list[int]:
        return [0] * len(text.split())

    def encode(self, text: str) -> list[int]:
        raise AssertionError("encode() refuses special tokens; encode_ordinary must be used")


async def test_pluggable_counters(sink: RecordingSink) -> None:
    words = chat("one two three")
    by_callable = Validate(preset="openai-chat", token_counter=lambda text: len(text.split()))
    assert (await post(sink, by_callable, words)).json()["token_estimate"] == 3 + 4 + 3
    by_encoding = Validate(preset="openai-chat", token_counter=FakeEncoding())
    assert (await post(sink, by_encoding, words)).json()["token_estimate"] == 3 + 4 + 3
    with pytest.raises(ConfigurationError):
        Validate(preset="openai-chat", token_counter="cl100k_base")


async def test_large_bodies_run_a_custom_counter_off_the_event_loop(sink: RecordingSink) -> None:
    import threading

    threads: set[str] = set()

    def counter(text: str) -> int:
        threads.add(threading.current_thread().name)
        return 1

    validate = Validate(preset="openai-chat", token_counter=counter)
    response = await post(sink, validate, chat("x" * 40_000, "y" * 40_000))
    assert response.json()["token_estimate"] == 3 + 2 * (4 + 1)
    assert threading.main_thread().name not in threads


async def test_failing_counter_falls_back_to_the_heuristic(sink: RecordingSink) -> None:
    def broken(text: str) -> int:
        raise ValueError(f"cannot tokenize {text}")

    response = await post(sink, Validate(preset="openai-chat", token_counter=broken), chat("abcd"))
    assert response.status_code == 200
    assert response.json()["token_estimate"] == 3 + 4 + 1
    assert sink.events[0].failed_open == ["token_counter"]
