"""The engine: runs one policy's stages over one request, in a fixed order.

::

    identify -> admit -> read body -> parse -> validate -> sanitize -> anonymize -> budget -> app

A stage refuses by raising a :class:`~airlock.errors.Rejection`; the engine then
answers with problem+json (only if no response has started) and never calls the
app. Whatever happens (accepted, refused, abandoned by the client, or an error in
the app) the request ends with the deferred finalizers (budget settlement,
concurrency release) and exactly one call of the audit sink.

All three front doors (middleware, decorator, FastAPI dependency) call
:meth:`Engine.handle`; none of them re-implements a check.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from airlock.body import parse_content_length, read_body
from airlock.context import Context
from airlock.errors import ClientDisconnected, InvalidContentLength, Rejection
from airlock.parse import check_json_media_type, dump_json, parse_json
from airlock.policy import Policy, Stage
from airlock.problem import send_problem

__all__ = ["CONTEXT_SCOPE_KEY", "STAGE_ORDER", "Engine", "call_hooks"]

logger = logging.getLogger("airlock")

STAGE_ORDER = ("identify", "admit", "read_body", "parse", "validate", "sanitize", "anonymize", "budget")
# Scope key under which the engine leaves the request's context; its presence also
# tells an inner front door that the request was already checked.
CONTEXT_SCOPE_KEY = "airlock.context"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


# Fresh request ids, 16 random bytes each, drawn from the OS in batches: os.urandom releases the
# GIL, and a release per request hands the GIL to the audit writer thread and back (several us
# on a busy loop). A deque's popleft is atomic, so threads running loops never share an id.
_ID_BATCH = 256
_fresh_ids: deque[str] = deque()


def _new_request_id() -> str:
    try:
        return _fresh_ids.popleft()
    except IndexError:
        pool = os.urandom(16 * _ID_BATCH).hex()
        _fresh_ids.extend(pool[start : start + 32] for start in range(32, len(pool), 32))
        return pool[:32]


if hasattr(os, "register_at_fork"):
    # A forked worker must never hand out the ids its parent may still use.
    os.register_at_fork(after_in_child=_fresh_ids.clear)


def _request_id(value: bytes | None) -> str:
    if value is not None:
        try:
            text: str = value.decode("ascii")
        except UnicodeDecodeError:
            text = ""
        if _REQUEST_ID_RE.fullmatch(text):
            return text
    return _new_request_id()


class _Headers:
    """The few request headers the engine needs, found in one pass over the scope."""

    __slots__ = ("chunked", "content_length", "content_type", "request_id")

    def __init__(self, headers: list[tuple[bytes, bytes]], request_id_header: bytes) -> None:
        self.content_type: list[bytes] = []
        self.content_length: list[bytes] = []
        self.request_id: bytes | None = None
        self.chunked = False
        for name, value in headers:
            if name == b"content-type":
                self.content_type.append(value)
            elif name == b"content-length":
                self.content_length.append(value)
            elif name == b"transfer-encoding":
                self.chunked = True
            elif name == request_id_header and self.request_id is None:
                self.request_id = value

    @property
    def announces_body(self) -> bool:
        return self.chunked or any(value.strip() not in (b"", b"0") for value in self.content_length)


class Engine:
    """One compiled policy. Build once (per app or per route), call per request."""

    __slots__ = ("_json_stages", "_request_id_header", "_request_id_header_b", "policy")

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._request_id_header = policy.request_id_header
        self._request_id_header_b = policy.request_id_header.encode("latin-1")
        self._json_stages: tuple[tuple[str, tuple[Stage, ...]], ...] = tuple(
            (name, getattr(policy, name))
            for name in ("validate", "sanitize", "anonymize")
            if getattr(policy, name)
        )

    def __repr__(self) -> str:
        return f"<airlock.Engine enabled={self.policy.enabled}>"

    async def handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        app: ASGIApp,
        *,
        route: str | None = None,
    ) -> None:
        policy = self.policy
        if not policy.enabled:
            await app(scope, receive, send)
            return
        headers = _Headers(scope.get("headers", ()), self._request_id_header_b)
        ctx = Context(scope, policy, _request_id(headers.request_id), route)
        scope[CONTEXT_SCOPE_KEY] = ctx
        scope.setdefault("state", {})["airlock"] = ctx
        try:
            try:
                await self._check(ctx, scope, receive, headers)
            except Rejection as exc:
                if ctx.stage is not None and ctx.stage not in ctx.timings:
                    ctx.timings[ctx.stage] = (time.perf_counter() - ctx.stage_started) * 1000.0
                ctx.problem = exc
                ctx.outcome = "rejected"
                ctx.status = exc.status
                unread = not ctx.body_complete and (headers.announces_body or ctx.stage == "read_body")
                await self._send_rejection(ctx, receive, send, exc, unread_body=unread)
                return
            except ClientDisconnected:
                ctx.outcome = "abandoned"
                ctx.client_disconnected = True
                return
            ctx.stage = None
            await app(scope, self._app_receive(ctx, receive), self._app_send(ctx, send))
        except anyio.get_cancelled_exc_class():
            # The server or an outer scope gave up on this request (shutdown, client gone).
            if not ctx.response_started and ctx.outcome == "allowed":
                ctx.outcome = "abandoned"
            raise
        except BaseException:
            if not ctx.response_started and ctx.outcome == "allowed":
                ctx.outcome = "error"
                ctx.status = 500
            raise
        finally:
            # Most requests defer nothing: then the audit call is all that is left, without a coroutine.
            if ctx.finalizers:
                await self._run_finalizers(ctx)
            self._record(ctx)

    async def _check(self, ctx: Context, scope: Scope, receive: Receive, headers: _Headers) -> None:
        policy = self.policy
        clock = time.perf_counter

        if policy.identity is not None:
            ctx.stage = "identify"
            ctx.stage_started = clock()
            ctx.identity = await policy.identity(scope)
            ctx.timings["identify"] = (clock() - ctx.stage_started) * 1000.0

        if policy.admit:
            await _run_stages(ctx, "admit", policy.admit)

        ctx.stage = "read_body"
        ctx.stage_started = clock()
        declared = parse_content_length(headers.content_length)
        body = await read_body(
            receive, declared=declared, limit=policy.max_body_bytes, time_limit=policy.body_timeout
        )
        ctx.body = body
        ctx.bytes_in = len(body)
        ctx.body_complete = True
        if declared is not None and declared != len(body):
            raise InvalidContentLength()
        ctx.timings["read_body"] = (clock() - ctx.stage_started) * 1000.0

        if policy.json and (body or ctx.method in _BODY_METHODS):
            ctx.stage = "parse"
            ctx.stage_started = clock()
            check_json_media_type(headers.content_type)
            ctx.json = parse_json(body, max_depth=policy.max_json_depth)
            ctx.timings["parse"] = (clock() - ctx.stage_started) * 1000.0
            for name, stages in self._json_stages:
                await _run_stages(ctx, name, stages)

        if policy.budget:
            await _run_stages(ctx, "budget", policy.budget)

        if ctx.modified:
            self._rewrite_body(ctx, scope)

    @staticmethod
    def _rewrite_body(ctx: Context, scope: Scope) -> None:
        # The app (and whatever it forwards to) must see the cleaned document,
        # never the original bytes.
        body = dump_json(ctx.json)
        ctx.body = body
        headers = [(k, v) for k, v in scope.get("headers", ()) if k != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode("latin-1")))
        scope["headers"] = headers

    def _app_receive(self, ctx: Context, receive: Receive) -> Receive:
        # The checked body once, as one message; then the server's receive, so the app still
        # learns of http.disconnect (and the audit records it).
        first: Message | None = {"type": "http.request", "body": ctx.body, "more_body": False}

        async def app_receive() -> Message:
            nonlocal first
            if first is not None:
                message, first = first, None
                return message
            message = await receive()
            if message["type"] == "http.disconnect":
                ctx.client_disconnected = True
            return message

        return app_receive

    def _app_send(self, ctx: Context, send: Send) -> Send:
        request_id_header = (self._request_id_header_b, ctx.request_id.encode("latin-1"))
        held: list[Message] = []

        async def app_send(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                if ctx.response_started:
                    raise RuntimeError("http.response.start sent twice")
                ctx.response_started = True
                ctx.status = message["status"]
                headers = list(message.get("headers", ()))
                headers.append(request_id_header)
                headers.extend(ctx.response_headers)
                message = {**message, "headers": headers}
                if ctx.body_filter is not None:
                    if not ctx.body_filter.begin(ctx.status, headers):
                        ctx.body_filter = None
                    else:
                        # Hold the start until the first body chunk tells whether the
                        # rewritten body can keep a Content-Length.
                        held.append(message)
                        return
            elif kind == "http.response.body":
                body_filter = ctx.body_filter
                if body_filter is not None:
                    more = message.get("more_body", False)
                    out = body_filter.feed(message.get("body", b""))
                    if not more:
                        out += body_filter.flush()
                    if held:
                        start = held.pop()
                        start["headers"] = _fix_length(start["headers"], len(out) if not more else None)
                        await send(start)
                    message = {"type": kind, "body": out, "more_body": more}
                ctx.bytes_out += len(message.get("body", b""))
            try:
                await send(message)
            except OSError:
                # ASGI 2.4 servers raise OSError from send() once the client is gone.
                ctx.client_disconnected = True
                raise

        return app_send

    async def _send_rejection(
        self, ctx: Context, receive: Receive, send: Send, error: Rejection, *, unread_body: bool
    ) -> None:
        extra = [(self._request_id_header_b, ctx.request_id.encode("latin-1")), *ctx.response_headers]
        ctx.response_started = True
        if not unread_body:
            ctx.bytes_out += await send_problem(send, error, request_id=ctx.request_id, extra_headers=extra)
            return
        # Refused before the body was read to its end, so the rest is still on the wire.
        # Closing at once would make the kernel answer the client's next bytes with a reset
        # that can destroy the refusal before the client reads it; keeping the connection
        # would let a slowloris client hold it. So, like nginx's lingering close: send the
        # whole answer, discard what still arrives for a bounded time and size, then close.
        if ctx.scope.get("http_version", "1.1") in ("1.0", "1.1"):
            extra.append((b"connection", b"close"))
        ctx.bytes_out += await send_problem(
            send, error, request_id=ctx.request_id, extra_headers=extra, finish=False
        )
        await _discard_body(receive, self.policy.linger_seconds, self.policy.linger_bytes)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    @staticmethod
    async def _run_finalizers(ctx: Context) -> None:
        pending: list[Awaitable[None]] = []
        for finalizer in ctx.finalizers:
            try:
                result = finalizer(ctx)
            except Exception:  # a finalizer must never hide the response or skip the audit
                logger.exception("airlock finalizer failed (request_id=%s)", ctx.request_id)
                continue
            if result is not None:
                pending.append(result)
        if pending:
            # Shielded: a cancelled request must still release its concurrency slot and
            # settle its budget. Only awaited work needs it (the scope costs ~7 us).
            with anyio.CancelScope(shield=True):
                for awaitable in pending:
                    try:
                        await awaitable
                    except Exception:
                        logger.exception("airlock finalizer failed (request_id=%s)", ctx.request_id)

    def _record(self, ctx: Context) -> None:
        audit = self.policy.audit
        if audit is not None:
            try:
                audit.record(ctx)
            except Exception:
                logger.exception("airlock audit sink failed (request_id=%s)", ctx.request_id)


async def _run_stages(ctx: Context, name: str, stages: tuple[Stage, ...]) -> None:
    ctx.stage = name
    ctx.stage_started = started = time.perf_counter()
    for stage in stages:
        await stage(ctx)
    ctx.timings[name] = (time.perf_counter() - started) * 1000.0


async def _discard_body(receive: Receive, seconds: float, max_bytes: int) -> None:
    discarded = 0
    with anyio.move_on_after(seconds):
        while discarded <= max_bytes:
            message = await receive()
            if message["type"] != "http.request":
                return
            discarded += len(message.get("body", b""))
            if not message.get("more_body", False):
                return


def _fix_length(headers: list[tuple[bytes, bytes]], length: int | None) -> list[tuple[bytes, bytes]]:
    fixed = [(k, v) for k, v in headers if k.lower() != b"content-length"]
    if length is not None:
        fixed.append((b"content-length", str(length).encode("latin-1")))
    return fixed


async def call_hooks(components: list[Any], name: str) -> None:
    """Await ``component.<name>()`` once per distinct component that has it."""
    seen: set[int] = set()
    for component in components:
        if id(component) in seen:
            continue
        seen.add(id(component))
        hook: Callable[[], Awaitable[None]] | None = getattr(component, name, None)
        if hook is not None:
            await hook()
