"""``openai``: any OpenAI-compatible API (OpenAI, Azure OpenAI's v1 API, vLLM, Ollama, LiteLLM).

The request body goes out exactly as airlock's checks left it. Only a streamed
call is changed, to ask for ``stream_options.include_usage``: the final chunk
then carries the token usage that settles the caller's budget (the gateway
drops that chunk again when the client did not ask for it).
"""

from __future__ import annotations

from typing import Any

from airlock.parse import dump_json
from airlock.provider.base import ChatStream, ProviderRequest, Reply
from airlock.provider.http import HTTPProvider

__all__ = ["OpenAIProvider", "with_stream_usage"]


def with_stream_usage(payload: dict[str, Any]) -> bytes:
    """``payload`` as a streamed request that reports usage in its final chunk."""
    options = payload.get("stream_options")
    document = {
        **payload,
        "stream": True,
        "stream_options": {**(options if isinstance(options, dict) else {}), "include_usage": True},
    }
    return dump_json(document)


class OpenAIProvider(HTTPProvider):
    """Calls ``<base_url>/chat/completions`` and ``<base_url>/embeddings``."""

    name = "openai"

    async def chat(self, request: ProviderRequest) -> Reply:
        return await self._complete("chat/completions", request, request.body)

    async def stream_chat(self, request: ProviderRequest) -> ChatStream | Reply:
        return await self._open_stream("chat/completions", request, with_stream_usage(request.payload))

    async def embeddings(self, request: ProviderRequest) -> Reply:
        return await self._complete("embeddings", request, request.body)
