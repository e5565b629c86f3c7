"""The apps the benchmarks compare: bare Starlette, slowapi, and airlock with its stages.

Every app serves the same ``POST /v1/chat/completions`` handler, which reads the body and
answers a small fixed chat completion, so only what stands in front of the handler differs.
``uvicorn --factory`` can start each of them (``apps:bare``, ``apps:slowapi``,
``apps:airlock_full``); the airlock app reads its options from environment variables so the
load test can change limits and audit files without code.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from airlock import AirlockMiddleware, ApiKeyAuth, Context, KeyStore, Policy, hash_key

BENCH_KEY = "ak_benchmark_key_0123456789abcdefghijklmnop"
PATH = "/v1/chat/completions"

CHAT_BODY = json.dumps(
    {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant for a travel company. Be brief."},
            {
                "role": "user",
                "content": (
                    "Hi! I am planning a trip to Lisbon in May with my family of four. We like museums, "
                    "food markets and short walks. Could you suggest a three-day plan with one rainy-day "
                    "option, and tell me which neighbourhood is best to stay in for easy tram access? "
                    "Please keep it under two hundred words and avoid anything too touristy. One of the "
                    "kids uses a wheelchair, so step-free routes matter, and we would love a quiet "
                    "dinner spot with fish on the menu near the river."
                ),
            },
        ],
        "max_tokens": 300,
        "temperature": 0.7,
    }
).encode()

_COMPLETION = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 0,
    "model": "gpt-4o-mini",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Day one: Belém."}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 150, "completion_tokens": 20, "total_tokens": 170},
}


def http_scope(body: bytes, headers: Sequence[tuple[bytes, bytes]] = ()) -> dict[str, Any]:
    """A fresh ASGI scope for ``POST /v1/chat/completions`` with ``body``, as uvicorn builds it."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *headers,
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def timed_batch(
    app: Any,
    body: bytes,
    count: int,
    *,
    headers: Sequence[tuple[bytes, bytes]] = (),
    flush: Callable[[], object] | None = None,
) -> float:
    """µs per request for ``count`` in-process calls of ``app``; every answer must be a 200.

    ``flush`` runs inside the timing (e.g. ``AuditLog.flush``), so work a request leaves to a
    thread is charged to the configuration that caused it.
    """
    message = {"type": "http.request", "body": body, "more_body": False}
    status = 0

    async def receive() -> dict[str, Any]:
        return message

    async def send(event: dict[str, Any]) -> None:
        nonlocal status
        if event["type"] == "http.response.start":
            status = event["status"]

    started = time.perf_counter()
    for _ in range(count):
        await app(http_scope(body, headers), receive, send)
        if status != 200:
            raise RuntimeError(f"benchmark app answered {status}")
    if flush is not None:
        flush()
    return (time.perf_counter() - started) / count * 1e6


async def completion(request: Request) -> Response:
    await request.body()
    ctx: Context | None = getattr(request.state, "airlock", None)
    if ctx is not None:
        ctx.report_usage(150, 20, provider="bench", model="gpt-4o-mini")
    return JSONResponse(_COMPLETION)


def bare() -> Starlette:
    return Starlette(routes=[Route(PATH, completion, methods=["POST"])])


def slowapi() -> Starlette:
    """The same app with slowapi's decorator (memory storage), as users would otherwise limit it."""
    from slowapi import Limiter, _rate_limit_exceeded_handler
    from slowapi.errors import RateLimitExceeded
    from slowapi.util import get_remote_address

    limiter = Limiter(key_func=get_remote_address)

    @limiter.limit(os.environ.get("AIRLOCK_BENCH_LIMIT", "100000000/minute"))
    async def limited(request: Request) -> Response:
        return await completion(request)

    app = Starlette(routes=[Route(PATH, limited, methods=["POST"])])
    app.state.limiter = limiter
    app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]
    return app


def keys() -> KeyStore:
    return KeyStore({"bench": hash_key(BENCH_KEY)})


def stage_options(
    audit_path: str | None = None, limit: str = "100000000/minute"
) -> dict[str, dict[str, Any]]:
    """Each stage alone, as ``Policy`` keyword arguments."""
    from airlock.anonymize import Anonymize, Anonymizer
    from airlock.audit import AuditLog
    from airlock.sanitize import Sanitize
    from airlock.throttle import RateLimit, TokenBudget
    from airlock.validation import Validate

    devnull = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the benchmark app
    audit = AuditLog(path=audit_path) if audit_path else AuditLog(stream=devnull)
    return {
        "identity (API key)": {"identity": ApiKeyAuth(keys())},
        "rate limit (memory)": {"admit": RateLimit(limit)},
        "validate (openai-chat)": {"validate": Validate("openai-chat")},
        "sanitize": {"sanitize": Sanitize()},
        "anonymize": {"anonymize": Anonymize(Anonymizer(key=b"benchmark-anonymize-key-32-bytes!!"))},
        "token budget (memory)": {"budget": TokenBudget("1000000000000/minute")},
        "audit (JSON lines)": {"audit": audit},
    }


def full_policy(audit_path: str | None = None, limit: str = "100000000/minute") -> Policy:
    options: dict[str, Any] = {"identity": None}
    for stage in stage_options(audit_path, limit).values():
        options.update(stage)
    return Policy(**options)


def with_policy(policy: Policy) -> Starlette:
    return Starlette(
        routes=[Route(PATH, completion, methods=["POST"])],
        middleware=[Middleware(AirlockMiddleware, policy=policy)],
    )


class Counted:
    """Counts the HTTP requests that reach the app, outside airlock, for exactness checks.

    ``GET /bench-stats`` answers the counts: requests seen, and requests admitted to the handler.
    """

    def __init__(self, app: ASGIApp, counts: dict[str, int]) -> None:
        self.app = app
        self.counts = counts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if scope["path"] == "/bench-stats":
                await JSONResponse(self.counts)(scope, receive, send)
                return
            self.counts["requests"] += 1
        await self.app(scope, receive, send)


def airlock_full() -> ASGIApp:
    """The full pipeline, configured from ``AIRLOCK_BENCH_AUDIT_FILE`` and ``AIRLOCK_BENCH_LIMIT``."""
    counts = {"requests": 0, "handled": 0}

    async def handled(request: Request) -> Response:
        counts["handled"] += 1
        return await completion(request)

    policy = full_policy(
        os.environ.get("AIRLOCK_BENCH_AUDIT_FILE"), os.environ.get("AIRLOCK_BENCH_LIMIT", "100000000/minute")
    )
    app = Starlette(
        routes=[Route(PATH, handled, methods=["POST"])],
        middleware=[Middleware(AirlockMiddleware, policy=policy)],
    )
    return Counted(app, counts)


FACTORIES: dict[str, Callable[[], ASGIApp]] = {"bare": bare, "slowapi": slowapi, "airlock": airlock_full}
