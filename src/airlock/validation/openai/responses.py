"""The ``openai-responses`` preset: ``POST /v1/responses``."""

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

__all__ = ["RESPONSES_INCLUDE", "responses_schema"]


RESPONSES_INCLUDE = (
    "reasoning.encrypted_content",
    "file_search_call.results",
    "web_search_call.action.sources",
    "web_search_call.results",
    "code_interpreter_call.outputs",
    "computer_call_output.output.image_url",
    "message.input_image.image_url",
)


def responses_schema(
    *,
    max_items: int = 256,
    max_message_chars: int = 65_536,
    max_parts: int = 64,
    max_output_tokens: int = 16_384,
    max_tools: int = 32,
    allow_system: bool = True,
    allow_images: bool = True,
    allow_logprobs: bool = False,
) -> dict[str, Any]:
    """``POST /v1/responses``. With ``allow_system=False``, ``instructions`` and
    ``system``/``developer`` items are refused too."""
    max_items = positive("max_items", max_items)
    max_chars = positive("max_message_chars", max_message_chars)
    max_parts = positive("max_parts", max_parts)
    max_output = positive("max_output_tokens", max_output_tokens)
    max_tools = positive("max_tools", max_tools)
    allow_system = flag("allow_system", allow_system)
    allow_logprobs = flag("allow_logprobs", allow_logprobs)
    roles = ["user", "assistant"] + (["system", "developer"] if allow_system else [])
    part: Rules = {
        "type": {"type": "string", "required": True, "allowed": ["input_text", "output_text", "refusal"]},
        "text": {"type": "string", "maxlength": max_chars},
        "refusal": {"type": "string", "maxlength": max_chars},
        "annotations": {"type": "list", "maxlength": 256},
    }
    if flag("allow_images", allow_images):
        part["type"]["allowed"].append("input_image")
        part["image_url"] = {"type": "string", "regex": IMAGE_URL_REGEX}
        part["detail"] = {"type": "string", "allowed": ["auto", "low", "high"]}
        part["file_id"] = string()
    item = {
        "type": {"type": "string", "allowed": ["message", "function_call", "function_call_output"]},
        "role": {"type": "string", "allowed": roles},
        "content": content(max_chars, max_parts, part, nullable=False),
        "id": string(),
        "status": {"type": "string", "allowed": ["in_progress", "completed", "incomplete"]},
        "call_id": string(),
        "name": string(64),
        "arguments": string(max_chars),
        "output": content(max_chars, max_parts, part, nullable=False),
    }
    include = list(RESPONSES_INCLUDE) + (["message.output_text.logprobs"] if allow_logprobs else [])
    schema: dict[str, Any] = {
        "model": model(),
        "input": {
            "type": ["string", "list"],
            "maxchars": max_chars,
            "maxitems": max_items,
            "schema": {"type": "dict", "schema": item},
        },
        "instructions": (
            {"type": "string", "nullable": True, "maxlength": max_chars}
            if allow_system
            else {"type": "string", "nullable": True, "allowed": []}
        ),
        "max_output_tokens": int_field(1, max_output),
        "max_tool_calls": int_field(1, max_tools),
        "temperature": number(0, 2),
        "top_p": number(0, 1),
        "stream": flag_field(),
        "stream_options": {
            "type": "dict",
            "nullable": True,
            "schema": {"include_obfuscation": {"type": "boolean"}},
        },
        "store": flag_field(),
        "background": flag_field(),
        "previous_response_id": {"type": "string", "nullable": True, "maxlength": SHORT_TEXT},
        "metadata": metadata(),
        "parallel_tool_calls": flag_field(),
        "user": string(),
        "safety_identifier": string(),
        "prompt_cache_key": string(),
        "service_tier": choice("auto", "default", "flex", "priority", "scale"),
        "truncation": choice("auto", "disabled"),
        "include": {"type": "list", "nullable": True, "maxlength": 16, "allowed": include},
        "reasoning": {
            "type": "dict",
            "nullable": True,
            "schema": {
                "effort": choice("none", "minimal", "low", "medium", "high"),
                "summary": choice("auto", "concise", "detailed"),
            },
        },
        "text": {
            "type": "dict",
            "nullable": True,
            "schema": {
                "format": {
                    "type": "dict",
                    "schema": {"type": format_type(), **json_schema_fields(name_required=False)},
                },
                "verbosity": choice("low", "medium", "high"),
            },
        },
        "tools": tools(
            max_tools,
            {"type": {"type": "string", "required": True, "allowed": ["function"]}, **function_fields()},
        ),
        "tool_choice": tool_choice(
            name=string(64),
            mode={"type": "string", "allowed": ["auto", "required"]},
            tools={"type": "list", "maxlength": max_tools},
        ),
    }
    schema.update(logprob_fields(allow_logprobs, logit_bias=None))
    return schema
