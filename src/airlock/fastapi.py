"""FastAPI front door: a dependency that hands the route the checked request.

::

    from airlock.fastapi import Airlock, install

    app = FastAPI()
    install(app, policy=Policy(...))

    @app.post("/chat")
    async def chat(checked: Annotated[Context, Depends(Airlock(max_body_bytes=64_000))]):
        payload = checked.json        # parsed, validated, cleaned

The checks run in :class:`~airlock.middleware.AirlockMiddleware` (added by
:func:`install`), before routing, so a refused request never reaches FastAPI's
body parsing or your handler. ``Airlock(...)`` declares the route's overrides
and returns the request's :class:`~airlock.context.Context`; :func:`install`
also adds each route's possible problem answers to the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute

from airlock.context import Context
from airlock.identity import ClientAddress
from airlock.middleware import AirlockMiddleware
from airlock.pipeline import CONTEXT_SCOPE_KEY
from airlock.policy import Policy
from airlock.problem import PROBLEM_CONTENT_TYPE
from airlock.routing import MARKER_ATTRIBUTE, RouteMarker, marker_of

__all__ = ["Airlock", "install", "problem_responses"]


class Airlock:
    """FastAPI dependency: ``Depends(Airlock(**overrides))`` returns the checked :class:`Context`."""

    def __init__(self, **overrides: Any) -> None:
        setattr(self, MARKER_ATTRIBUTE, RouteMarker(overrides))

    def __repr__(self) -> str:
        return f"Airlock({getattr(self, MARKER_ATTRIBUTE)!r})"

    async def __call__(self, request: Request) -> Context:
        ctx = request.scope.get(CONTEXT_SCOPE_KEY)
        if not isinstance(ctx, Context):
            # Same convention as Starlette's "SessionMiddleware must be installed".
            raise RuntimeError(
                "AirlockMiddleware must be installed to use Airlock(): call airlock.fastapi.install(app)"
            )
        return ctx


_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "required": ["type", "title", "status", "code"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "request_id": {"type": "string"},
    },
}


def _answer(description: str, codes: list[str]) -> dict[str, Any]:
    return {
        "description": f"{description} (problem codes: {', '.join(codes)})",
        "content": {PROBLEM_CONTENT_TYPE: {"schema": _PROBLEM_SCHEMA}},
    }


def problem_responses(policy: Policy) -> dict[int | str, dict[str, Any]]:
    """The problem answers ``policy`` can give, in FastAPI's ``responses=`` format."""
    if not policy.enabled:
        return {}
    answers: dict[int | str, dict[str, Any]] = {}
    bad_request = ["invalid_content_length", "ambiguous_credentials"]
    if policy.json:
        bad_request += ["invalid_json", "invalid_encoding", "json_too_deep"]
    answers[400] = _answer("Malformed request", bad_request)
    if policy.identity is not None and not isinstance(policy.identity, ClientAddress):
        answers[401] = _answer("Missing or invalid credentials", ["unauthorized"])
    answers[408] = _answer("The request body arrived too slowly", ["body_timeout"])
    answers[413] = _answer("The request body is too large", ["body_too_large"])
    if policy.json:
        answers[415] = _answer("The request body is not JSON", ["unsupported_media_type"])
    if policy.validate:
        answers[422] = _answer("The request body does not match the schema", ["validation_failed"])
    if policy.admit or policy.budget:
        answers[429] = _answer(
            "A rate limit or token budget was reached",
            ["rate_limited", "too_many_concurrent_requests", "budget_exhausted"],
        )
        answers[503] = _answer("The limit storage is unavailable", ["storage_unavailable"])
    return answers


def install(
    app: FastAPI,
    *,
    policy: Policy | None = None,
    routes: Mapping[str, Mapping[str, Any] | None] | None = None,
    exempt_docs: bool = True,
) -> None:
    """Add :class:`AirlockMiddleware` to ``app`` and document its answers in OpenAPI.

    ``exempt_docs`` leaves FastAPI's own documentation routes (``/openapi.json``,
    ``/docs``, ``/redoc``) unchecked: they carry no user content, and an API key
    in front of them would hide the very answers documented there.
    """
    base = policy if policy is not None else Policy()
    routes = dict(routes or {})
    if exempt_docs:
        for path in (app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url):
            if path:
                routes.setdefault(path, None)
    app.add_middleware(AirlockMiddleware, policy=base, routes=routes)
    original: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            for route in app.routes:
                if not isinstance(route, APIRoute):
                    continue
                if route.path in routes:
                    overrides = routes[route.path]
                    effective = (
                        base.merged(overrides) if overrides is not None else base.merged({"enabled": False})
                    )
                else:
                    marker = marker_of(route)
                    effective = base.merged(marker.overrides) if marker is not None else base
                for status, answer in problem_responses(effective).items():
                    route.responses.setdefault(status, answer)
        return original()

    app.openapi = openapi  # type: ignore[method-assign]
