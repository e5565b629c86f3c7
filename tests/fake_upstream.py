"""A fake OpenAI-compatible upstream, and the harness to run it and the gateway in tests.

``FakeUpstream`` is a small Starlette app (run under uvicorn on a loopback port
with :func:`serving`) that records every request it receives and answers from
a script of behaviours: a completion, an SSE stream (optionally held at a gate
until the test says go), a failure status, a 429 with Retry-After, a stall, a
reset mid-body. It notices when the caller hangs up. ``resetting_server`` is a
raw TCP server that resets every connection, and :func:`lifespan` drives an
ASGI app's lifespan the way a server would.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import ssl
import struct
import threading
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import uvicorn
from anyio.abc import SocketAttribute
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from airlock.gateway import GatewayConfig, create_app
from airlock.middleware import AirlockMiddleware
from airlock.provider import ProviderSettings
from airlock.provider.openai import OpenAIProvider

Behaviour = Callable[["FakeUpstream", "Received", Receive, Send], Awaitable[None]]


@dataclass
class Received:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.body)


def completion(
    text: str, *, prompt_tokens: int = 11, completion_tokens: int = 7, model: str = "gpt-test"
) -> dict:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def chunk(
    content: str | None = None, *, usage: tuple[int, int] | None = None, finish: str | None = None
) -> bytes:
    """One ``chat.completion.chunk`` SSE event."""
    document: dict[str, Any] = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": "gpt-test"}
    if usage is not None:
        document["choices"] = []
        document["usage"] = {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": usage[0] + usage[1],
        }
    else:
        delta = {"content": content} if content is not None else {}
        document["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
    return b"data: " + json.dumps(document).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


def _last_user_text(received: Received) -> str:
    try:
        messages = received.json().get("messages", [])
    except (ValueError, AttributeError):
        return ""
    users = [m.get("content", "") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return users[-1] if users and isinstance(users[-1], str) else ""


async def _start(send: Send, status: int, headers: dict[str, str]) -> None:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})


def respond(status: int = 200, body: Any = None, *, headers: dict[str, str] | None = None) -> Behaviour:
    """Answer ``status`` with ``body`` (JSON unless bytes)."""

    async def behaviour(upstream: FakeUpstream, received: Received, receive: Receive, send: Send) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body if body is not None else {}).encode()
        out = {"content-type": "application/json", "content-length": str(len(data)), **(headers or {})}
        await _start(send, status, out)
        await send({"type": "http.response.body", "body": data})

    return behaviour


def echo_completion() -> Behaviour:
    """A completion repeating the last user message it received (the default)."""

    async def behaviour(upstream: FakeUpstream, received: Received, receive: Receive, send: Send) -> None:
        if received.path.endswith("/embeddings"):
            document: dict[str, Any] = {
                "object": "list",
                "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
                "model": "embed-test",
                "usage": {"prompt_tokens": 4, "total_tokens": 4},
            }
        else:
            document = completion(_last_user_text(received))
        await respond(200, document)(upstream, received, receive, send)

    return behaviour


def stream(events: list[bytes], *, gate: anyio.Event | None = None, gate_after: int = 1) -> Behaviour:
    """Send ``events`` as SSE; with ``gate``, wait for it after ``gate_after`` events."""

    async def behaviour(upstream: FakeUpstream, received: Received, receive: Receive, send: Send) -> None:
        await _start(send, 200, {"content-type": "text/event-stream"})
        for index, event in enumerate(events):
            if gate is not None and index == gate_after:
                await gate.wait()
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return behaviour


def stall() -> Behaviour:
    """Never answer (until the caller gives up)."""

    async def behaviour(upstream: FakeUpstream, received: Received, receive: Receive, send: Send) -> None:
        await anyio.sleep_forever()

    return behaviour


def reset_mid_body() -> Behaviour:
    """Start a 200 reply, send part of it, then drop the connection."""

    async def behaviour(upstream: FakeUpstream, received: Received, receive: Receive, send: Send) -> None:
        await _start(send, 200, {"content-type": "application/json", "content-length": "1000"})
        await send({"type": "http.response.body", "body": b'{"id": "chatcmpl-', "more_body": True})
        raise RuntimeError("fake upstream drops the connection")

    return behaviour


class FakeUpstream:
    """Records requests; answers each from ``script`` (in order), then with ``default``."""

    def __init__(self, *script: Behaviour, default: Behaviour | None = None) -> None:
        self.script = list(script)
        self.default = default or echo_completion()
        self.received: list[Received] = []
        self.disconnects = 0
        self.disconnected = anyio.Event()
        self.app = Starlette(routes=[Route("/{path:path}", _Endpoint(self), methods=["GET", "POST"])])

    def __repr__(self) -> str:
        return f"<FakeUpstream received={len(self.received)}>"

    @property
    def last(self) -> Received:
        return self.received[-1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        received = Received(scope["method"], scope["path"], scope["query_string"].decode(), headers, body)
        self.received.append(received)
        behaviour = self.script.pop(0) if self.script else self.default

        async with anyio.create_task_group() as group:

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                self.disconnects += 1
                self.disconnected.set()
                group.cancel_scope.cancel()

            group.start_soon(watch)
            await behaviour(self, received, receive, send)
            group.cancel_scope.cancel()


class _Endpoint:
    # Starlette runs an endpoint that is an object (not a function) as a raw ASGI app.
    def __init__(self, upstream: FakeUpstream) -> None:
        self.upstream = upstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.upstream.handle(scope, receive, send)


@asynccontextmanager
async def serving(app: Any, **options: Any) -> AsyncIterator[int]:
    """Run ``app`` under uvicorn on a free loopback port; yield the port."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan="off",
        log_level="critical",
        access_log=False,
        timeout_graceful_shutdown=1,
        **options,
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    async with anyio.create_task_group() as group:
        group.start_soon(server.serve)
        with anyio.fail_after(10):
            while not server.started:
                await anyio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            yield port
        finally:
            server.should_exit = True
            server.force_exit = True


