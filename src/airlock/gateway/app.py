"""The ready-to-run OpenAI-compatible gateway: Starlette routes behind ``AirlockMiddleware``.

::

    SecurityHeaders -> CORSMiddleware (only if configured) -> AirlockMiddleware -> router
                                                                 /v1/chat/completions  ChatCompletions
                                                                 /v1/embeddings        Embeddings
                                                                 /v1/models            Models
                                                                 /healthz              Healthz (exempt)

The provider's connection pool opens and closes with the app's lifespan.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Route

from airlock.errors import ConfigurationError
from airlock.gateway.config import ROUTE_PATHS, GatewayConfig, load_config
from airlock.gateway.headers import SecurityHeaders
from airlock.gateway.models import ModelAllowList
from airlock.gateway.routes import ChatCompletions, Embeddings, Healthz, Models
from airlock.gateway.sections import STAGE_SECTIONS
from airlock.identity import ApiKeyAuth, ClientAddress
from airlock.keys import KeyStore
from airlock.middleware import AirlockMiddleware
from airlock.policy import STAGE_FIELDS, Identifier, Policy
from airlock.provider import Provider, create_provider

__all__ = ["CONFIG_ENV", "build_policy", "create_app", "create_app_from_env", "route_policies"]

logger = logging.getLogger("airlock.gateway")

# `airlock serve --workers N` hands the config path to each worker process through this variable.
CONFIG_ENV = "AIRLOCK_CONFIG"


def build_identity(config: GatewayConfig) -> Identifier:
    if config.identity.keys_file is not None:
        store = KeyStore.from_file(
            config.identity.keys_file, reload_interval=config.identity.keys_reload_interval
        )
        return ApiKeyAuth(store, header=config.identity.header)
    return ClientAddress(trusted_proxies=config.identity.trusted_proxies)


class _PolicyBuilder:
    """Turns the config into policy fields, building each stage section's stages once per settings."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.identity = build_identity(config)
        self.shared: dict[str, Any] = {}
        self._built: dict[tuple[str, int, str | None], dict[str, Any]] = {}

    def _stages(self, stages: Mapping[str, Any], route: str | None) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for name, section in STAGE_SECTIONS.items():
            if name not in stages:
                continue
            settings = stages[name]
            # A route gets its own stages only when they depend on the route, or when the
            # route has its own settings; otherwise it shares the global ones (one counter).
            own = section.route_specific or settings is not self.config.stages.get(name)
            build_route = route if own else None
            cache_key = (name, id(settings), build_route)
            built = self._built.get(cache_key)
            if built is None:
                try:
                    built = section.build(settings, route=build_route, shared=self.shared)
                except ConfigurationError as exc:
                    raise ConfigurationError(f"[{name}] {exc}") from None
                self._built[cache_key] = built
            for field, value in built.items():
                if field in STAGE_FIELDS:
                    items = tuple(value) if isinstance(value, (list, tuple)) else (value,)
                    fields[field] = (*fields.get(field, ()), *items)
                elif field in fields:
                    raise ConfigurationError(f"[{name}] sets {field}, which another section already set")
                else:
                    fields[field] = value
        return fields

    def fields(self, route: str | None) -> dict[str, Any]:
        settings = self.config.route(route) if route is not None else None
        limits = settings.limits if settings is not None else self.config.limits
        stages = settings.stages if settings is not None else self.config.stages
        fields: dict[str, Any] = {
            "identity": self.identity,
            **limits.policy_fields(),
            **self._stages(stages, route),
        }
        models = self.config.provider.models
        if models and route in ("chat", "embeddings"):
            fields["validate"] = (*fields.get("validate", ()), ModelAllowList(models))
        return fields


def build_policy(config: GatewayConfig) -> Policy:
    """The policy of every path that is not one of the gateway's routes."""
    return Policy(**_PolicyBuilder(config).fields(None))


def route_policies(config: GatewayConfig) -> tuple[Policy, dict[str, Mapping[str, Any] | None]]:
    """The base policy and, per gateway path, its overrides (``/healthz`` exempt)."""
    builder = _PolicyBuilder(config)
    routes: dict[str, Mapping[str, Any] | None] = {
        path: builder.fields(name) for name, path in ROUTE_PATHS.items()
    }
    routes["/healthz"] = None
    return Policy(**builder.fields(None)), routes


def create_app(config: GatewayConfig | None = None, *, provider: Provider | None = None) -> Starlette:
    """The gateway for ``config`` (default: the offline echo provider on loopback).

    ``provider`` replaces the one the config names (tests, or your own provider class).
    """
    config = config if config is not None else GatewayConfig()
    provider = provider if provider is not None else create_provider(config.provider)
    base, per_route = route_policies(config)
    max_event = config.provider.max_response_bytes
    models = config.provider.models or ((provider.name,) if provider.name == "echo" else ())
    routes = [
        Route(ROUTE_PATHS["chat"], ChatCompletions(provider, max_event_bytes=max_event), methods=["POST"]),
        Route(ROUTE_PATHS["embeddings"], Embeddings(provider, max_event_bytes=max_event), methods=["POST"]),
        Route(ROUTE_PATHS["models"], Models(models, provider.name), methods=["GET"]),
        Route("/healthz", Healthz(), methods=["GET"]),
    ]
    middleware = [Middleware(SecurityHeaders)]
    cors = config.server.cors
    if cors.enabled:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(cors.allow_origins),
                allow_methods=["GET", "POST"],
                allow_headers=list(cors.allow_headers),
                expose_headers=["x-request-id", "retry-after", "ratelimit", "ratelimit-policy"],
                max_age=cors.max_age,
            )
        )
    middleware.append(Middleware(AirlockMiddleware, policy=base, routes=per_route))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await provider.startup()
        try:
            yield
        finally:
            await provider.shutdown()

    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.provider = provider
    app.state.config = config
    return app


def create_app_from_env() -> Starlette:
    """Factory for multi-worker serving: the config path comes from ``$AIRLOCK_CONFIG``."""
    return create_app(load_config(os.environ.get(CONFIG_ENV) or None))
