"""The ``openai-chat`` preset: ``POST /v1/chat/completions``."""

from __future__ import annotations

from typing import Any

from airlock.validation.openai.common import (
    IMAGE_URL_REGEX,
    SHORT_TEXT,
    Rules,
    choice,
    content,
    flag,
    flag_field,
    format_type,
    function_fields,
    int_field,
    json_object,
    json_schema_fields,
    logprob_fields,
    metadata,
    model,
    number,
    positive,
    string,
    tool_choice,
    tools,
)

__all__ = ["chat_schema"]


def chat_schema(
    *,
    max_messages: int = 256,
    max_message_chars: int = 65_536,
    max_parts: int = 64,
    max_output_tokens: int = 16_384,
    max_n: int = 1,
    max_tools: int = 32,
    allow_system: bool = True,
    allow_images: bool = True,
    allow_logprobs: bool = False,
    allow_logit_bias: bool = False,
) -> dict[str, Any]:
    """``POST /v1/chat/completions``."""
    max_messages = positive("max_messages", max_messages)
    max_chars = positive("max_message_chars", max_message_chars)
    max_parts = positive("max_parts", max_parts)
    max_output = positive("max_output_tokens", max_output_tokens)
    max_n = positive("max_n", max_n)
    max_tools = positive("max_tools", max_tools)
    roles = ["user", "assistant", "tool"]
    if flag("allow_system", allow_system):
        roles[:0] = ["system", "developer"]
    part: Rules = {
        "type": {"type": "string", "required": True, "allowed": ["text"]},
        "text": {"type": "string", "maxlength": max_chars},
    }
    if flag("allow_images", allow_images):
        part["type"]["allowed"].append("image_url")
        part["image_url"] = {
            "type": "dict",
            "schema": {
                "url": {"type": "string", "required": True, "regex": IMAGE_URL_REGEX},
                "detail": {"type": "string", "allowed": ["auto", "low", "high"]},
            },
        }
    tool_call = {
        "id": string(required=True),
        "type": {"type": "string", "required": True, "allowed": ["function"]},
        "function": {
            "type": "dict",
            "required": True,
            "schema": {"name": string(64, required=True), "arguments": string(max_chars, required=True)},
        },
    }
    message = {
        "role": {"type": "string", "required": True, "allowed": roles},
        "content": content(max_chars, max_parts, part, nullable=True),
        "name": string(64),
        "tool_calls": {
            "type": "list",
            "maxlength": max_tools,
            "schema": {"type": "dict", "schema": tool_call},
        },
        "tool_call_id": string(),
        "refusal": {"type": "string", "nullable": True, "maxlength": max_chars},
    }
    schema: dict[str, Any] = {
        "model": model(),
        "messages": {
            "type": "list",
            "required": True,
            "minlength": 1,
            "maxlength": max_messages,
            "schema": {"type": "dict", "schema": message},
        },
        "max_tokens": int_field(1, max_output),
        "max_completion_tokens": int_field(1, max_output),
        "n": int_field(1, max_n),
        "temperature": number(0, 2),
        "top_p": number(0, 1),
        "frequency_penalty": number(-2, 2),
        "presence_penalty": number(-2, 2),
        "seed": int_field(),
        "stop": {
            "type": ["string", "list"],
            "nullable": True,
            "maxchars": SHORT_TEXT,
            "maxitems": 4,
            "schema": string(),
        },
        "stream": flag_field(),
        "stream_options": {
            "type": "dict",
            "nullable": True,
            "schema": {"include_usage": {"type": "boolean"}, "include_obfuscation": {"type": "boolean"}},
        },
        "response_format": {
            "type": "dict",
            "nullable": True,
            "schema": {
                "type": format_type(),
                "json_schema": {"type": "dict", "schema": json_schema_fields(name_required=True)},
            },
        },
        "tools": tools(
            max_tools,
            {
                "type": {"type": "string", "required": True, "allowed": ["function"]},
                "function": {"type": "dict", "required": True, "schema": function_fields()},
            },
        ),
        "tool_choice": tool_choice(
            function={"type": "dict", "schema": {"name": {"type": "string", "required": True}}},
            allowed_tools=json_object(),
        ),
        "parallel_tool_calls": flag_field(),
        "user": string(),
        "safety_identifier": string(),
        "prompt_cache_key": string(),
        "store": flag_field(),
        "metadata": metadata(),
        "modalities": {"type": "list", "nullable": True, "allowed": ["text"]},
        "reasoning_effort": choice("none", "minimal", "low", "medium", "high"),
        "verbosity": choice("low", "medium", "high"),
        "service_tier": choice("auto", "default", "flex", "priority", "scale"),
    }
    allow_logprobs = flag("allow_logprobs", allow_logprobs)
    schema.update(logprob_fields(allow_logprobs, logit_bias=flag("allow_logit_bias", allow_logit_bias)))
    return schema
