"""The app the hostile-client tests attack: AirlockMiddleware under a real uvicorn, on loopback.

Run as ``python tests/hostile_app.py PORT EVENTS_FILE``. Every finished request appends one line
(outcome, status, code) to EVENTS_FILE, so the test can count audit calls from outside.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from airlock import AirlockMiddleware, ApiKeyAuth, Context, KeyStore, Policy, hash_key

KEY = "ak_hostile_test_key_0123456789abcdef"


class FileSink:
    def __init__(self, path: str) -> None:
        self.handle = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the server

    def record(self, ctx: Context) -> None:
        code = ctx.problem.code if ctx.problem is not None else None
        self.handle.write(json.dumps({"outcome": ctx.outcome, "status": ctx.status, "code": code}) + "\n")


def build(events_file: str) -> Starlette:
    calls: dict[str, Any] = {"handler": 0}

    async def chat(request: Request) -> JSONResponse:
        calls["handler"] += 1
        return JSONResponse({"ok": True, "size": len(request.state.airlock.body)})

    async def handler_calls(request: Request) -> JSONResponse:
        return JSONResponse(calls)

    policy = Policy(
        identity=ApiKeyAuth(KeyStore({"hostile": hash_key(KEY)})),
        max_body_bytes=64 * 1024,
        body_timeout=1.0,
        json=False,
        audit=FileSink(events_file),
    )
    return Starlette(
        routes=[Route("/chat", chat, methods=["POST"]), Route("/calls", handler_calls)],
        middleware=[Middleware(AirlockMiddleware, policy=policy, routes={"/calls": None})],
    )


if __name__ == "__main__":
    port, events = int(sys.argv[1]), sys.argv[2]
    uvicorn.run(build(events), host="127.0.0.1", port=port, log_level="warning", backlog=2048)
