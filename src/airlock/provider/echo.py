"""The offline ``echo`` provider: answers with what it received, so you see what would leave.

It repeats the text of the last user message exactly as airlock forwarded it
(after validation, sanitisation and anonymization), as an OpenAI-shaped chat
completion, streamed or not. Embeddings are deterministic vectors derived from
a hash of each input. No network, no key.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

from airlock.context import Usage
from airlock.parse import dump_json
from airlock.provider.base import ChatStream, Provider, ProviderRequest, Reply

__all__ = ["EchoProvider", "last_user_text"]

_WORDS_RE = re.compile(r"\S+\s*|\s+")
_DEFAULT_DIMENSIONS = 16


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        ]
        return "\n".join(text for text in parts if isinstance(text, str))
    return ""


def last_user_text(payload: Any) -> str:
    """The text of the last ``user`` message of a chat payload ("" if there is none)."""
    messages = payload.get("messages") if isinstance(payload, dict) else None
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def _rough_tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4) if text else 0


def _prompt_tokens(payload: Any) -> int:
    messages = payload.get("messages") if isinstance(payload, dict) else None
    if not isinstance(messages, list):
        return 0
    return sum(_rough_tokens(_text_of(m.get("content"))) for m in messages if isinstance(m, dict))


def _model(payload: Any, default: str = "echo") -> str:
    model = payload.get("model") if isinstance(payload, dict) else None
    return model if isinstance(model, str) and model else default


def _vector(text: str, dimensions: int) -> list[float]:
    """A unit vector that depends only on ``text`` (same input, same vector)."""
    raw = b""
    counter = 0
    while len(raw) < dimensions * 4:
        raw += hashlib.sha256(counter.to_bytes(4, "big") + text.encode("utf-8", "surrogatepass")).digest()
        counter += 1
    values = [v / 2**31 - 1.0 for v in struct.unpack(f">{dimensions}I", raw[: dimensions * 4])]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return [round(v / norm, 6) for v in values]


class _EchoStream(ChatStream):
    def __init__(self, events: list[bytes]) -> None:
        self._events = events
        self.headers: dict[str, str] = {}
        self.attempts = 1

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for event in self._events:
            yield event

    async def aclose(self) -> None:
        self._events = []


class EchoProvider(Provider):
    name = "echo"

    def __repr__(self) -> str:
        return "<EchoProvider>"

    def completion(self, payload: Any) -> dict[str, Any]:
        """The OpenAI-shaped chat completion echo answers ``payload`` with."""
        text = last_user_text(payload)
        prompt_tokens = _prompt_tokens(payload)
        return {
            "id": "chatcmpl-echo-" + os.urandom(8).hex(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": _model(payload),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": _rough_tokens(text),
                "total_tokens": prompt_tokens + _rough_tokens(text),
            },
        }

    async def chat_completion(self, payload: Any) -> dict[str, Any]:
        """Kept for callers of the foundation's echo provider."""
        return self.completion(payload)

    async def chat(self, request: ProviderRequest) -> Reply:
        document = self.completion(request.payload)
        usage = document["usage"]
        return Reply(
            200,
            dump_json(document),
            usage=Usage(usage["prompt_tokens"], usage["completion_tokens"]),
            model=document["model"],
        )

    async def stream_chat(self, request: ProviderRequest) -> ChatStream:
        """The reply word by word as ``chat.completion.chunk`` events, usage in the last one."""
        payload = request.payload
        text = last_user_text(payload)
        base = {
            "id": "chatcmpl-echo-" + os.urandom(8).hex(),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": _model(payload),
        }

        def event(choices: list[Any], **extra: Any) -> bytes:
            return b"data: " + dump_json({**base, "choices": choices, **extra}) + b"\n\n"

        events = [event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
        events.extend(
            event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
            for piece in _WORDS_RE.findall(text)
        )
        events.append(event([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
        prompt_tokens = _prompt_tokens(payload)
        completion_tokens = _rough_tokens(text)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        events.append(event([], usage=usage))
        events.append(b"data: [DONE]\n\n")
        return _EchoStream(events)

    async def embeddings(self, request: ProviderRequest) -> Reply:
        payload = request.payload
        raw = payload.get("input")
        inputs = raw if isinstance(raw, list) else [raw]
        dimensions = payload.get("dimensions")
        if not isinstance(dimensions, int) or isinstance(dimensions, bool) or not 1 <= dimensions <= 4096:
            dimensions = _DEFAULT_DIMENSIONS
        texts = [item if isinstance(item, str) else json.dumps(item) for item in inputs]
        prompt_tokens = sum(_rough_tokens(text) for text in texts)
        document: dict[str, Any] = {
            "object": "list",
            "data": [
                {"object": "embedding", "index": index, "embedding": _vector(text, dimensions)}
                for index, text in enumerate(texts)
            ],
            "model": _model(payload),
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        }
        return Reply(200, dump_json(document), usage=Usage(prompt_tokens, 0), model=document["model"])
