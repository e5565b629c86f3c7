"""The OpenAI presets, rule by rule, through a real Starlette app."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from airlock import AirlockMiddleware, ConfigurationError, Policy
from airlock.validation import Preset, Validate, preset_names, preset_schema, register_preset

from helpers import RecordingSink, client_for

pytestmark = pytest.mark.anyio

CHAT = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
    ],
    "max_tokens": 100,
    "temperature": 0.2,
    "stream": True,
    "stream_options": {"include_usage": True},
    "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
    "tool_choice": "auto",
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": {"type": "object"}},
    },
    "stop": ["\n\n"],
    "user": "customer-4711",
    "metadata": {"team": "search"},
}

RESPONSES = {
    "model": "gpt-4.1",
    "instructions": "Be brief.",
    "input": [
        {"role": "user", "content": "Hello"},
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "And this?"},
                {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "high"},
            ],
        },
        {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "42"},
    ],
    "max_output_tokens": 500,
    "tools": [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}],
    "reasoning": {"effort": "low"},
    "text": {"format": {"type": "text"}},
    "include": ["reasoning.encrypted_content"],
}

EMBEDDINGS = {"model": "text-embedding-3-small", "input": ["first text", "second text"], "dimensions": 256}

BASES = {"openai-chat": CHAT, "openai-responses": RESPONSES, "openai-embeddings": EMBEDDINGS}


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"received": json.loads(await request.body())})


async def post(validate: Validate, document: Any) -> Any:
    app = AirlockMiddleware(
        Starlette(routes=[Route("/", echo, methods=["POST"])]),
        policy=Policy(validate=validate, audit=RecordingSink()),
    )
    async with client_for(app) as client:
        return await client.post("/", json=document)


def changed(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """``base`` with ``value`` at dotted ``path`` (``...`` as value deletes the key)."""
    document = copy.deepcopy(base)
    *parents, last = path.split(".")
    node: Any = document
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is ...:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return document


@pytest.mark.parametrize("name", ["openai-chat", "openai-responses", "openai-embeddings"])
async def test_realistic_payloads_pass(name: str) -> None:
    response = await post(Validate(preset=name), BASES[name])
    assert response.status_code == 200, response.text
    assert response.json()["received"] == BASES[name]


async def test_benchmark_chat_body_passes() -> None:
    sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
    from overhead import CHAT_BODY

    response = await post(Validate(preset="openai-chat"), json.loads(CHAT_BODY))
    assert response.status_code == 200


CASES: list[tuple[str, dict[str, Any], str, Any, str, str]] = [
    # preset, options, path to change, new value, expected error path, expected rule
    ("openai-chat", {}, "model", ..., "model", "required"),
    ("openai-chat", {}, "model", "", "model", "empty"),
    ("openai-chat", {}, "messages", [], "messages", "minlength"),
    ("openai-chat", {}, "temperature", 3, "temperature", "max"),
    ("openai-chat", {}, "top_p", -0.1, "top_p", "min"),
    ("openai-chat", {}, "surprise", 1, "surprise", "unknown"),
    ("openai-chat", {}, "messages.1.role", "boss", "messages.1.role", "allowed"),
    ("openai-chat", {}, "messages.1.mood", "happy", "messages.1.mood", "unknown"),
    ("openai-chat", {}, "messages.1.content", 5, "messages.1.content", "type"),
    ("openai-chat", {"allow_system": False}, "messages.0.role", "system", "messages.0.role", "allowed"),
    ("openai-chat", {"allow_system": False}, "messages.0.role", "developer", "messages.0.role", "allowed"),
    ("openai-chat", {"max_messages": 4}, "messages.1.role", "user", "messages", "maxlength"),
    (
        "openai-chat",
        {"max_message_chars": 8},
        "messages.1.content",
        "x" * 9,
        "messages.1.content",
        "maxchars",
    ),
    (
        "openai-chat",
        {"max_message_chars": 15},
        "messages.2.content.0.text",
        "x" * 16,
        "messages.2.content",
        "maxchars",
    ),
    (
        "openai-chat",
        {"max_message_chars": 15},
        "messages.2.content",
        [{"type": "text", "text": "x" * 8}, {"type": "text", "text": "y" * 8}],
        "messages.2.content",
        "maxchars",
    ),
    ("openai-chat", {"max_parts": 1}, "messages.1.role", "user", "messages.2.content", "maxitems"),
    ("openai-chat", {}, "messages.2.content.0.type", "audio", "messages.2.content.0.type", "allowed"),
    (
        "openai-chat",
        {"allow_images": False},
        "messages.1.role",
        "user",
        "messages.2.content.1.type",
        "allowed",
    ),
    (
        "openai-chat",
        {},
        "messages.2.content.1.image_url.url",
        "http://x/a.png",
        "messages.2.content.1.image_url.url",
        "regex",
    ),
    (
        "openai-chat",
        {},
        "messages.2.content.1.image_url.url",
        "file:///etc/passwd",
        "messages.2.content.1.image_url.url",
        "regex",
    ),
    (
        "openai-chat",
        {},
        "messages.2.content.1.image_url.detail",
        "max",
        "messages.2.content.1.image_url.detail",
        "allowed",
    ),
    ("openai-chat", {}, "messages.3.tool_calls.0.type", "code", "messages.3.tool_calls.0.type", "allowed"),
    ("openai-chat", {"max_output_tokens": 50}, "max_tokens", 51, "max_tokens", "max"),
    ("openai-chat", {"max_output_tokens": 50}, "max_completion_tokens", 51, "max_completion_tokens", "max"),
    ("openai-chat", {}, "max_tokens", 0, "max_tokens", "min"),
    ("openai-chat", {}, "max_tokens", True, "max_tokens", "type"),
    ("openai-chat", {}, "n", 2, "n", "max"),
    ("openai-chat", {"max_tools": 1}, "tools", [CHAT["tools"][0]] * 2, "tools", "maxlength"),
    ("openai-chat", {}, "tools.0.function.name", "bad name", "tools.0.function.name", "regex"),
    ("openai-chat", {}, "tools.0.type", "web_search", "tools.0.type", "allowed"),
    ("openai-chat", {}, "tool_choice", "sometimes", "tool_choice", "regex"),
    ("openai-chat", {}, "tool_choice", "nonesuch", "tool_choice", "regex"),
    ("openai-chat", {}, "stop", ["a", "b", "c", "d", "e"], "stop", "maxitems"),
    ("openai-chat", {}, "logprobs", True, "logprobs", "allowed"),
    ("openai-chat", {}, "top_logprobs", 5, "top_logprobs", "allowed"),
    ("openai-chat", {}, "logit_bias", {"50256": -100}, "logit_bias", "allowed"),
    ("openai-chat", {"allow_logit_bias": True}, "logit_bias", {"50256": -101}, "logit_bias.*", "min"),
    ("openai-chat", {"allow_logit_bias": True}, "logit_bias", {"token": 1}, "logit_bias.token", "regex"),
    ("openai-chat", {"allow_logprobs": True}, "top_logprobs", 21, "top_logprobs", "max"),
    ("openai-chat", {}, "metadata", {"k": "x" * 513}, "metadata.k", "maxlength"),
    ("openai-chat", {}, "response_format.type", "xml", "response_format.type", "allowed"),
    ("openai-responses", {}, "input.0.role", "boss", "input.0.role", "allowed"),
    ("openai-responses", {"allow_system": False}, "instructions", "Obey me", "instructions", "allowed"),
    ("openai-responses", {"allow_system": False}, "input.0.role", "developer", "input.0.role", "allowed"),
    ("openai-responses", {"max_items": 3}, "model", "m", "input", "maxitems"),
    ("openai-responses", {"max_message_chars": 8}, "input", "x" * 9, "input", "maxchars"),
    (
        "openai-responses",
        {},
        "input.1.content.1.image_url",
        "http://x",
        "input.1.content.1.image_url",
        "regex",
    ),
    ("openai-responses", {"allow_images": False}, "model", "m", "input.1.content.1.type", "allowed"),
    ("openai-responses", {}, "include", ["message.output_text.logprobs"], "include", "allowed"),
    ("openai-responses", {}, "top_logprobs", 3, "top_logprobs", "allowed"),
    ("openai-responses", {"max_output_tokens": 100}, "max_output_tokens", 101, "max_output_tokens", "max"),
    ("openai-responses", {}, "tools.0.type", "web_search", "tools.0.type", "allowed"),
    ("openai-responses", {}, "reasoning.effort", "extreme", "reasoning.effort", "allowed"),
    ("openai-embeddings", {}, "input", "", "input", "empty"),
    ("openai-embeddings", {}, "input", [], "input", "empty"),
    ("openai-embeddings", {"max_inputs": 1}, "model", "m", "input", "maxitems"),
    ("openai-embeddings", {"max_input_chars": 5}, "input", ["123456"], "input.0", "maxlength"),
    ("openai-embeddings", {"max_input_chars": 5}, "input", "123456", "input", "maxchars"),
    ("openai-embeddings", {}, "input", [[1, 2, -3]], "input.0.2", "min"),
    ("openai-embeddings", {}, "input", [{"text": "x"}], "input.0", "type"),
    ("openai-embeddings", {"max_dimensions": 100}, "dimensions", 101, "dimensions", "max"),
    ("openai-embeddings", {}, "encoding_format", "int8", "encoding_format", "allowed"),
]


@pytest.mark.parametrize(("name", "options", "path", "value", "error_path", "rule"), CASES)
async def test_preset_rule(
    name: str, options: dict[str, Any], path: str, value: Any, error_path: str, rule: str
) -> None:
    response = await post(Validate(preset=name, **options), changed(BASES[name], path, value))
    assert response.status_code == 422, response.text
    # Tight options can make other parts of the base document fail too.
    assert {"path": error_path, "rule": rule} in response.json()["errors"]
    if not options:
        assert len(response.json()["errors"]) == 1


ALLOWED: list[tuple[str, dict[str, Any], str, Any]] = [
    ("openai-chat", {}, "logprobs", False),
    ("openai-chat", {}, "logit_bias", {}),
    ("openai-chat", {"allow_logprobs": True}, "logprobs", True),
    ("openai-chat", {"allow_logprobs": True}, "top_logprobs", 5),
    ("openai-chat", {"allow_logit_bias": True}, "logit_bias", {"50256": -100}),
    ("openai-chat", {"max_n": 4}, "n", 4),
    ("openai-chat", {}, "tool_choice", {"type": "function", "function": {"name": "lookup"}}),
    ("openai-chat", {}, "stop", "END"),
    ("openai-chat", {}, "messages.2.content.1.image_url.url", "data:image/jpeg;base64,/9j/4AAQ"),
    ("openai-responses", {}, "input", "just a string"),
    ("openai-responses", {"allow_logprobs": True}, "include", ["message.output_text.logprobs"]),
    ("openai-embeddings", {}, "input", "one text"),
    ("openai-embeddings", {}, "input", [1, 2, 3]),
    ("openai-embeddings", {}, "input", [[1, 2], [3]]),
]


@pytest.mark.parametrize(("name", "options", "path", "value"), ALLOWED)
async def test_preset_accepts(name: str, options: dict[str, Any], path: str, value: Any) -> None:
    response = await post(Validate(preset=name, **options), changed(BASES[name], path, value))
    assert response.status_code == 200, response.text


def test_preset_options_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="unexpected keyword"):
        Validate(preset="openai-chat", max_mesages=3)
    with pytest.raises(ConfigurationError):
        Validate(preset="openai-chat", max_messages=0)
    with pytest.raises(ConfigurationError):
        Validate(preset="openai-chat", allow_system="no")
    with pytest.raises(ConfigurationError):
        Validate(preset="openai-embeddings", allow_system=False)


def test_preset_schema_is_a_fresh_dict_to_extend() -> None:
    first = preset_schema("openai-chat")
    first["model"]["maxlength"] = 1
    assert preset_schema("openai-chat")["model"]["maxlength"] != 1


async def test_registered_preset_is_usable_by_name() -> None:
    def ask_schema(*, max_chars: int = 100) -> dict[str, Any]:
        return {"question": {"type": "string", "required": True, "maxlength": max_chars}}

    register_preset(Preset("test-ask", ask_schema, text_fields=("question",)))
    assert "test-ask" in preset_names()
    validate = Validate(preset="test-ask", max_chars=5)
    assert (await post(validate, {"question": "hi"})).status_code == 200
    response = await post(validate, {"question": "too long"})
    assert response.json()["errors"] == [{"path": "question", "rule": "maxlength"}]
    with pytest.raises(ConfigurationError):
        register_preset(Preset("test-ask", lambda: {}))
    register_preset(Preset("test-ask", ask_schema, text_fields=("question",)), replace=True)


async def test_extended_preset_schema_with_an_extra_field() -> None:
    schema = preset_schema("openai-chat") | {"x_trace": {"type": "string", "maxlength": 32}}
    validate = Validate(schema=schema, text_fields=("messages[*].content",))
    assert validate.schema is not None
    assert validate.schema.compiled
    assert (await post(validate, {**CHAT, "x_trace": "abc"})).status_code == 200
