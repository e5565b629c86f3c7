"""``AirlockMiddleware``: the engine in front of a whole Starlette or FastAPI app."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from airlock.errors import ConfigurationError
from airlock.pipeline import CONTEXT_SCOPE_KEY, Engine, call_hooks
from airlock.policy import Policy, check_overrides
from airlock.routing import find_route, marker_of

__all__ = ["AirlockMiddleware"]

_LOOKUP_CACHE_SIZE = 4096


class AirlockMiddleware:
    """Pure ASGI middleware that runs every HTTP request through one policy.

    :param policy: the app's default policy.
    :param routes: per-path overrides, merged over ``policy``; ``None`` as a value
        exempts the path (e.g. ``{"/healthz": None}``). Exact paths only.

    Routes can also carry their own overrides (``@airlock.protect(...)`` on a
    Starlette endpoint, or an ``airlock.fastapi.Airlock(...)`` dependency); the
    middleware finds them through the app's router, merges them over ``policy``
    and runs the checks once. Non-HTTP scopes pass straight through; lifespan
    events start and stop the policy's components (e.g. the audit writer).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        policy: Policy | None = None,
        routes: Mapping[str, Mapping[str, Any] | None] | None = None,
    ) -> None:
        if policy is not None and not isinstance(policy, Policy):
            raise ConfigurationError("AirlockMiddleware(policy=...) takes an airlock.Policy")
        self.app = app
        self.policy = policy if policy is not None else Policy()
        self.engine = Engine(self.policy)
        self._path_engines: dict[str, Engine] = {}
        for path, overrides in (routes or {}).items():
            if not isinstance(path, str) or not path.startswith("/"):
                raise ConfigurationError(f"routes: {path!r} must be a path starting with '/'")
            merged = {"enabled": False} if overrides is None else check_overrides(overrides)
            self._path_engines[path] = Engine(self.policy.merged(merged))
        # id(route) -> (route, engine); the route is kept so its id is never reused.
        self._route_engines: dict[int, tuple[Any, Engine | None]] = {}
        # (method, root_path, path, app) -> (engine, route template): the router lookup once per path.
        self._lookups: dict[tuple[Any, ...], tuple[Engine, str | None]] = {}

    def _engine_for(self, scope: Scope) -> tuple[Engine, str | None]:
        path = scope.get("path", "")
        key = (scope.get("method"), scope.get("root_path", ""), path, id(scope.get("app")))
        cached = self._lookups.get(key)
        if cached is not None:
            return cached
        found, cacheable = find_route(scope)
        template = found.template if found is not None else None
        engine = self._path_engines.get(path)
        if engine is None and found is not None:
            engine = self._route_engine(found.route)
        result = (engine or self.engine, template)
        if cacheable:
            if len(self._lookups) >= _LOOKUP_CACHE_SIZE:
                # Oldest first: parametrised paths and scanners cannot grow this without bound.
                del self._lookups[next(iter(self._lookups))]
            self._lookups[key] = result
        return result

    def _route_engine(self, route: Any) -> Engine | None:
        cached = self._route_engines.get(id(route))
        if cached is None:
            marker = marker_of(route)
            route_engine = Engine(self.policy.merged(marker.overrides)) if marker is not None else None
            cached = (route, route_engine)
            self._route_engines[id(route)] = cached
        return cached[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if CONTEXT_SCOPE_KEY in scope:
                # An outer airlock already checked this request.
                await self.app(scope, receive, send)
                return
            engine, template = self._engine_for(scope)
            await engine.handle(scope, receive, send, self.app, route=template)
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _components(self) -> list[Any]:
        engines = [self.engine, *self._path_engines.values()]
        engines.extend(engine for _, engine in self._route_engines.values() if engine is not None)
        return [component for engine in engines for component in engine.policy.components()]

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def lifespan_receive() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await call_hooks(self._components(), "startup")
            return message

        async def lifespan_send(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await call_hooks(self._components(), "shutdown")
            await send(message)

        await self.app(scope, lifespan_receive, lifespan_send)
