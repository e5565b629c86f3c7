"""Talking to the provider while listening for the client to leave.

Every provider call runs next to a watcher of ``receive()``: when the client
disconnects, the call is cancelled at once (the upstream connection is closed,
so the provider stops generating, and no retry is started). A streamed reply is
forwarded event by event as the provider sends it; the token usage in its final
event settles the request (``ctx.report_usage``), and that usage-only event is
dropped again when the client did not ask for it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
from starlette.types import Receive, Send

from airlock.context import Context, Usage
from airlock.errors import Rejection
from airlock.provider.base import ChatStream, usage_of
from airlock.provider.sse import EventSplitter, event_json

__all__ = ["STREAM_HEADERS", "forward_stream", "until_disconnect"]

logger = logging.getLogger("airlock.gateway")

T = TypeVar("T")

STREAM_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    # Tells nginx-style proxies not to buffer the stream.
    (b"x-accel-buffering", b"no"),
)


async def until_disconnect(receive: Receive, call: Callable[[], Awaitable[T]]) -> tuple[T | None, bool]:
    """``await call()`` unless the client disconnects first; returns ``(result, disconnected)``.

    A :class:`~airlock.errors.Rejection` raised by ``call`` propagates unchanged.
    """
    results: list[T] = []
    errors: list[Rejection] = []
    disconnected = False

    async with anyio.create_task_group() as group:

        async def watch() -> None:
            nonlocal disconnected
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    disconnected = True
                    group.cancel_scope.cancel()
                    return

        group.start_soon(watch)
        try:
            results.append(await call())
        except Rejection as exc:
            errors.append(exc)
        group.cancel_scope.cancel()
    if errors and not disconnected:
        raise errors[0]
    return (results[0] if results else None), disconnected


def _error_event(error: Rejection) -> bytes:
    # OpenAI's own convention for an error inside a stream; content-free like every problem body.
    document = {"error": {"message": error.detail, "type": error.code, "code": error.code}}
    return b"data: " + json.dumps(document, separators=(",", ":")).encode("ascii") + b"\n\n"


class _Relay:
    """Per-stream state: what to forward, and the usage seen so far."""

    __slots__ = ("events", "splitter", "usage", "wants_usage")

    def __init__(self, wants_usage: bool, max_event_bytes: int) -> None:
        self.splitter = EventSplitter(max_event_bytes)
        self.wants_usage = wants_usage
        self.usage: Usage | None = None
        self.events = 0

    def relay(self, chunk: bytes) -> bytes:
        out: list[bytes] = []
        for event in self.splitter.feed(chunk):
            self.events += 1
            if b'"usage"' in event:
                document = event_json(event)
                usage = usage_of(document)
                if usage is not None:
                    self.usage = usage
                    if not self.wants_usage and document.get("choices") == []:
                        continue
            out.append(event)
        return b"".join(out)


async def forward_stream(
    ctx: Context,
    stream: ChatStream,
    receive: Receive,
    send: Send,
    *,
    wants_usage: bool,
    max_event_bytes: int,
    model: str | None,
) -> None:
    """Send ``stream`` to the client as it arrives; close it however the exchange ends."""
    facts: dict[str, Any] = ctx.audit.setdefault("provider", {})
    headers = list(STREAM_HEADERS)
    headers.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in stream.headers.items())
    relay = _Relay(wants_usage, max_event_bytes)
    client_gone = False

    async def pump() -> None:
        try:
            async for chunk in stream:
                data = relay.relay(chunk)
                if data:
                    await send({"type": "http.response.body", "body": data, "more_body": True})
            rest = relay.splitter.flush()
            if rest:
                await send({"type": "http.response.body", "body": rest, "more_body": True})
        except Rejection as exc:
            # The response has started: the failure can only be told inside the stream.
            facts["error"] = exc.code
            ctx.outcome = "error"
            ctx.problem = exc
            ctx.stage = "provider"
            await send({"type": "http.response.body", "body": _error_event(exc), "more_body": True})

    try:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        _, client_gone = await until_disconnect(receive, pump)
        if not client_gone:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    except OSError:
        # ASGI 2.4 servers raise OSError from send() once the client has gone.
        client_gone = True
    finally:
        with anyio.CancelScope(shield=True):
            await stream.aclose()
        facts["events"] = relay.events
        if client_gone:
            ctx.client_disconnected = True
            ctx.outcome = "abandoned"
            facts["abandoned"] = True
        if relay.usage is not None:
            ctx.report_usage(
                relay.usage.prompt_tokens, relay.usage.completion_tokens, provider=ctx.provider, model=model
            )
        else:
            facts["usage"] = "missing"
