"""Per-route front door for plain Starlette endpoints: ``@protect(...)`` and ``@exempt``.

A decorated endpoint becomes an ASGI app carrying its overrides. Under
``AirlockMiddleware`` the middleware finds the overrides, merges them over the
app's policy and runs the checks; the endpoint then runs as is. Without the
middleware, the endpoint runs the engine itself with ``policy`` (or the default
policy) merged with the overrides. Either way the checks run exactly once.

Because the result is an ASGI app, give its ``Route`` the methods it serves:
``Route("/chat", chat, methods=["POST"])``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import request_response
from starlette.types import ASGIApp, Receive, Scope, Send

from airlock.pipeline import CONTEXT_SCOPE_KEY, Engine
from airlock.policy import Policy
from airlock.routing import MARKER_ATTRIBUTE, RouteMarker

__all__ = ["ProtectedEndpoint", "exempt", "protect"]

Endpoint = Callable[[Request], Awaitable[Response] | Response]
F = TypeVar("F")


class ProtectedEndpoint:
    """An endpoint wrapped with route overrides; an ASGI app."""

    def __init__(self, endpoint: Endpoint | ASGIApp, marker: RouteMarker, policy: Policy | None) -> None:
        setattr(self, MARKER_ATTRIBUTE, marker)
        target = endpoint
        while isinstance(target, functools.partial):
            target = target.func
        if inspect.isfunction(target) or inspect.ismethod(target):
            self.app: ASGIApp = request_response(endpoint)  # type: ignore[arg-type]
        else:
            self.app = endpoint  # type: ignore[assignment]
        self.endpoint = endpoint
        self.engine = Engine((policy if policy is not None else Policy()).merged(marker.overrides))
        functools.update_wrapper(self, endpoint)

    def __repr__(self) -> str:
        return f"<ProtectedEndpoint {getattr(self.endpoint, '__qualname__', '?')}>"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or CONTEXT_SCOPE_KEY in scope:
            await self.app(scope, receive, send)
            return
        route = scope.get("route")
        template = getattr(route, "path", None) if route is not None else None
        await self.engine.handle(scope, receive, send, self.app, route=template)


@overload
def protect(endpoint: Endpoint, /) -> ProtectedEndpoint: ...


@overload
def protect(*, policy: Policy | None = None, **overrides: Any) -> Callable[[Endpoint], ProtectedEndpoint]: ...


def protect(
    endpoint: Endpoint | None = None, /, *, policy: Policy | None = None, **overrides: Any
) -> ProtectedEndpoint | Callable[[Endpoint], ProtectedEndpoint]:
    """Check requests to this endpoint with ``policy`` (or the app's) and these overrides.

    ``@protect`` alone applies the app's policy; ``@protect(max_body_bytes=4096)``
    changes only the body cap for this route. Overrides are the ``Policy`` fields
    and are validated here, at import time.
    """
    marker = RouteMarker(overrides)

    def decorate(func: Endpoint) -> ProtectedEndpoint:
        return ProtectedEndpoint(func, marker, policy)

    if endpoint is not None:
        return decorate(endpoint)
    return decorate


def exempt(endpoint: Endpoint) -> ProtectedEndpoint:
    """No checks and no audit for this endpoint (health checks, metrics)."""
    return ProtectedEndpoint(endpoint, RouteMarker({"enabled": False}), None)
