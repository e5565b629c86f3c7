"""The gateway's endpoints: pure ASGI apps behind the engine.

Each one reads the checked document from the request's context (never the raw
body), hands it to the provider, and answers with the provider's reply, a
stream, or a problem+json when the provider failed (``502``/``503``/``504``,
never a 500). A client that disconnects cancels the provider call.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import Receive, Scope, Send

from airlock.context import Context
from airlock.errors import Rejection, ValidationFailed
from airlock.gateway.models import models_document
from airlock.gateway.streaming import forward_stream, until_disconnect
from airlock.pipeline import CONTEXT_SCOPE_KEY
from airlock.problem import send_problem
from airlock.provider.base import ChatStream, Provider, ProviderRequest, Reply

__all__ = ["ChatCompletions", "Embeddings", "Healthz", "Models"]

ProviderCall = Callable[[ProviderRequest], Awaitable[Reply | ChatStream]]


def _not_an_object() -> ValidationFailed:
    return ValidationFailed(
        "The request body must be a JSON object.", extensions={"errors": [{"path": "", "rule": "type"}]}
    )


def context_of(scope: Scope) -> Context:
    ctx = scope.get(CONTEXT_SCOPE_KEY)
    if not isinstance(ctx, Context):
        raise RuntimeError("gateway endpoints run behind AirlockMiddleware")
    return ctx


async def send_json(send: Send, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode("latin-1"))]
    raw.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items())
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def refuse(ctx: Context, send: Send, error: Rejection, *, outcome: str, stage: str) -> None:
    """Answer with ``error`` as problem+json and record where the request ended."""
    ctx.problem = error
    ctx.outcome = outcome
    ctx.stage = stage
    await send_problem(send, error, request_id=ctx.request_id)


class _ProviderEndpoint(ABC):
    """One provider call per request, cancelled when the client leaves; the subclass picks the call."""

    def __init__(self, provider: Provider, *, max_event_bytes: int = 8 * 1024 * 1024) -> None:
        self.provider = provider
        self.max_event_bytes = max_event_bytes

    def __repr__(self) -> str:
        return f"<{type(self).__name__} provider={self.provider.name}>"

    @abstractmethod
    def _call(self, payload: dict[str, Any], facts: dict[str, Any]) -> ProviderCall:
        """The provider method that answers ``payload`` (noting the choice in ``facts``)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = context_of(scope)
        payload = ctx.json
        if not isinstance(payload, dict):
            await refuse(ctx, send, _not_an_object(), outcome="rejected", stage="validate")
            return
        model = payload.get("model")
        ctx.provider = self.provider.name
        ctx.model = model if isinstance(model, str) else None
        facts: dict[str, Any] = ctx.audit.setdefault("provider", {})
        facts["name"] = self.provider.name
        call = self._call(payload, facts)
        request = ProviderRequest(payload, ctx.body, ctx.request_id)
        try:
            result, gone = await until_disconnect(receive, lambda: call(request))
        except Rejection as exc:
            await refuse(ctx, send, exc, outcome="error", stage="provider")
            return
        if gone or result is None:
            if isinstance(result, ChatStream):
                await result.aclose()
            ctx.client_disconnected = True
            ctx.outcome = "abandoned"
            facts["abandoned"] = True
            return
        if isinstance(result, Reply):
            await self._answer(ctx, send, result, facts)
            return
        # A ChatStream: only a streamed chat completion returns one.
        facts["attempts"] = result.attempts
        facts["upstream_status"] = 200
        options = payload.get("stream_options")
        wants_usage = isinstance(options, dict) and options.get("include_usage") is True
        await forward_stream(
            ctx,
            result,
            receive,
            send,
            wants_usage=wants_usage,
            max_event_bytes=self.max_event_bytes,
            model=ctx.model,
        )

    async def _answer(self, ctx: Context, send: Send, reply: Reply, facts: dict[str, Any]) -> None:
        facts["attempts"] = reply.attempts
        facts["upstream_status"] = reply.status
        if 200 <= reply.status < 300 and reply.usage is not None:
            usage = reply.usage
            model = reply.model or ctx.model
            ctx.report_usage(
                usage.prompt_tokens, usage.completion_tokens, provider=self.provider.name, model=model
            )
        await send_json(send, reply.status, reply.body, reply.headers)


class ChatCompletions(_ProviderEndpoint):
    """``POST /v1/chat/completions``, streamed (``"stream": true``) or not."""

    def _call(self, payload: dict[str, Any], facts: dict[str, Any]) -> ProviderCall:
        stream = payload.get("stream") is True
        facts["stream"] = stream
        return self.provider.stream_chat if stream else self.provider.chat


class Embeddings(_ProviderEndpoint):
    """``POST /v1/embeddings``."""

    def _call(self, payload: dict[str, Any], facts: dict[str, Any]) -> ProviderCall:
        return self.provider.embeddings


class Models:
    """``GET /v1/models``: the models the configuration lists."""

    def __init__(self, models: tuple[str, ...], owner: str) -> None:
        self.body = json.dumps(models_document(models, owner), separators=(",", ":")).encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, self.body)


class Healthz:
    """``GET /healthz``: liveness only (no auth, no limits, no audit, no provider call)."""

    body = b'{"status":"ok"}'

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, self.body)