@asynccontextmanager
async def resetting_server() -> AsyncIterator[tuple[int, list[int]]]:
    """A TCP server that reads the request and resets the connection; yields (port, connection count)."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(SocketAttribute.local_port)
    connections: list[int] = []

    async def handle(client: Any) -> None:
        connections.append(1)
        await client.receive()
        raw = client.extra(SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await client.aclose()

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(listener.serve, handle)
            try:
                yield port, connections
            finally:
                group.cancel_scope.cancel()
    finally:
        await listener.aclose()


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Run ``app``'s ASGI lifespan (startup before the block, shutdown after), as a server would."""
    to_app, app_inbox = anyio.create_memory_object_stream[dict[str, Any]](4)
    app_outbox, from_app = anyio.create_memory_object_stream[dict[str, Any]](4)
    async with anyio.create_task_group() as group:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        group.start_soon(app, scope, app_inbox.receive, app_outbox.send)
        await to_app.send({"type": "lifespan.startup"})
        started = await from_app.receive()
        assert started["type"] == "lifespan.startup.complete", started
        try:
            yield
        finally:
            await to_app.send({"type": "lifespan.shutdown"})
            stopped = await from_app.receive()
            assert stopped["type"] == "lifespan.shutdown.complete", stopped


KEY_ENV = "FAKE_PROVIDER_KEY"


def new_provider_key() -> str:
    """A unique, key-shaped marker: finding it anywhere it must not be proves a leak."""
    return "sk-test-" + os.urandom(16).hex()


def provider_settings(port: int, *, scheme: str = "http", **options: Any) -> ProviderSettings:
    defaults: dict[str, Any] = {
        "kind": "openai",
        "base_url": f"{scheme}://127.0.0.1:{port}/v1",
        "allow_http_loopback": scheme == "http",
        "api_key_env": (KEY_ENV,),
        "retry_backoff": 0.01,
        "retry_backoff_max": 1.0,
    }
    defaults.update(options)
    return ProviderSettings(**defaults)


def gateway_app(
    port: int,
    key: str = "sk-test-default-key-0000",
    *,
    config: dict[str, Any] | None = None,
    sink: Any = None,
    **options: Any,
) -> Any:
    """The gateway in front of a fake upstream on ``port`` with provider key ``key``."""
    settings = provider_settings(port, **options)
    gateway_config = GatewayConfig(provider=settings, **(config or {}))
    provider = OpenAIProvider(settings, environ={KEY_ENV: key})
    app = create_app(gateway_config, provider=provider)
    if sink is not None:
        app = with_audit(app, sink)
    return app


def with_audit(app: Any, sink: Any) -> Any:
    """``app`` with ``sink`` as the audit sink of every policy (to read finished contexts)."""
    middleware = app.user_middleware
    for item in middleware:
        if item.cls is AirlockMiddleware:
            policy = item.kwargs["policy"]
            item.kwargs["policy"] = dataclasses.replace(policy, audit=sink)
            routes = item.kwargs["routes"]
            for path, overrides in routes.items():
                if overrides is not None:
                    routes[path] = {**overrides, "audit": sink}
    app.middleware_stack = None
    return app


@contextmanager
def legacy_tls_server(cert: Any) -> Iterator[tuple[int, list[str]]]:
    """A TLS server that offers only TLS 1.0/1.1 (the local OpenSSL needs security level 0 for that).

    Yields its port and, per connection, how the handshake ended ("TLSv1.1" or the error).
    Runs in a thread: the handshake is blocking and the test's event loop must stay free.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    outcomes: list[str] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            raw.settimeout(5)
            try:
                with context.wrap_socket(raw, server_side=True) as tls:
                    outcomes.append(tls.version() or "?")
            except (ssl.SSLError, OSError) as exc:
                outcomes.append(type(exc).__name__)
                raw.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], outcomes
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def legacy_client_context(ca: Any) -> ssl.SSLContext:
    """A deliberately permissive client: the control that proves the server really speaks TLS 1.1."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context
