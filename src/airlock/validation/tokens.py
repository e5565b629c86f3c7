"""Prompt token estimates, made before a request costs anything.

The default counter is a heuristic, not a tokenizer: **one token per four bytes
of UTF-8, rounded up**. For English prose this is OpenAI's own rule of thumb
(about four characters per token); because it counts bytes, not characters, it
also stays in the right range for text in other scripts (a CJK character is
three bytes and usually about one token). It errs high on plain ASCII code and
low on emoji-heavy text; pass a real tokenizer when that matters::

    import tiktoken
    Validate(preset="openai-chat", token_counter=tiktoken.get_encoding("o200k_base"))

A ``token_counter`` is a callable ``(text) -> int`` or an object with
``encode_ordinary`` (a tiktoken ``Encoding``; ``encode_ordinary`` treats text such
as ``<|endoftext|>`` as plain text, as a provider does with user content).

Structure adds tokens too, counted the way OpenAI documents it for chat: 3 to
prime the reply, 4 per message, the tool definitions as their JSON text, and a
fixed cost per image part (85 for ``detail: "low"``, 765 otherwise, the cost of
a 1024x1024 image at high detail).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from airlock.errors import ConfigurationError
from airlock.fields import Fields

__all__ = [
    "Counter",
    "Estimator",
    "chat_tokens",
    "embeddings_tokens",
    "fields_estimator",
    "heuristic_tokens",
    "make_counter",
    "responses_tokens",
]

Counter = Callable[[str], int]
Estimator = Callable[[Any, Counter], int]

REPLY_PRIMING = 3
MESSAGE_OVERHEAD = 4
IMAGE_TOKENS_LOW = 85
IMAGE_TOKENS = 765
_IMAGE_PARTS = frozenset({"image_url", "input_image"})


def heuristic_tokens(text: str) -> int:
    """``ceil(utf8_bytes / 4)``: OpenAI's four-characters-per-token rule, counted in bytes."""
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    return (size + 3) // 4


def make_counter(counter: Any) -> Counter:
    """The counter to use for ``token_counter=``: ``None`` (heuristic), a callable, or a tiktoken encoding."""
    if counter is None:
        return heuristic_tokens
    encode = getattr(counter, "encode_ordinary", None)
    if callable(encode):
        return lambda text: len(encode(text))
    if callable(counter):
        return lambda text: int(counter(text))
    raise ConfigurationError("token_counter takes a callable (text) -> int or a tiktoken Encoding")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _content_tokens(content: Any, count: Counter) -> int:
    if isinstance(content, str):
        return count(content)
    total = 0
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            text = part.get("text")
            if isinstance(text, str):
                total += count(text)
            if part.get("type") in _IMAGE_PARTS:
                detail = part.get("detail")
                image = part.get("image_url")
                if isinstance(image, dict):
                    detail = image.get("detail", detail)
                total += IMAGE_TOKENS_LOW if detail == "low" else IMAGE_TOKENS
    return total


def _tools_tokens(document: dict[str, Any], count: Counter) -> int:
    tools = document.get("tools")
    return count(_dumps(tools)) if tools else 0


def chat_tokens(document: Any, count: Counter) -> int:
    """Prompt tokens of a chat completions request (messages, names, tool calls, tools)."""
    if not isinstance(document, dict):
        return 0
    total = REPLY_PRIMING + _tools_tokens(document, count)
    messages = document.get("messages")
    for message in messages if isinstance(messages, list) else ():
        if not isinstance(message, dict):
            continue
        total += MESSAGE_OVERHEAD + _content_tokens(message.get("content"), count)
        name = message.get("name")
        if isinstance(name, str):
            total += count(name)
        calls = message.get("tool_calls")
        if isinstance(calls, list) and calls:
            total += count(_dumps(calls))
    return total


def responses_tokens(document: Any, count: Counter) -> int:
    """Prompt tokens of a responses request (instructions, input items, tools)."""
    if not isinstance(document, dict):
        return 0
    total = REPLY_PRIMING + _tools_tokens(document, count)
    instructions = document.get("instructions")
    if isinstance(instructions, str):
        total += MESSAGE_OVERHEAD + count(instructions)
    items = document.get("input")
    if isinstance(items, str):
        return total + MESSAGE_OVERHEAD + count(items)
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict):
            continue
        total += MESSAGE_OVERHEAD + _content_tokens(item.get("content"), count)
        total += _content_tokens(item.get("output"), count)
        for key in ("name", "arguments"):
            value = item.get(key)
            if isinstance(value, str):
                total += count(value)
    return total


def embeddings_tokens(document: Any, count: Counter) -> int:
    """Tokens of an embeddings request: text is estimated, token arrays are counted exactly."""
    if not isinstance(document, dict):
        return 0
    data = document.get("input")
    if isinstance(data, str):
        return count(data)
    total = 0
    for item in data if isinstance(data, list) else ():
        if isinstance(item, str):
            total += count(item)
        elif isinstance(item, list):
            total += len(item)
        elif isinstance(item, int):
            total += 1
    return total


def fields_estimator(fields: Fields) -> Estimator:
    """An estimator counting every string the selectors pick (for custom schemas)."""

    def estimate(document: Any, count: Counter) -> int:
        return sum(count(text) for text in fields.strings(document))

    return estimate
