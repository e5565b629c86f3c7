"""airlock as middleware in front of a whole Starlette app, with every stage on.

Run: python examples/starlette_app.py   (then POST an OpenAI chat body to http://127.0.0.1:8001/chat)

What the handler receives has been size-capped, parsed, validated against the openai-chat
preset, cleaned of invisible characters, and stripped of personal data and secrets; callers are
rate limited and budgeted by address, and every request is one JSON line on stdout.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from airlock import (
    AirlockMiddleware,
    Anonymize,
    AuditLog,
    Context,
    Policy,
    RateLimit,
    Sanitize,
    TokenBudget,
    Validate,
    exempt,
)


async def chat(request: Request) -> JSONResponse:
    checked: Context = request.state.airlock
    # `checked.json` is the checked document: forward it to your provider here, then report
    # the usage it returns so the token budget settles on real numbers.
    checked.report_usage(checked.token_estimate or 0, 0, provider="example", model="none")
    return JSONResponse(
        {
            "received": checked.json,
            "caller": checked.identity.id if checked.identity else None,
            "found": checked.entity_counts,
        }
    )


@exempt
async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


policy = Policy(
    max_body_bytes=64 * 1024,
    body_timeout=5.0,
    admit=RateLimit("20/second;600/minute"),
    validate=Validate("openai-chat", max_messages=50, max_prompt_tokens=8000),
    sanitize=Sanitize(),
    anonymize=Anonymize(),
    budget=TokenBudget("50000/minute"),
    audit=AuditLog(),
)

app = Starlette(
    routes=[Route("/chat", chat, methods=["POST"]), Route("/healthz", health)],
    middleware=[Middleware(AirlockMiddleware, policy=policy)],
)

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8001")))
