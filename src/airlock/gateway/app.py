"""The ready-to-run OpenAI-compatible gateway: Starlette routes behind ``AirlockMiddleware``."""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from airlock.context import Context
from airlock.gateway.config import GatewayConfig
from airlock.gateway.echo import EchoProvider
from airlock.identity import ApiKeyAuth, ClientAddress
from airlock.keys import KeyStore
from airlock.middleware import AirlockMiddleware
from airlock.policy import Identifier, Policy

__all__ = ["build_policy", "create_app"]

logger = logging.getLogger("airlock.gateway")

_NO_STORE = {"cache-control": "no-store", "x-content-type-options": "nosniff"}


def build_identity(config: GatewayConfig) -> Identifier:
    if config.identity.keys_file is not None:
        return ApiKeyAuth(KeyStore.from_file(config.identity.keys_file), header=config.identity.header)
    return ClientAddress(trusted_proxies=config.identity.trusted_proxies)


def build_policy(config: GatewayConfig) -> Policy:
    return Policy(
        identity=build_identity(config),
        max_body_bytes=config.limits.max_body_bytes,
        body_timeout=config.limits.body_timeout,
    )


def create_app(config: GatewayConfig | None = None) -> Starlette:
    config = config if config is not None else GatewayConfig()
    provider = EchoProvider()

    async def chat_completions(request: Request) -> Response:
        ctx: Context = request.state.airlock
        result = await provider.chat_completion(ctx.json)
        usage = result["usage"]
        ctx.report_usage(
            usage["prompt_tokens"], usage["completion_tokens"], provider=provider.name, model=result["model"]
        )
        return JSONResponse(result, headers=_NO_STORE)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"}, headers={"cache-control": "no-store"})

    routes = [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    middleware = [
        Middleware(AirlockMiddleware, policy=build_policy(config), routes={"/healthz": None}),
    ]
    return Starlette(routes=routes, middleware=middleware)
