"""The offline ``echo`` provider: answers with what it received, so you see what would leave.

It repeats the text of the last user message exactly as airlock forwarded it
(after validation, sanitisation and anonymization), in an OpenAI-shaped chat
completion. No network, no key.
"""

from __future__ import annotations

import os
import time
from typing import Any

__all__ = ["EchoProvider", "last_user_text"]


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


class EchoProvider:
    name = "echo"

    def __repr__(self) -> str:
        return "<EchoProvider>"

    async def chat_completion(self, payload: Any) -> dict[str, Any]:
        text = last_user_text(payload)
        prompt_tokens = sum(
            _rough_tokens(_text_of(m.get("content")))
            for m in (payload.get("messages") or [] if isinstance(payload, dict) else [])
            if isinstance(m, dict)
        )
        model = payload.get("model") if isinstance(payload, dict) else None
        return {
            "id": "chatcmpl-echo-" + os.urandom(8).hex(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model if isinstance(model, str) and model else "echo",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": _rough_tokens(text),
                "total_tokens": prompt_tokens + _rough_tokens(text),
            },
        }
