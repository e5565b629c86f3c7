"""airlock per route on plain Starlette endpoints, without app-wide middleware.

Run: python examples/per_route.py   (then POST JSON to http://127.0.0.1:8003/chat)
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from airlock import ApiKeyAuth, Context, KeyStore, Policy, protect

# Keys are stored hashed; make one with `airlock keys new --name demo`.
KEYS = KeyStore(path=os.environ["AIRLOCK_KEYS_FILE"]) if "AIRLOCK_KEYS_FILE" in os.environ else KeyStore()
POLICY = Policy(identity=ApiKeyAuth(KEYS)) if len(KEYS) else Policy()


@protect(policy=POLICY, max_body_bytes=32 * 1024)
async def chat(request: Request) -> JSONResponse:
    checked: Context = request.state.airlock
    return JSONResponse({"received": checked.json})


async def public(request: Request) -> JSONResponse:
    # Not decorated: airlock does not run here.
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[Route("/chat", chat, methods=["POST"]), Route("/healthz", public)])

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8003")))
