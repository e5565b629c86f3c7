"""airlock as middleware in front of a whole Starlette app.

Run: python examples/starlette_app.py   (then POST JSON to http://127.0.0.1:8001/chat)
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from airlock import AirlockMiddleware, Context, Policy, exempt


async def chat(request: Request) -> JSONResponse:
    checked: Context = request.state.airlock
    # `checked.json` is the parsed, checked document: forward it to your provider here.
    return JSONResponse(
        {"received": checked.json, "caller": checked.identity.id if checked.identity else None}
    )


@exempt
async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[Route("/chat", chat, methods=["POST"]), Route("/healthz", health)],
    middleware=[Middleware(AirlockMiddleware, policy=Policy(max_body_bytes=64 * 1024, body_timeout=5.0))],
)

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8001")))
