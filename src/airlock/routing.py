"""Finding a route's own airlock settings before the router runs.

The middleware sits outside Starlette's router, so it looks the route up the
same way the router will (``route.matches(scope)``) to learn the route's path
template and whether the endpoint, or a FastAPI dependency of it, carries route
overrides. The lookup result is cached per route object, so the overrides are
read once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.routing import Host, Match, Mount
from starlette.types import Scope

from airlock.policy import check_overrides

__all__ = ["MARKER_ATTRIBUTE", "RouteMarker", "find_route", "marker_of"]

MARKER_ATTRIBUTE = "__airlock__"


class RouteMarker:
    """Route overrides attached to an endpoint or dependency, checked where declared."""

    __slots__ = ("overrides",)

    def __init__(self, overrides: Mapping[str, Any]) -> None:
        self.overrides = check_overrides(overrides)

    def __repr__(self) -> str:
        return f"RouteMarker({sorted(self.overrides)!r})"


@dataclass(frozen=True, slots=True)
class RouteMatch:
    route: Any
    template: str


class _Search:
    """One lookup; remembers whether the answer depended on more than method and path."""

    __slots__ = ("depends_on_host",)

    def __init__(self) -> None:
        self.depends_on_host = False


def _dependency_marker(dependant: Any) -> RouteMarker | None:
    pending = [dependant]
    while pending:
        current = pending.pop()
        marker = getattr(getattr(current, "call", None), MARKER_ATTRIBUTE, None)
        if isinstance(marker, RouteMarker):
            return marker
        pending.extend(getattr(current, "dependencies", ()))
    return None


def marker_of(route: Any) -> RouteMarker | None:
    """The overrides declared on ``route``'s endpoint or on one of its FastAPI dependencies."""
    marker = getattr(getattr(route, "endpoint", None), MARKER_ATTRIBUTE, None)
    if isinstance(marker, RouteMarker):
        return marker
    dependant = getattr(route, "dependant", None)
    if dependant is not None:
        return _dependency_marker(dependant)
    return None


def _search(routes: Iterable[Any], scope: Scope, prefix: str, state: _Search) -> RouteMatch | None:
    partial: RouteMatch | None = None
    for route in routes:
        if isinstance(route, Host):
            state.depends_on_host = True
        try:
            match, child = route.matches(scope)
        except Exception:  # noqa: S112 - a custom route that cannot match this scope is simply not it
            continue
        if match is Match.NONE:
            continue
        if isinstance(route, (Mount, Host)):
            if match is not Match.FULL:
                continue
            inner = _search(route.routes, {**scope, **child}, prefix + getattr(route, "path", ""), state)
            if inner is not None:
                return inner
            continue
        found = RouteMatch(route, prefix + str(getattr(route, "path", "")))
        if match is Match.FULL:
            return found
        if partial is None:
            partial = found
    return partial


def find_route(scope: Scope) -> tuple[RouteMatch | None, bool]:
    """The route the app's router will pick for ``scope``, if the app is Starlette-like.

    The second value says whether the answer may be cached by method and path
    (it may not when a ``Host`` route took part in the decision).
    """
    app = scope.get("app")
    routes = getattr(getattr(app, "router", None), "routes", None)
    if not routes:
        return None, True
    state = _Search()
    found = _search(routes, scope, "", state)
    return found, not state.depends_on_host
