"""What the three throttle stages share (airlock.throttle.stage): option checks and lifespan shutdown."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from airlock import AirlockMiddleware, ConfigurationError, FromCallable, Policy
from airlock.throttle import Alert, Alerts, ConcurrencyLimit, RateLimit, TokenBudget

from fake_upstream import lifespan
from helpers import client_for, user_from_header

pytestmark = pytest.mark.anyio

STAGES: dict[str, Callable[..., Any]] = {
    "rate": lambda **options: RateLimit("5/minute", **options),
    "concurrency": lambda **options: ConcurrencyLimit(2, **options),
    "budget": lambda **options: TokenBudget("1000/minute", **options),
}


@pytest.mark.parametrize("make", STAGES.values(), ids=STAGES.keys())
def test_bad_shared_options_are_refused_at_construction(make: Callable[..., Any]) -> None:
    with pytest.raises(ConfigurationError, match=r"alerts must be an airlock\.throttle\.Alerts"):
        make(alerts="yes")
    with pytest.raises(ConfigurationError, match='on_storage_error must be "closed" or "open"'):
        make(on_storage_error="sometimes")
    with pytest.raises(ConfigurationError, match="storage must be a URI"):
        make(storage="nowhere")


async def ok(request: Request) -> Response:
    await request.body()
    return JSONResponse({"ok": True})


@pytest.mark.parametrize("kind", ["rate", "budget"])
async def test_lifespan_shutdown_waits_for_a_running_alert_hook(kind: str) -> None:
    calls: list[str] = []

    def slow_hook(alert: Alert) -> None:
        time.sleep(0.5)
        calls.append(alert.kind)

    stages: dict[str, Any]
    if kind == "rate":
        stages = {"admit": RateLimit("1/minute", alerts=Alerts(slow_hook, throttled="1/minute"))}
        expected = "throttled_repeatedly"  # the second request is refused
    else:
        stages = {
            "budget": TokenBudget("100/minute", alerts=Alerts(slow_hook, budget_share=0.5, throttled=None))
        }
        expected = "budget_share"  # the first reservation (60 + the prompt) crosses half of 100
    app = Starlette(
        routes=[Route("/chat", ok, methods=["POST"])],
        middleware=[
            Middleware(AirlockMiddleware, policy=Policy(identity=FromCallable(user_from_header), **stages))
        ],
    )
    async with lifespan(app):
        async with client_for(app) as client:
            for _ in range(2):
                await client.post("/chat", json={"max_tokens": 60}, headers={"x-user": "alice"})
        assert calls == []  # the hook runs in the background, never in the request
    assert calls == [expected]
